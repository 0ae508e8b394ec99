"""Simulated particle images: random poses, CTFs per micrograph, shifts, white noise.

Image formation (all in the Fourier domain of the N×N image, units of docs/design.md):

    Î(k) = CTF(k) · e^{+i k·t} · V̂(R (kx, ky, 0)) + noise

(for a :class:`GaussianMolecule` V̂ is its closed form, evaluated on the DFT grid as one
separable matrix product per image; for a map, a 3D type-2 NUFFT, see below), with R a
uniform random pose (Haar measure on SO(3); the template convention of
:mod:`radsvd.data.rotations`), t = RELION's rlnOriginX/YAngst (converted to box units): the
particle sits at −t in the image, because RELION's origin offsets "shift observations into
the reference projection" (translating the image by +t centres it; RELION docs,
Conventions/Orientations), CTF in RELION's convention (:mod:`radsvd.data.ctf`)
and, for a map, V̂ from one 3D type-2 NUFFT at the rotated Cartesian frequencies
(frequencies beyond the map's Nyquist are set to 0).  The real-space image is the centred inverse DFT
divided by dx², so that without CTF, shift and noise it samples the projection ∫ V dz.
Noise is white Gaussian with variance (mean signal variance over the stack) / SNR.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass

import numpy as np
import pandas as pd

from radsvd._validate import InputError, check_memory, real_stack
from radsvd.data.ctf import CTFParams
from radsvd.data.molecules import GaussianMolecule
from radsvd.data.rotations import as_rotations, random_rotations, rotation_to_euler


@dataclass(frozen=True)
class Microscope:
    """Ranges of the simulated acquisition (defaults: a 300 kV, Cs 2.7 mm instrument)."""

    voltage: float = 300.0                  # kV
    cs: float = 2.7                         # mm
    amplitude_contrast: float = 0.1
    defocus_range: tuple = (8000.0, 25000.0)  # Å, mean defocus per micrograph (uniform)
    astigmatism: float = 400.0              # Å, std of (DU − DV) per micrograph
    particles_per_micrograph: int = 60      # EMPIAR-10005: 1024 images over 17 micrographs
    n_micrographs: int | None = None        # if set, overrides particles_per_micrograph

    def __post_init__(self):
        def number(name, ok, need):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
                    or not np.isfinite(v) or not ok(v):
                raise InputError(f"Microscope: {name} must be {need}, got {v!r}")

        number("voltage", lambda v: v > 0, "a positive voltage (kV)")
        number("cs", lambda v: v >= 0, "a spherical aberration >= 0 (mm)")
        number("amplitude_contrast", lambda v: 0 <= v < 1, "in [0, 1)")
        number("astigmatism", lambda v: v >= 0, "a standard deviation >= 0 (Å)")
        number("particles_per_micrograph", lambda v: v >= 1 and int(v) == v, "an integer >= 1")
        if self.n_micrographs is not None:
            number("n_micrographs", lambda v: v >= 1 and int(v) == v, "an integer >= 1")
        rng = tuple(self.defocus_range)
        if len(rng) != 2 or not all(isinstance(v, (int, float, np.integer, np.floating))
                                    and np.isfinite(v) for v in rng):
            raise InputError(f"Microscope: defocus_range must be two finite numbers (MIN, MAX) "
                             f"in Å, got {self.defocus_range!r}")
        if rng[0] > rng[1]:
            raise InputError(f"Microscope: defocus range ({rng[0]:g}, {rng[1]:g}) is reversed: "
                             "give MIN then MAX (e.g. --defocus 8000 25000)")


def _fourier_grid(N: int) -> tuple[np.ndarray, np.ndarray]:
    """Box frequencies (kx, ky) of the centred N×N DFT grid: k = π m, m = -N//2 … (N-1)//2."""
    m = np.arange(N) - N // 2
    k = np.pi * m.astype(np.float64)
    return np.broadcast_to(k[None, :], (N, N)), np.broadcast_to(k[:, None], (N, N))


