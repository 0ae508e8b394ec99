"""RELION STAR files: one table of RELION labels, one reader for every style, one writer.

STAR files of every RELION style (plain or gzip) are normalised into one ``pandas.DataFrame``
with the columns

    image_name (``NNNNNN@stack.mrcs`` as written), image_index (0-based), image_path,
    defocus_u, defocus_v (Å), defocus_angle (deg), phase_shift (deg), voltage (kV), cs (mm),
    amplitude_contrast, bfactor (Å²), pixel_size (Å), rot, tilt, psi (deg, ZYZ),
    shift_x, shift_y (Å, rlnOrigin*), optics_group, micrograph

and ``table.attrs`` = {"style": "1" | "3.0" | "3.1", "path": ..., "write_ids": ...}.  Styles:
RELION ≥ 3.1 has data_optics (voltage, Cs, amplitude contrast, pixel size per optics group) +
data_particles, origins in Å; RELION 1.x and 3.0 put everything on each particle, origins in
pixels and pixel size = rlnDetectorPixelSize (µm) · 1e4 / rlnMagnification.  3.0 is told from 1
by its 3.0-only columns (rlnPhaseShift, rlnCtfBfactor, rlnCtfScalefactor).
"""

from __future__ import annotations

import contextlib
import re
import tempfile
import warnings
from pathlib import Path

import numpy as np

from radsvd._files import atomic_path
from radsvd._lazy import LazyModule
from radsvd._validate import InputError
from radsvd.data import _gzip

pd = LazyModule("pandas")     # STAR tables only: reading maps and stacks does not load it

__all__ = ["CTF_LABELS", "NUMERIC_COLUMNS", "OPTICS_LABELS", "PARTICLE_LABELS",
           "PHYSICAL_RANGES", "PIXEL_SIZE_LABELS", "WRITE_ID_TAG", "check_range",
           "particle_block", "read_blocks", "read_star", "read_write_ids", "star_style",
           "write_star"]

_CTF_COLUMNS = ("defocus_u", "defocus_v")
NUMERIC_COLUMNS = ["defocus_u", "defocus_v", "defocus_angle", "phase_shift", "voltage", "cs",
                   "amplitude_contrast", "bfactor", "pixel_size", "rot", "tilt", "psi",
                   "shift_x", "shift_y"]
PARTICLE_LABELS = {  # normalised name ← RELION label (particle level)
    "defocus_u": "rlnDefocusU", "defocus_v": "rlnDefocusV",
    "defocus_angle": "rlnDefocusAngle", "phase_shift": "rlnPhaseShift",
    "bfactor": "rlnCtfBfactor", "rot": "rlnAngleRot", "tilt": "rlnAngleTilt",
    "psi": "rlnAnglePsi", "micrograph": "rlnMicrographName",
}
OPTICS_LABELS = {"voltage": "rlnVoltage", "cs": "rlnSphericalAberration",
                 "amplitude_contrast": "rlnAmplitudeContrast"}
CTF_LABELS = {key: {**PARTICLE_LABELS, **OPTICS_LABELS}[key]  # what a CTF cannot do without
              for key in ("defocus_u", "defocus_v", "voltage", "cs", "amplitude_contrast")}
PIXEL_SIZE_LABELS = ("rlnImagePixelSize", "rlnMicrographPixelSize",
                     "rlnMicrographOriginalPixelSize")   # 3.1 optics, in order of preference
_V30_ONLY = ("rlnPhaseShift", "rlnCtfBfactor", "rlnCtfScalefactor")
_DEFAULTS = {"defocus_angle": 0.0, "phase_shift": 0.0, "bfactor": 0.0}
# Labels whose every value must be a finite number.
_NUMERIC_LABELS = (*(PARTICLE_LABELS[k] for k in PARTICLE_LABELS if k != "micrograph"),
                   *OPTICS_LABELS.values(), *PIXEL_SIZE_LABELS, "rlnDetectorPixelSize",
                   "rlnMagnification", "rlnImageSize", "rlnOpticsGroup", "rlnCtfScalefactor",
                   "rlnOriginX", "rlnOriginY", "rlnOriginXAngst", "rlnOriginYAngst")
