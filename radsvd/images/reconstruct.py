"""A map from a STAR file with poses (``radsvd reconstruct``): the particles read and streamed
in chunks through :class:`radsvd.volumes.inversion.Reconstructor` (the direct Fourier
inversion with CTF weighting and Wiener regularisation)."""

from __future__ import annotations

import numpy as np

from radsvd._validate import InputError
from radsvd.volumes.inversion import DEFAULT_WIENER, Reconstructor

__all__ = ["reconstruct_star", "CHUNK"]

CHUNK = 256   # particles read and added at a time (memory independent of their number)


def reconstruct_star(star, data_dir=None, wiener: float = DEFAULT_WIENER, no_ctf: bool = False,
                     n: int | None = None, progress=None) -> tuple[np.ndarray, float]:
    """Reconstruct from a STAR file with poses (rlnAngleRot/Tilt/Psi, origins, CTF), streamed
    in chunks of :data:`CHUNK` particles; returns (map N³, pixel size Å)."""
    from radsvd.data.stacks import ctf_params, load_particles
    from radsvd.data.star import read_star
    from radsvd.rotations import euler_to_rotation

    table = read_star(star, require_ctf=not no_ctf)
    if n is not None:
        table = table.iloc[: int(n)]
    missing = [c for c in ("rot", "tilt", "psi") if c not in table.columns
               or table[c].isna().any()]
    if missing:
        raise InputError(f"{star}: no poses: missing or empty rlnAngleRot/Tilt/Psi")
    if len(table) == 0:
        raise InputError(f"{star}: no particles")
    rec = None
    for a in range(0, len(table), CHUNK):
        part = table.iloc[a:a + CHUNK]
        imgs, part = load_particles(part, data_dir=data_dir, dtype=np.float64,
                                    require_ctf=not no_ctf)
        N, p = imgs.shape[-1], float(part["pixel_size"].iloc[0])
        if rec is None:
            rec = Reconstructor(N, p)
        R = euler_to_rotation(part["rot"].to_numpy(float), part["tilt"].to_numpy(float),
                              part["psi"].to_numpy(float))
        o = np.stack([part[c].to_numpy(float) if c in part.columns else np.zeros(len(part))
                      for c in ("shift_x", "shift_y")], axis=1)
        ctf = None
        if not no_ctf:
            m = np.arange(N) - N // 2
            kx, ky = np.meshgrid(np.pi * m, np.pi * m, indexing="xy")
            ctf = np.stack([c.grid2d(kx, ky, N, p) for c in ctf_params(part)])
        rec.add(imgs, R, o, ctf)
        if progress is not None:
            progress(min(len(table), a + CHUNK), len(table))
    return rec.volume(wiener), rec.p