def _slices(volume, rotations, N: int, eps: float) -> np.ndarray:
    """V̂(R (kx, ky, 0)) on the centred N×N grid for each pose: (n, N, N) complex128."""
    import finufft

    vol = volume.astype(np.complex128)
    Nv = vol.shape[0]
    dxv = 2.0 / Nv
    kx, ky = _fourier_grid(N)
    inside = np.hypot(kx, ky) <= np.pi * Nv / 2  # beyond the map's Nyquist: 0
    kx, ky = kx[inside], ky[inside]
    out = np.zeros((len(rotations), N, N), dtype=np.complex128)
    # one thread: finufft's multi-threaded FFT rounds differently for each thread count
    plan = finufft.Plan(2, (Nv, Nv, Nv), eps=eps, isign=-1, nthreads=1)
    step = max(1, (1 << 23) // max(kx.size, 1))
    for start in range(0, len(rotations), step):
        Rc = rotations[start:start + step]
        pts = [np.ascontiguousarray((kx[None] * Rc[:, d, 0:1] + ky[None] * Rc[:, d, 1:2]).ravel() * dxv)
               for d in (2, 1, 0)]
        plan.setpts(*pts)
        vals = plan.execute(vol).reshape(len(Rc), -1) * dxv ** 3
        out[start:start + step][:, inside] = vals
    return out


def fourier_to_image(F) -> np.ndarray:
    """Real images (n, N, N) from centred Fourier samples F̂(π m) (the inverse of the DFT
    Â(k) = dx² Σ A(x_n) e^{-i k·x_n} on the grid k = π m)."""
    F = np.asarray(F)
    N = F.shape[-1]
    dx = 2.0 / N
    img = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(F, axes=(-2, -1))), axes=(-2, -1))
    return img.real / dx ** 2


def _check_memory(n: int, N: int) -> None:
    """Refuse a simulation whose images (float32) and one work chunk (complex128 Fourier
    images) cannot fit in memory, before allocating."""
    check_memory(4 * n * N * N + 16 * max(N * N, 1 << 22),
                 f"simulate_particles: {n} images of {N}×{N} pixels",
                 "simulate fewer or smaller images")


