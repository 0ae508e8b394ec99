"""Particle stacks: the images a normalised STAR table names, read from their MRC stacks.

The table comes from :func:`radsvd.data.star.read_star`; the stacks are read by the MRC policy
of :mod:`radsvd.data.mrc` (memory-mapped, gzip streamed).  A STAR file radsvd wrote carries a
write id per stack, checked here against the stack's header label.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from radsvd._validate import InputError
from radsvd.data.mrc import read_header, read_stack
from radsvd._lazy import LazyModule
from radsvd.data.star import WRITE_ID_TAG, read_star

pd = LazyModule("pandas")

__all__ = ["check_map_matches_particles", "check_write_ids", "ctf_params", "load_particles",
           "resolve_stacks"]


def ctf_params(table: pd.DataFrame) -> list:
    """One :class:`~radsvd.data.ctf.CTFParams` per row of a normalised particle table."""
    from radsvd.data.ctf import CTFParams

    cols = ["defocus_u", "defocus_v", "defocus_angle", "voltage", "cs", "amplitude_contrast",
            "phase_shift", "bfactor"]
    missing = [c for c in cols if c not in table.columns]
    if missing:
        raise InputError(f"particle table lacks CTF column(s) {', '.join(missing)}")
    return [CTFParams(*row) for row in table[cols].itertuples(index=False, name=None)]


def resolve_stacks(table: pd.DataFrame, data_dir=None) -> pd.Series:
    """Absolute stack path of every row: ``image_path`` relative to ``data_dir`` (default: the
    STAR file's directory).  Raises, listing them, if any referenced stack is missing."""
    if "image_path" not in table.columns:
        raise InputError("particle table has no image references (rlnImageName)")
    base = Path(data_dir) if data_dir is not None else Path(table.attrs.get("path", ".")).parent
    paths = table["image_path"].map(lambda p: str(Path(p) if Path(p).is_absolute() else base / p))
    unique = pd.unique(paths)
    missing = [p for p in unique if not Path(p).exists()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {len(unique)} image stack(s) referenced by the STAR file are "
            f"missing under {base}: {', '.join(missing[:3])}{' …' if len(missing) > 3 else ''}. "
            "Pass the directory holding them (data_dir / --data-dir) or fetch them")
    return paths


def check_write_ids(table: pd.DataFrame, paths: pd.Series) -> None:
    """Refuse a STAR file and stacks written by different runs (see :func:`write_star`).

    A STAR that names a write id for a stack must find the same id in that stack's header
    label; the STAR is renamed into place last, so a run interrupted between the renames
    leaves a new stack beside the old STAR, which this catches."""
    for name, wid in table.attrs.get("write_ids", {}).items():
        rows = np.flatnonzero((table["image_path"] == name).to_numpy())
        if not rows.size:
            continue
        stack = paths.iloc[rows[0]]
        found = [lab.split()[1] for lab in read_header(stack).labels
                 if lab.startswith(WRITE_ID_TAG) and len(lab.split()) == 2]
        if found != [wid]:
            raise InputError(
                f"{table.attrs.get('path', 'STAR file')} and {stack} do not belong together: the "
                f"STAR file expects write id {wid}, the stack carries "
                f"{found[0] if found else 'none'} (an interrupted write, or a stack replaced "
                "since): write them again (e.g. rerun radsvd simulate)")


def load_particles(star, data_dir=None, n: int | None = None, dtype=np.float32,
                   require_ctf: bool = True):
    """Images (n, N, N) and their normalised table from a STAR file and its stacks.

    Only the first ``n`` particles are read (stacks are memory-mapped).  Checks that every
    stack exists, every index is in range and all images share one square box.
    """
    table = star if isinstance(star, pd.DataFrame) else read_star(star, require_ctf=require_ctf)
    if n is not None:
        table = table.iloc[: int(n)]
    if len(table) == 0:
        raise InputError("load_particles: no particles selected")
    paths = resolve_stacks(table, data_dir)
    check_write_ids(table, paths)
    images = None
    for p, rows in table.groupby(paths, sort=False).indices.items():
        block = read_stack(p, table["image_index"].to_numpy()[rows], dtype=dtype)
        if block.shape[1] != block.shape[2]:
            raise InputError(f"{p}: images are {block.shape[2]}×{block.shape[1]}, not square")
        if images is None:
            images = np.empty((len(table),) + block.shape[1:], dtype=dtype)
        elif block.shape[1:] != images.shape[1:]:
            raise InputError(f"{p}: box {block.shape[1]} differs from {images.shape[1]} of the "
                             "other stacks: mismatched box sizes")
        images[rows] = block
    if "pixel_size" not in table.columns or table["pixel_size"].isna().any():
        vs = read_header(paths.iloc[0]).voxel_size
        if vs <= 0:
            raise InputError("no pixel size in the STAR file nor in the stack header")
        table = table.assign(pixel_size=table.get("pixel_size", pd.Series(np.nan, index=table.index)).fillna(vs))
    return images, table


def check_map_matches_particles(map_shape, map_pixel: float, box: int, pixel_size: float,
                                rtol: float = 0.01) -> None:
    """Raise if a map and particle images do not cover the same physical box (N·p in Å)."""
    N = int(map_shape[-1])
    if len(set(map_shape)) != 1:
        raise InputError(f"map is not cubic: shape {tuple(map_shape)}")
    a, b = N * float(map_pixel), int(box) * float(pixel_size)
    if not np.isclose(a, b, rtol=rtol):
        raise InputError(
            f"mismatched box sizes: the map covers {N} × {map_pixel:g} Å = {a:.1f} Å but the "
            f"particles {box} × {pixel_size:g} Å = {b:.1f} Å; resample one of them "
            "(radsvd.data.preprocess.resample_volume / downsample) so both cover the same box")