# Physical ranges, inclusive unless the text says otherwise: values outside cannot be meant
# (a negative defocus, 10⁹ Å, a pixel size of 0) and would give meaningless CTFs and poses.
PHYSICAL_RANGES = {
    "rlnDefocusU": (0.0, 2e5, "[0, 200000] Å"), "rlnDefocusV": (0.0, 2e5, "[0, 200000] Å"),
    "rlnVoltage": (20.0, 3000.0, "[20, 3000] kV"),
    "rlnSphericalAberration": (-1.0, 20.0, "[-1, 20] mm"),
    "rlnAmplitudeContrast": (0.0, np.nextafter(1.0, 0.0), "[0, 1)"),
    **{label: (1e-3, 100.0, "[0.001, 100] Å") for label in PIXEL_SIZE_LABELS},
    "rlnDetectorPixelSize": (1e-6, 1e6, "> 0 µm"), "rlnMagnification": (1e-6, 1e12, "> 0"),
    "rlnImageSize": (0, 1 << 16, "[0, 65536] pixels (0: not given)"), "rlnOpticsGroup": (1, 1 << 31, ">= 1"),
}
_TOKEN = re.compile(r"'[^']*'|\"[^\"]*\"|\S+")   # a STAR value: quoted (may hold spaces) or bare


def check_range(label: str, values, where: str = "", name: str | None = None) -> None:
    """Raise InputError if a value of ``label`` is not a number within its
    :data:`PHYSICAL_RANGES` (no check for labels without one).  ``where`` (may hold
    ``{row}``, filled with the 1-based row of the first bad value) and ``name`` (default: the
    label, e.g. an option) say where the value came from."""
    if label not in PHYSICAL_RANGES:
        return
    lo, hi, text = PHYSICAL_RANGES[label]
    v = np.asarray(values, np.float64).ravel()
    bad = np.flatnonzero(~((v >= lo) & (v <= hi)))
    if bad.size:
        head = f"{where.format(row=int(bad[0]) + 1)}: " if where else ""
        raise InputError(f"{head}{name or label} = {v[bad[0]]:g} is outside the physical "
                         f"range {text}")


def _read_lines(path: Path) -> list:
    with _gzip.open_text(path) as f:
        return f.read().splitlines()


def _check_loop_labels(lines: list, path: Path) -> None:
    """Refuse a label repeated within one loop (which value would be meant?)."""
    block, labels, in_loop, rows = "the file", {}, False, False
    for no, line in enumerate(lines, 1):
        s = line.strip()
        if s.startswith("data_"):
            block, labels, in_loop, rows = s, {}, False, False
        elif s == "loop_":
            labels, in_loop, rows = {}, True, False
        elif s.startswith("_") and in_loop and not rows:
            name = s.split()[0]
            if name in labels:
                raise InputError(f"{path}: label {name} appears twice in the loop of {block} "
                                 f"(lines {labels[name]} and {no}): which one is meant?")
            labels[name] = no
        elif s and not s.startswith("#"):
            rows = True
            if s.startswith("_"):
                in_loop = False


def read_blocks(path) -> dict:
    """The data blocks of a STAR file (plain or gzip) as {name: DataFrame}: starfile's parser,
    a lenient one (skipping malformed rows, with a warning) where starfile fails."""
    import starfile

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such STAR file")
    if not path.is_file():
        raise InputError(f"{path}: {'a folder' if path.is_dir() else 'not a regular file'}, "
                         "not a STAR file")
    lines = _read_lines(path)
    _check_loop_labels(lines, path)
    err = None
    try:
        with warnings.catch_warnings(), contextlib.ExitStack() as stack:
            warnings.simplefilter("ignore")
            src = path
            if _gzip.is_gzip(path):   # starfile reads plain files only
                src = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "star.star"
                src.write_text("\n".join(lines) + "\n")
            blocks = starfile.read(src, always_dict=True)
    except Exception as exc:  # starfile raises assorted parser errors; fall back below
        blocks, err = None, exc
    if blocks is None or not any(isinstance(b, pd.DataFrame) and len(b) for b in blocks.values()):
        blocks = _read_blocks_lenient(lines, path)
        if not blocks:
            why = f" (starfile: {err})" if err is not None else ""
            raise InputError(f"{path}: no data block found in STAR file{why}")
    return blocks