def simulate_particles(source, n: int, N: int, pixel_size: float, snr: float | None = 0.1,
                       seed: int | None = 0, max_shift: float = 0.0,
                       microscope: Microscope = Microscope(), rotations=None,
                       ctf: bool = True, eps: float = 1e-7, volume_box: int | None = None):
    """Simulate ``n`` particle images of box ``N``: projections at random poses, shifted,
    times one CTF per micrograph, plus white noise.

    Parameters
    ----------
    source : GaussianMolecule or ndarray
        A :class:`GaussianMolecule` (closed-form Fourier transform; or, if ``volume_box`` is
        given, its map sampled on that grid and treated like any map) or a cubic map (M, M, M),
        M ≤ N, covering the same physical box as the images.
    n : int
        Number of images.
    N : int
        Image box (pixels, ≥ 8).
    pixel_size : float
        Pixel size (Å).
    snr : float or None
        Mean variance of the clean images over the noise variance; None or inf: no noise.
    seed : int or None
        Random seed (poses, shifts, defocus, noise).
    max_shift : float
        Shifts uniform in a disc of this radius (Å), below half the box.
    microscope : Microscope
        Voltage, Cs, amplitude contrast, defocus range, particles per micrograph
        (``radsvd.data.simulate.Microscope``).
    rotations : array_like, shape (n, 3, 3), optional
        The poses; default uniformly random.
    ctf : bool
        Multiply by the CTF.
    eps : float
        NUFFT tolerance (maps only).
    volume_box : int, optional
        Sample a GaussianMolecule on this grid and simulate from the map.

    Returns
    -------
    images : ndarray, shape (n, N, N), float32
    table : pandas.DataFrame
        The normalised STAR columns (:func:`read_star`): true poses, shifts and CTF
        parameters, plus micrograph names.

    Examples
    --------
    >>> mol = radsvd.GaussianMolecule([[0, 0, 0], [0.3, 0, 0]], [0.1, 0.1], [1.0, 2.0])
    >>> images, table = radsvd.simulate_particles(mol, n=3, N=32, pixel_size=2.0, seed=1)
    >>> images.shape, images.dtype
    ((3, 32, 32), dtype('float32'))
    >>> list(table.columns[:3])
    ['image_name', 'image_index', 'image_path']
    """
    if int(n) != n or n < 1:
        raise InputError(f"simulate_particles: n must be a positive integer, got {n!r}")
    if int(N) != N or N < 8:
        raise InputError(f"simulate_particles: box N must be an integer >= 8, got {N!r}")
    if not (np.isfinite(pixel_size) and pixel_size > 0):
        raise InputError(f"simulate_particles: pixel_size must be positive, got {pixel_size!r}")
    if snr is not None and not (snr > 0):
        raise InputError(f"simulate_particles: snr must be positive (or None), got {snr!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
                             or seed < 0):
        raise InputError(f"simulate_particles: seed must be an integer >= 0 (or None), "
                         f"got {seed!r}")
    if not (np.isfinite(max_shift) and max_shift >= 0):
        raise InputError(f"simulate_particles: max_shift must be >= 0 Å, got {max_shift!r}")
    if max_shift >= N * pixel_size / 2:
        raise InputError(f"simulate_particles: max_shift = {max_shift:g} Å would move particles "
                         f"out of the box ({N} × {pixel_size:g} Å = {N * pixel_size:g} Å): "
                         f"keep it below half the box, {N * pixel_size / 2:g} Å")
    if not isinstance(microscope, Microscope):
        raise InputError("simulate_particles: microscope must be a Microscope")
    n, N = int(n), int(N)
    _check_memory(n, N)
    rng = np.random.default_rng(seed)
    molecule = None
    if isinstance(source, GaussianMolecule):
        if volume_box is None:
            molecule, volume = source, None  # closed form: exact, no sampled map
        else:
            volume = source.volume(int(volume_box))
    else:
        volume = real_stack(source, "source map", 3)
        if volume.shape[0] != 1:
            raise InputError("simulate_particles: source must be one map, not a stack")
        volume = volume[0]
        if volume.shape[0] > N:
            raise InputError(f"simulate_particles: the map box {volume.shape[0]} exceeds the "
                             f"image box {N}; downsample the map first")
    R = random_rotations(n, rng) if rotations is None else as_rotations(rotations)
    if R.shape[0] != n:
        raise InputError(f"simulate_particles: {R.shape[0]} rotations given for {n} images")
    rot, tilt, psi = rotation_to_euler(R)

    # micrographs: one CTF each
    if microscope.n_micrographs is not None:
        n_mic = int(min(max(1, microscope.n_micrographs), n))
        per = int(np.ceil(n / n_mic))
    else:
        per = max(1, int(microscope.particles_per_micrograph))
        n_mic = int(np.ceil(n / per))
    mic = np.minimum(np.arange(n) // per, n_mic - 1)
    lo, hi = microscope.defocus_range
    dmean = rng.uniform(lo, hi, n_mic)
    dast = np.abs(rng.normal(0.0, microscope.astigmatism, n_mic))
    dang = rng.uniform(0.0, 180.0, n_mic)
    du, dv = dmean + dast / 2, dmean - dast / 2

    # shifts (Å), uniform in a disc
    r = max_shift * np.sqrt(rng.random(n))
    a = rng.uniform(0.0, 2 * np.pi, n)
    sx, sy = r * np.cos(a), r * np.sin(a)

    kx, ky = _fourier_grid(N)
    to_box = 2.0 / (N * pixel_size)
    images = np.empty((n, N, N), dtype=np.float32)
    clean_var = np.empty(n)
    chunk = max(1, (1 << 22) // (N * N))
    for start in range(0, n, chunk):
        sl = slice(start, min(n, start + chunk))
        if molecule is not None:
            F = molecule.projection_fourier_grid(N, R[sl])
        else:
            F = _slices(volume, R[sl], N, eps)
        if max_shift > 0:
            F *= np.exp(+1j * (kx[None] * (sx[sl, None, None] * to_box)
                               + ky[None] * (sy[sl, None, None] * to_box)))
        if ctf:
            for i in range(sl.start, sl.stop):
                j = mic[i]
                c = CTFParams(du[j], dv[j], dang[j], microscope.voltage, microscope.cs,
                              microscope.amplitude_contrast)
                F[i - sl.start] *= c.grid2d(kx, ky, N, pixel_size)
        clean = fourier_to_image(F)
        clean_var[sl] = clean.var(axis=(1, 2))
        images[sl] = clean
    if snr is not None and np.isfinite(snr):
        sigma = np.sqrt(clean_var.mean() / snr)
        images += rng.normal(0.0, sigma, images.shape).astype(np.float32)

    table = pd.DataFrame({
        "image_name": [f"{i + 1:06d}@particles.mrcs" for i in range(n)],
        "image_index": np.arange(n), "image_path": "particles.mrcs",
        "defocus_u": du[mic] if ctf else np.nan, "defocus_v": dv[mic] if ctf else np.nan,
        "defocus_angle": dang[mic] if ctf else np.nan, "phase_shift": 0.0,
        "voltage": microscope.voltage, "cs": microscope.cs,
        "amplitude_contrast": microscope.amplitude_contrast, "bfactor": 0.0,
        "pixel_size": float(pixel_size), "rot": rot, "tilt": tilt, "psi": psi,
        "shift_x": sx, "shift_y": sy, "optics_group": 1,
        "micrograph": [f"micrograph_{j + 1:04d}.mrc" for j in mic],
        "image_size": N,
    })
    if not ctf:  # no CTF was applied: record none (readers then need require_ctf=False)
        table = table.drop(columns=["defocus_u", "defocus_v", "defocus_angle", "phase_shift",
                                    "bfactor"])
    table.attrs["snr"] = snr
    return images, table


def write_particles(out_dir, images, table, name: str = "particles", style: str = "3.1",
                    volume=None) -> dict:
    """Write ``name``.mrcs + ``name``.star (RELION ``style``), and ``map.mrc`` if given.

    The files are written as a unit: each to a temporary name first, then renamed into place
    with the STAR file last, so a complete STAR file never refers to a partial stack.  The
    stack's header label and a comment heading the STAR file carry one fresh write id, which
    :func:`~radsvd.data.stacks.load_particles` checks: a run killed between the renames leaves a
    new stack beside the old STAR file, and that pair is refused rather than read.
    """
    from radsvd._files import atomic_path, check_output_folder
    from radsvd.data.mrc import write_mrc
    from radsvd.data.star import WRITE_ID_TAG, write_star

    out = check_output_folder(out_dir, "output folder")
    p = float(table["pixel_size"].iloc[0])
    stack = out / f"{name}.mrcs"
    t = table.copy()
    t["image_name"] = [f"{i + 1:06d}@{stack.name}" for i in range(len(t))]
    t["image_path"] = stack.name
    wid = uuid.uuid4().hex
    label = f"{WRITE_ID_TAG} {wid}"
    paths = {"stack": stack, "star": out / f"{name}.star"}
    if volume is not None:
        paths["map"] = out / "map.mrc"
    # contexts close in reverse: the stack is renamed first, then the map, the STAR file last
    with contextlib.ExitStack() as unit:
        tmp = {key: unit.enter_context(atomic_path(paths[key], suffix=paths[key].suffix))
               for key in ("star", "map", "stack") if key in paths}
        write_mrc(tmp["stack"], np.asarray(images, np.float32), p, stack=True, label=label)
        if volume is not None:
            write_mrc(tmp["map"], np.asarray(volume, np.float32),
                      p * images.shape[-1] / np.shape(volume)[-1], stack=False, label=label)
        write_star(tmp["star"], t, style=style, write_ids={stack.name: wid})
    return {key: paths[key] for key in ("stack", "map", "star") if key in paths}
