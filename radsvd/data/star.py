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

import warnings
from pathlib import Path

import numpy as np

from radsvd._files import atomic_path
from radsvd._lazy import LazyModule
from radsvd._validate import InputError

pd = LazyModule("pandas")     # STAR tables only: reading maps and stacks does not load it

__all__ = ["CTF_LABELS", "NUMERIC_COLUMNS", "OPTICS_LABELS", "PARTICLE_LABELS", "WRITE_ID_TAG",
           "particle_block", "read_blocks", "read_star", "star_style", "write_star"]

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
_V30_ONLY = ("rlnPhaseShift", "rlnCtfBfactor", "rlnCtfScalefactor")
_DEFAULTS = {"defocus_angle": 0.0, "phase_shift": 0.0, "bfactor": 0.0}


def read_blocks(path) -> dict:
    import starfile

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such STAR file")
    if not path.is_file():
        raise InputError(f"{path}: {'a folder' if path.is_dir() else 'not a regular file'}, "
                         "not a STAR file")
    err = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            blocks = starfile.read(path, always_dict=True)
    except Exception as exc:  # starfile raises assorted parser errors; fall back below
        blocks, err = None, exc
    if blocks is None or not any(isinstance(b, pd.DataFrame) and len(b) for b in blocks.values()):
        blocks = _read_blocks_lenient(path)
        if not blocks:
            why = f" (starfile: {err})" if err is not None else ""
            raise InputError(f"{path}: no data block found in STAR file{why}")
    return blocks


def _read_blocks_lenient(path) -> dict:
    """Minimal STAR loop reader that skips malformed rows (with a warning naming the lines).

    Used when starfile fails, e.g. EMPIAR-10028's shiny_2sets.star has a stray character on
    one line.  Handles ``data_`` blocks with ``loop_`` tables and key-value pairs.
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

    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
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
                parts = s.split()
                if in_loop and not rows:
                    labels.append(parts[0][1:])
                else:
                    pairs[parts[0][1:]] = parts[1] if len(parts) > 1 else ""
                continue
            if in_loop and labels:
                parts = s.split()
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


def star_style(blocks: dict) -> str:
    if "optics" in blocks and "particles" in blocks:
        return "3.1"
    table = particle_block(blocks, "<star>")
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


def read_star(path, require_ctf: bool = True) -> pd.DataFrame:
    """Read a RELION STAR file of any style into the normalised particle table (module doc)."""
    path = Path(path)
    blocks = read_blocks(path)
    style = star_style(blocks)
    part = particle_block(blocks, path).reset_index(drop=True)
    out = pd.DataFrame(index=part.index)
    if "rlnImageName" in part.columns:
        names = part["rlnImageName"].astype(str)
        out["image_name"] = names
        split = names.str.split("@", n=1, expand=True)
        if split.shape[1] == 2 and split[1].notna().all():
            idx = pd.to_numeric(split[0], errors="coerce")
            if idx.isna().any() or (idx < 1).any():
                bad = int(np.flatnonzero(idx.isna() | (idx < 1))[0])
                raise InputError(f"{path}: bad image reference {names[bad]!r} in row {bad + 1} "
                                 "(expected NNNNNN@stack.mrcs with NNNNNN >= 1)")
            out["image_index"] = idx.astype(np.int64) - 1
            out["image_path"] = split[1]
        else:  # one image per file
            out["image_index"] = 0
            out["image_path"] = names
    for key, label in PARTICLE_LABELS.items():
        if label in part.columns:
            out[key] = part[label]
    if style == "3.1":
        optics = blocks["optics"]
        if "rlnOpticsGroup" not in optics.columns:
            raise InputError(f"{path}: data_optics has no rlnOpticsGroup column")
        groups = part["rlnOpticsGroup"] if "rlnOpticsGroup" in part.columns else \
            pd.Series(np.full(len(part), optics["rlnOpticsGroup"].iloc[0]))
        opt = optics.set_index("rlnOpticsGroup")
        unknown = set(groups.unique()) - set(opt.index)
        if unknown:
            raise InputError(f"{path}: particles refer to optics group(s) {sorted(unknown)} "
                             "that data_optics does not define")
        out["optics_group"] = groups.to_numpy()
        for key, label in OPTICS_LABELS.items():
            if label in opt.columns:
                out[key] = opt.loc[groups, label].to_numpy()
            elif label in part.columns:
                out[key] = part[label]
        for label in ("rlnImagePixelSize", "rlnMicrographPixelSize",
                      "rlnMicrographOriginalPixelSize"):
            if label in opt.columns:
                out["pixel_size"] = opt.loc[groups, label].to_numpy()
                break
        for ax in ("X", "Y"):
            if f"rlnOrigin{ax}Angst" in part.columns:
                out[f"shift_{ax.lower()}"] = part[f"rlnOrigin{ax}Angst"]
    else:
        out["optics_group"] = 1
        for key, label in OPTICS_LABELS.items():
            if label in part.columns:
                out[key] = part[label]
        if "rlnImagePixelSize" in part.columns:
            out["pixel_size"] = part["rlnImagePixelSize"]
        elif "rlnDetectorPixelSize" in part.columns and "rlnMagnification" in part.columns:
            out["pixel_size"] = part["rlnDetectorPixelSize"] * 1e4 / part["rlnMagnification"]
        for ax in ("X", "Y"):
            if f"rlnOrigin{ax}Angst" in part.columns:
                out[f"shift_{ax.lower()}"] = part[f"rlnOrigin{ax}Angst"]
            elif f"rlnOrigin{ax}" in part.columns:
                if "pixel_size" not in out:
                    raise InputError(f"{path}: origins are in pixels (rlnOrigin{ax}) but the "
                                     "file gives no pixel size (rlnDetectorPixelSize and "
                                     "rlnMagnification)")
                out[f"shift_{ax.lower()}"] = part[f"rlnOrigin{ax}"] * out["pixel_size"]
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
            out[key] = pd.to_numeric(out[key], errors="coerce").astype(np.float64)
    if require_ctf:
        for key in _CTF_COLUMNS + tuple(OPTICS_LABELS):
            bad = out[key].isna()
            if bad.any():
                raise InputError(f"{path}: column {key} has {int(bad.sum())} non-numeric "
                                 f"value(s), first in particle row {int(np.flatnonzero(bad)[0]) + 1}")
    out.attrs["style"] = style
    out.attrs["path"] = str(path)
    out.attrs["write_ids"] = _write_ids(path)
    return out


WRITE_ID_TAG = "radsvd-write-id"


def _write_ids(path) -> dict:
    """{stack name: write id} from the ``# radsvd-write-id ID STACK`` lines heading a STAR."""
    ids = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f.read(8192).splitlines():
            parts = line.split()
            if len(parts) == 4 and parts[:2] == ["#", WRITE_ID_TAG]:
                ids[parts[3]] = parts[2]
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
        box = t["image_size"].iloc[0] if "image_size" in t.columns else None
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