def _read_blocks_lenient(lines: list, path) -> dict:
    """Minimal STAR loop reader that skips malformed rows (with a warning naming the lines).

    Used when starfile fails, e.g. EMPIAR-10028's shiny_2sets.star has a stray character on
    one line.  Handles ``data_`` blocks with ``loop_`` tables and key-value pairs; quoted
    values may hold spaces.
    """
    blocks: dict = {}
    name, labels, rows, bad, pairs = None, [], [], [], {}
    in_loop = False

    def close():
        if name is None:
            return
        if labels:
            df = pd.DataFrame(rows, columns=labels)
            for c in df.columns:
                num = pd.to_numeric(df[c], errors="coerce")
                if num.notna().all():
                    df[c] = num
            blocks[name] = df
        elif pairs:
            blocks[name] = pd.DataFrame([pairs])

    def values(s):
        return [t[1:-1] if t[0] in "'\"" and len(t) > 1 else t for t in _TOKEN.findall(s)]

    for lineno, line in enumerate(lines, 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if s.startswith("data_"):
            close()
            name, labels, rows, pairs, in_loop = s[5:], [], [], {}, False
            continue
        if s == "loop_":
            in_loop, labels, rows = True, [], []
            continue
        if s.startswith("_"):
            parts = values(s)
            if in_loop and not rows:
                labels.append(parts[0][1:])
            else:
                pairs[parts[0][1:]] = parts[1] if len(parts) > 1 else ""
            continue
        if in_loop and labels:
            parts = values(s)
            if len(parts) != len(labels):
                bad.append(lineno)
                continue
            rows.append(parts)
    close()
    if bad:
        warnings.warn(f"{path}: skipped {len(bad)} malformed STAR row(s) at line(s) "
                      f"{', '.join(map(str, bad[:10]))}{' …' if len(bad) > 10 else ''}",
                      stacklevel=3)
    return blocks


def star_style(blocks: dict, path="STAR file") -> str:
    """"3.1" (data_optics + data_particles), "3.0" (3.0-only columns) or "1"."""
    if "optics" in blocks and "particles" in blocks:
        return "3.1"
    table = particle_block(blocks, path)
    return "3.0" if any(c in table.columns for c in _V30_ONLY) else "1"


def particle_block(blocks: dict, path) -> pd.DataFrame:
    if "particles" in blocks:
        return blocks["particles"]
    tables = [b for b in blocks.values() if isinstance(b, pd.DataFrame) and len(b)
              and ("rlnImageName" in b.columns or "rlnDefocusU" in b.columns
                   or "rlnAngleRot" in b.columns)]
    if not tables:
        raise InputError(f"{path}: no particle table (no loop with rlnImageName, rlnDefocusU "
                         "or rlnAngleRot)")
    return max(tables, key=len)


def _numeric_block(block: pd.DataFrame, path: Path, kind: str) -> pd.DataFrame:
    """``block`` with every numeric label as float64; raises on the first value of one that
    is not a finite number or lies outside its physical range (file, label, row named)."""
    block = block.copy()
    for label in _NUMERIC_LABELS:
        if label not in block.columns:
            continue
        raw = block[label]
        num = pd.to_numeric(raw, errors="coerce").to_numpy(np.float64)
        bad = np.flatnonzero(~np.isfinite(num))
        if bad.size:
            i = int(bad[0])
            what = "a finite number" if _is_number(raw.iloc[i]) else "a number"
            raise InputError(f"{path}: {label} in {kind} row {i + 1} is {str(raw.iloc[i])!r}, "
                             f"not {what} ({int(bad.size)} such row(s))")
        if label in ("rlnOpticsGroup", "rlnImageSize") and not np.all(num == np.round(num)):
            i = int(np.flatnonzero(num != np.round(num))[0])
            raise InputError(f"{path}: {label} in {kind} row {i + 1} is {num[i]:g}, not an "
                             "integer")
        check_range(label, num, f"{path}: {kind} row {{row}}")
        block[label] = num
    return block


def _is_number(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def read_star(path, require_ctf: bool = True) -> pd.DataFrame:
    """Read a RELION STAR file of any style (plain or gzip) into the normalised particle table
    (module doc), one row per particle: optics values, pixel size and image size of each
    particle's own optics group, origins in Å converted with that pixel size.

    Refused, with the file, label and first row named: a label repeated in a loop, an optics
    group defined twice or undefined, a value of a numeric label that is not a finite number
    or lies outside :data:`PHYSICAL_RANGES`, origins in pixels without a pixel size.

    Parameters
    ----------
    path : str or Path
        A STAR file (RELION 1.x, 3.0 or ≥ 3.1; ``.gz`` read as gzip).
    require_ctf : bool
        Also refuse a file without the CTF columns.

    Returns
    -------
    pandas.DataFrame
        The normalised particle table (columns in the module doc; ``attrs``: style, path,
        write ids).

    Examples
    --------
    >>> import tempfile
    >>> from radsvd.data.simulate import write_particles
    >>> tmp = tempfile.TemporaryDirectory()
    >>> mol = radsvd.GaussianMolecule([[0, 0, 0]], [0.1], [1.0])
    >>> images, table = radsvd.simulate_particles(mol, n=3, N=16, pixel_size=2.0, seed=1)
    >>> paths = write_particles(tmp.name, images, table)
    >>> star = radsvd.read_star(paths["star"])
    >>> len(star), star.attrs["style"], float(star["pixel_size"].iloc[0])
    (3, '3.1', 2.0)
    >>> tmp.cleanup()
    """
    path = Path(path)
    blocks = read_blocks(path)
    style = star_style(blocks, path)
    part = _numeric_block(particle_block(blocks, path).reset_index(drop=True), path,
                          "particle")
    out = pd.DataFrame(index=part.index)
    if "rlnImageName" in part.columns:
        names = part["rlnImageName"].astype(str)
        out["image_name"] = names
        split = names.str.split("@", n=1, expand=True)
        if split.shape[1] == 2 and split[1].notna().all():
            idx = pd.to_numeric(split[0], errors="coerce")
            if idx.isna().any() or (idx < 1).any():
                bad = int(np.flatnonzero(idx.isna() | (idx < 1))[0])
                raise InputError(f"{path}: rlnImageName in particle row {bad + 1} is "
                                 f"{names[bad]!r}, not NNNNNN@stack.mrcs with NNNNNN >= 1")
            out["image_index"] = idx.astype(np.int64) - 1
            out["image_path"] = split[1]
        else:  # one image per file
            out["image_index"] = 0
            out["image_path"] = names
    for key, label in PARTICLE_LABELS.items():
        if label in part.columns:
            out[key] = part[label]
    if style == "3.1":
        _optics_31(out, part, _numeric_block(blocks["optics"].reset_index(drop=True), path,
                                             "optics"), path)
    else:
        _optics_per_particle(out, part, path)
    if require_ctf:
        missing = [PARTICLE_LABELS[c] for c in _CTF_COLUMNS if c not in out.columns]
        missing += [label for key, label in OPTICS_LABELS.items() if key not in out.columns]
        if missing:
            raise InputError(f"{path}: missing CTF column(s) {', '.join(missing)} "
                             f"(RELION {style} style file); cannot build CTFs")
    for key, val in _DEFAULTS.items():
        if key not in out.columns:
            out[key] = val
    for key in ("shift_x", "shift_y"):
        if key not in out.columns:
            out[key] = 0.0
    for key in NUMERIC_COLUMNS:
        if key in out.columns:
            out[key] = out[key].astype(np.float64)
    out.attrs["style"] = style
    out.attrs["path"] = str(path)
    out.attrs["write_ids"] = read_write_ids(path)
    return out


def _optics_31(out: pd.DataFrame, part: pd.DataFrame, optics: pd.DataFrame, path) -> None:
    """Columns of a RELION 3.1 file from each particle's optics group."""
    if "rlnOpticsGroup" not in optics.columns:
        raise InputError(f"{path}: data_optics has no rlnOpticsGroup column")
    ids = optics["rlnOpticsGroup"].to_numpy(np.int64)
    dup = np.flatnonzero(pd.Series(ids).duplicated().to_numpy())
    if dup.size:
        i = int(dup[0])
        first = int(np.flatnonzero(ids == ids[i])[0])
        raise InputError(f"{path}: rlnOpticsGroup {ids[i]} is defined twice in data_optics "
                         f"(optics rows {first + 1} and {i + 1})")
    if "rlnOpticsGroup" in part.columns:
        groups = part["rlnOpticsGroup"].to_numpy(np.int64)
    elif len(ids) == 1:
        groups = np.full(len(part), ids[0])
    else:
        raise InputError(f"{path}: data_optics defines {len(ids)} optics groups but "
                         "data_particles has no rlnOpticsGroup column: which group is whose?")
    row = pd.Index(ids).get_indexer(groups)
    if (row < 0).any():
        i = int(np.flatnonzero(row < 0)[0])
        raise InputError(f"{path}: rlnOpticsGroup in particle row {i + 1} is {groups[i]}, an "
                         f"optics group data_optics does not define (it defines "
                         f"{', '.join(str(int(g)) for g in ids)})")
    out["optics_group"] = groups
    for key, label in OPTICS_LABELS.items():
        if label in optics.columns:
            out[key] = optics[label].to_numpy()[row]
        elif label in part.columns:
            out[key] = part[label]
    for label in PIXEL_SIZE_LABELS:
        if label in optics.columns:
            out["pixel_size"] = optics[label].to_numpy()[row]
            break
    if "rlnImageSize" in optics.columns:   # 0 (written by some tools): not given
        size = optics["rlnImageSize"].to_numpy(np.float64)[row]
        out["image_size"] = np.where(size > 0, size, np.nan)
    _origins(out, part, path, "the file gives no pixel size (data_optics has no "
                              "rlnImagePixelSize)")


def _optics_per_particle(out: pd.DataFrame, part: pd.DataFrame, path) -> None:
    """Columns of a RELION 1 / 3.0 file: optics on every particle, pixel size from
    rlnDetectorPixelSize (µm) · 1e4 / rlnMagnification."""
    out["optics_group"] = 1
    for key, label in OPTICS_LABELS.items():
        if label in part.columns:
            out[key] = part[label]
    if "rlnImagePixelSize" in part.columns:
        out["pixel_size"] = part["rlnImagePixelSize"]
    elif "rlnDetectorPixelSize" in part.columns and "rlnMagnification" in part.columns:
        out["pixel_size"] = part["rlnDetectorPixelSize"] * 1e4 / part["rlnMagnification"]
    _origins(out, part, path, "the file gives no pixel size (rlnDetectorPixelSize and "
                              "rlnMagnification)")


def _origins(out: pd.DataFrame, part: pd.DataFrame, path, no_pixel: str) -> None:
    """shift_x/y in Å: rlnOrigin*Angst as they are, else rlnOrigin* (pixels) times each
    particle's own pixel size."""
    for ax in ("X", "Y"):
        if f"rlnOrigin{ax}Angst" in part.columns:
            out[f"shift_{ax.lower()}"] = part[f"rlnOrigin{ax}Angst"]
        elif f"rlnOrigin{ax}" in part.columns:
            if "pixel_size" not in out:
                raise InputError(f"{path}: origins are in pixels (rlnOrigin{ax}) but {no_pixel}")
            out[f"shift_{ax.lower()}"] = part[f"rlnOrigin{ax}"] * out["pixel_size"]


WRITE_ID_TAG = "radsvd-write-id"


def read_write_ids(path) -> dict:
    """{stack name: write id} from the ``# radsvd-write-id ID STACK`` lines heading a STAR."""
    ids = {}
    with _gzip.open_text(path) as f:
        for line in f.read(8192).splitlines():
            parts = line.split(maxsplit=3)
            if len(parts) == 4 and parts[:2] == ["#", WRITE_ID_TAG]:
                ids[parts[3].strip()] = parts[2]
    return ids


def write_star(path, table: pd.DataFrame, style: str = "3.1", write_ids: dict | None = None) \
        -> Path:
    """Write a normalised particle table as a RELION STAR file of ``style`` "1", "3.0" or "3.1".

    ``write_ids`` {stack name: id}: heads the file with ``# radsvd-write-id ID STACK`` lines
    (comments to RELION) that :func:`radsvd.data.stacks.load_particles` checks against the stacks' header labels.

    Pixel size: 3.1 writes rlnImagePixelSize per optics group (groups from ``optics_group``,
    one per distinct (voltage, cs, amplitude contrast, pixel size) if absent); 1 and 3.0
    write rlnDetectorPixelSize = pixel_size (µm, i.e. Å·1e-4·mag) with rlnMagnification = 10000.
    """
    import starfile

    if style not in ("1", "3.0", "3.1"):
        raise InputError(f"write_star: style must be '1', '3.0' or '3.1', got {style!r}")
    t = table.reset_index(drop=True)
    need = ["image_name", "voltage", "cs", "amplitude_contrast", "pixel_size"]
    missing = [c for c in need if c not in t.columns]
    if missing:
        raise InputError(f"write_star: table lacks column(s) {', '.join(missing)}")
    part = pd.DataFrame({"rlnImageName": t["image_name"].astype(str)})
    for key, label in PARTICLE_LABELS.items():
        if key in t.columns and not (style == "1" and label in _V30_ONLY):
            part[label] = t[key]
    if style != "1" and "rlnPhaseShift" not in part.columns:
        part["rlnPhaseShift"] = 0.0  # marks RELION ≥ 3.0 for readers
    blocks = {}
    if style == "3.1":
        keys = ["voltage", "cs", "amplitude_contrast", "pixel_size"]
        if "optics_group" in t.columns:
            groups = t["optics_group"].astype(int).to_numpy()
        else:
            _, groups = np.unique(t[keys].to_numpy(), axis=0, return_inverse=True)
            groups = groups.ravel() + 1
        optics = t.assign(_g=groups).groupby("_g", sort=True)[keys].first()
        box = t["image_size"].iloc[0] if "image_size" in t.columns and len(t) else None
        box = None if box is None or not box > 0 else box
        blocks["optics"] = pd.DataFrame({
            "rlnOpticsGroup": optics.index.astype(int),
            "rlnOpticsGroupName": [f"opticsGroup{g}" for g in optics.index],
            "rlnVoltage": optics["voltage"].to_numpy(),
            "rlnSphericalAberration": optics["cs"].to_numpy(),
            "rlnAmplitudeContrast": optics["amplitude_contrast"].to_numpy(),
            "rlnImagePixelSize": optics["pixel_size"].to_numpy(),
            **({"rlnImageSize": [int(box)] * len(optics), "rlnImageDimensionality":
                [2] * len(optics)} if box is not None else {}),
        })
        part["rlnOpticsGroup"] = groups
        for ax in ("x", "y"):
            if f"shift_{ax}" in t.columns:
                part[f"rlnOrigin{ax.upper()}Angst"] = t[f"shift_{ax}"]
        blocks["particles"] = part
    else:
        part["rlnVoltage"] = t["voltage"]
        part["rlnSphericalAberration"] = t["cs"]
        part["rlnAmplitudeContrast"] = t["amplitude_contrast"]
        part["rlnMagnification"] = 10000.0
        part["rlnDetectorPixelSize"] = t["pixel_size"]  # µm = Å · 1e4 / 1e4
        for ax in ("x", "y"):
            if f"shift_{ax}" in t.columns:
                part[f"rlnOrigin{ax.upper()}"] = t[f"shift_{ax}"] / t["pixel_size"]
        blocks["" if style == "3.0" else "images"] = part
    head = "".join(f"# {WRITE_ID_TAG} {wid} {name}\n" for name, wid in (write_ids or {}).items())
    with atomic_path(path, suffix=".star") as tmp:
        starfile.write(blocks, tmp, float_format="%.8g")
        if style == "3.1" or head:
            text = tmp.read_text()
            tmp.write_text(head + ("\n# version 30001\n" if style == "3.1" else "") + text)
    return Path(path)
