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
from radsvd.data.star import CTF_LABELS, OPTICS_LABELS, WRITE_ID_TAG, check_range, read_star

pd = LazyModule("pandas")

__all__ = ["check_map_matches_particles", "check_one_optics", "check_stacks", "check_write_ids",
           "ctf_params", "load_particle_table", "load_particles", "particle_inputs",
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
    """Refuse a STAR file and stacks written by different runs (see
    :func:`radsvd.data.star.write_star`).

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


def check_stacks(table: pd.DataFrame, paths: pd.Series) -> dict:
    """Check every stack a table names from its header alone, before any image is read:
    an image stack (not a 3D map), square images, indices in range, the box the table's
    rlnImageSize states.  Returns {stack path: header}."""
    star = table.attrs.get("path", "STAR file")
    index = table["image_index"].to_numpy()
    headers = {}
    for p, rows in table.groupby(paths.to_numpy(), sort=False).indices.items():
        h = read_header(p)
        first = int(rows[0])
        name = table["image_name"].iloc[first] if "image_name" in table.columns else p
        if not h.is_stack:
            raise InputError(f"{star}: rlnImageName in particle row {first + 1} is {name!r}, "
                             f"which points at a 3D map ({p} holds one {h.nx}×{h.ny}×{h.nz} "
                             "volume), not an image stack")
        if h.nx != h.ny:
            raise InputError(f"{p}: images are {h.nx}×{h.ny}, not square")
        top = rows[np.argmax(index[rows])]
        if index[top] >= h.nz:
            raise InputError(f"{star}: rlnImageName in particle row {int(top) + 1} is "
                             f"{table['image_name'].iloc[top]!r}, but {p} holds {h.nz} images (index "
                             "out of range)")
        if "image_size" in table.columns:
            size = table["image_size"].to_numpy()[rows]
            wrong = np.flatnonzero((size != h.nx) & ~np.isnan(size))
            if wrong.size:
                r = int(rows[wrong[0]])
                raise InputError(f"{star}: rlnImageSize of particle row {r + 1} is "
                                 f"{int(size[wrong[0]])}, but its stack {p} holds "
                                 f"{h.nx}×{h.ny} images")
        headers[p] = h
    boxes = {h.nx for h in headers.values()}
    if len(boxes) > 1:
        raise InputError(f"{star}: mismatched box sizes: the stacks hold images of "
                         f"{', '.join(map(str, sorted(boxes)))} pixels; align each box apart "
                         "(split the STAR file by optics group)")
    return headers


def check_one_optics(table: pd.DataFrame, rtol: float = 1e-4) -> None:
    """Refuse particles of several pixel sizes or boxes (optics groups that differ): the
    search aligns images of one pixel grid.  Whatever the row order, the first row whose value
    differs from the first particle's is named."""
    star = table.attrs.get("path", "STAR file")
    for key, what, unit in (("pixel_size", "pixel sizes", " Å"), ("image_size", "boxes", " px")):
        if key not in table.columns or not len(table):
            continue
        v = table[key].to_numpy(np.float64)
        known = np.flatnonzero(~np.isnan(v))
        if not known.size:
            continue
        ref = v[known[0]]
        diff = known[~np.isclose(v[known], ref, rtol=rtol, atol=0)]
        if diff.size:
            i = int(diff[0])
            g0 = table["optics_group"].iloc[known[0]] if "optics_group" in table else "?"
            g1 = table["optics_group"].iloc[i] if "optics_group" in table else "?"
            raise InputError(
                f"{star}: particles of different {what}: {ref:g}{unit} (optics group {g0}, "
                f"row {int(known[0]) + 1}) and {v[i]:g}{unit} (optics group {g1}, row {i + 1}); "
                "radsvd aligns one pixel grid at a time: split the STAR file by optics group "
                "(or resample the particles to one pixel size)")


def load_particle_table(star, n: int | None = None, no_ctf: bool = False, voltage=None,
                        cs=None, amplitude_contrast=None) -> pd.DataFrame:
    """The normalised STAR table of the first n particles, validated before any work: CTF
    columns present (unless ``no_ctf``), optics values given as options (``voltage`` kV,
    ``cs`` mm, ``amplitude_contrast``) filled in where the STAR lacks them and checked against
    the physical ranges, one pixel size and box (:func:`check_one_optics`)."""
    table = read_star(star, require_ctf=False)
    if n is not None:
        if int(n) < 1:
            raise InputError(f"n must be >= 1, got {n}")
        table = table.iloc[: int(n)]
    for key, value in (("voltage", voltage), ("cs", cs),
                       ("amplitude_contrast", amplitude_contrast)):
        if value is None:
            continue
        option = f"--{key.replace('_', '-')}"
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise InputError(f"{option} must be a number, got {value!r}") from None
        check_range(OPTICS_LABELS[key], [value], name=option)
        if key not in table.columns or table[key].isna().any():
            filled = table[key].fillna(value) if key in table.columns else value
            table = table.assign(**{key: filled})
    if not no_ctf:
        missing = [label for key, label in CTF_LABELS.items()
                   if key not in table.columns or table[key].isna().any()]
        if missing:
            optics = [f"--{k.replace('_', '-')}" for k in OPTICS_LABELS
                      if CTF_LABELS[k] in missing]
            hint = f"give {'/'.join(optics)} for the optics, or " if optics else ""
            raise InputError(f"{star}: missing CTF column(s) {', '.join(missing)}; {hint}"
                             "--no-ctf to align without CTF")
    check_one_optics(table)
    return table


def load_particles(star, data_dir=None, n: int | None = None, dtype=np.float32,
                   require_ctf: bool = True):
    """Images (n, N, N) and their normalised table from a STAR file and its stacks.

    Only the first ``n`` particles are read (stacks are memory-mapped).  Checks, before
    reading any image, that every stack exists, is an image stack and holds the indices,
    that the stacks and the STAR file belong together (write ids) and that all particles share
    one box and pixel size; the pixel size comes from the stack header only where the STAR
    file gives none.

    Parameters
    ----------
    star : str, Path or pandas.DataFrame
        A STAR file, or a table already read by :func:`read_star`.
    data_dir : str or Path, optional
        Folder against which the stack names of the STAR file are resolved (default: the
        STAR file's folder).
    n : int, optional
        Read only the first ``n`` particles.
    dtype : dtype
        Type of the returned images.
    require_ctf : bool
        Refuse a STAR file without the CTF columns.

    Returns
    -------
    images : ndarray, shape (n, N, N)
    table : pandas.DataFrame
        The normalised particle table of the images read (:func:`read_star`).

    Examples
    --------
    >>> import tempfile
    >>> from radsvd.data.simulate import write_particles
    >>> tmp = tempfile.TemporaryDirectory()
    >>> mol = radsvd.GaussianMolecule([[0, 0, 0]], [0.1], [1.0])
    >>> images, table = radsvd.simulate_particles(mol, n=3, N=16, pixel_size=2.0, seed=1)
    >>> paths = write_particles(tmp.name, images, table)
    >>> read, star = radsvd.load_particles(paths["star"], n=2)
    >>> read.shape, bool(np.array_equal(read, images[:2]))
    ((2, 16, 16), True)
    >>> tmp.cleanup()
    """
    table = star if isinstance(star, pd.DataFrame) else read_star(star, require_ctf=require_ctf)
    if n is not None:
        table = table.iloc[: int(n)]
    if len(table) == 0:
        raise InputError("load_particles: no particles selected")
    paths = resolve_stacks(table, data_dir)
    check_write_ids(table, paths)
    headers = check_stacks(table, paths)
    check_one_optics(table)
    N = next(iter(headers.values())).nx
    images = np.empty((len(table), N, N), dtype=dtype)
    for p, rows in table.groupby(paths.to_numpy(), sort=False).indices.items():
        images[rows] = read_stack(p, table["image_index"].to_numpy()[rows], dtype=dtype)
    if "pixel_size" not in table.columns or table["pixel_size"].isna().any():
        first = paths.iloc[0]
        vs = headers[first].voxel_size
        if vs <= 0:
            raise InputError(f"{table.attrs.get('path', 'STAR file')}: no pixel size in the "
                             f"STAR file nor in the header of {first}")
        given = table.get("pixel_size", pd.Series(np.nan, index=table.index))
        table = table.assign(pixel_size=given.fillna(vs))
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


def particle_inputs(star, map_path=None, data_dir=None) -> list:
    """The files a particle command reads, as ``(role, path)`` pairs: the STAR file, the map
    (if given) and every stack the STAR file names (for
    :func:`radsvd._files.refuse_input_as_output`).  Stacks not there are left out (their
    absence is reported where they are read)."""
    table = read_star(star, require_ctf=False)
    files = [("STAR file", Path(star))] + ([("map", Path(map_path))] if map_path else [])
    if "image_path" in table.columns:
        base = Path(data_dir) if data_dir is not None else Path(star).parent
        files += [("stack", p if p.is_absolute() else base / p)
                  for p in map(Path, pd.unique(table["image_path"]))]
    return files
