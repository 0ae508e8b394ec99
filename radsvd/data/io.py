"""Reading and writing cryo-EM data: MRC maps and stacks (mrcfile), STAR files (starfile).

Every writer is atomic: it writes a temporary file in the destination directory and renames
it over the target (``os.replace``), so a failure never leaves a half-written file.

STAR files of every RELION style are normalised into one ``pandas.DataFrame`` with the columns

    image_name (``NNNNNN@stack.mrcs`` as written), image_index (0-based), image_path,
    defocus_u, defocus_v (Å), defocus_angle (deg), phase_shift (deg), voltage (kV), cs (mm),
    amplitude_contrast, bfactor (Å²), pixel_size (Å), rot, tilt, psi (deg, ZYZ),
    shift_x, shift_y (Å, rlnOrigin*), optics_group, micrograph

and ``table.attrs`` = {"style": "1" | "3.0" | "3.1", "path": ...}.  Styles: RELION ≥ 3.1 has
data_optics (voltage, Cs, amplitude contrast, pixel size per optics group) + data_particles,
origins in Å; RELION 1.x and 3.0 put everything on each particle, origins in pixels and pixel
size = rlnDetectorPixelSize (µm) · 1e4 / rlnMagnification.  3.0 is told from 1 by its 3.0-only
columns (rlnPhaseShift, rlnCtfBfactor, rlnCtfScalefactor).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from radsvd._files import atomic_path
from radsvd._lazy import LazyModule
from radsvd._validate import InputError

pd = LazyModule("pandas")     # STAR tables only: reading maps and stacks does not load it

# ---------------------------------------------------------------------------------------------
# MRC


@dataclass
class MRCInfo:
    """Header summary of an MRC file."""

    path: str
    shape: tuple          # (nz, ny, nx) as stored
    mode: int
    voxel_size: float     # Å (x); 0 if the header has none
    is_stack: bool
    extended_header_bytes: int
    compressed: bool


def _open_mrc(path, header_only=False):
    import mrcfile

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such MRC file")
    try:
        return mrcfile.open(str(path), mode="r", permissive=False, header_only=header_only)
    except (ValueError, EOFError, OSError) as exc:
        raise InputError(
            f"{path}: not a readable MRC file ({exc}). The header may be corrupt or the file "
            "truncated (an interrupted download?): check its size and checksum, or fetch it "
            "again") from exc


def mrc_info(path) -> MRCInfo:
    """Read only the header of an MRC map or stack (gzip or plain)."""
    with _open_mrc(path, header_only=True) as m:
        h = m.header
        shape = (int(h.nz), int(h.ny), int(h.nx))
        vs = float(m.voxel_size.x)
        # mrcfile's convention: a 3D file with space group 0 is an image stack
        is_stack = (int(h.ispg) == 0 and int(h.nz) > 1) or str(path).endswith((".mrcs", ".mrcs.gz"))
        ext = int(h.nsymbt)
    with open(path, "rb") as f:
        compressed = f.read(2) == b"\x1f\x8b"
    return MRCInfo(str(path), shape, int(h.mode), vs, is_stack, ext, compressed)


def read_mrc(path, dtype=np.float64) -> tuple[np.ndarray, float]:
    """Read a map (nz, ny, nx) or stack (n, ny, nx) and its voxel size in Å (0 if unset)."""
    with _open_mrc(path) as m:
        if m.data is None:
            raise InputError(f"{path}: MRC file has no data block")
        data = np.array(m.data, dtype=dtype)
        vs = float(m.voxel_size.x)
    if not np.all(np.isfinite(data)):
        raise InputError(f"{path}: data contain NaN or inf")
    return data, vs


def read_stack(path, indices=None, dtype=np.float32) -> np.ndarray:
    """Images (n, ny, nx) of an MRC stack, optionally only ``indices`` (0-based), memory-mapped."""
    import mrcfile

    path = Path(path)
    compressed = False
    if path.exists():
        with open(path, "rb") as f:
            compressed = f.read(2) == b"\x1f\x8b"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such MRC stack")
    if compressed:
        m = _open_mrc(path)
    else:
        try:
            m = mrcfile.mmap(str(path), mode="r", permissive=False)
        except (ValueError, EOFError, OSError) as exc:
            raise InputError(f"{path}: not a readable MRC stack ({exc}); the header may be "
                             "corrupt or the file truncated: fetch it again") from exc
    with m:
        data = m.data
        if data is None:
            raise InputError(f"{path}: MRC file has no data block")
        if data.ndim == 2:
            data = data[None]
        if indices is None:
            out = np.array(data, dtype=dtype)
        else:
            idx = np.asarray(indices, dtype=np.int64)
            if idx.size and (idx.min() < 0 or idx.max() >= data.shape[0]):
                raise InputError(f"{path}: image index {int(idx.max()) + 1} (1-based) is out of "
                                 f"range: the stack holds {data.shape[0]} images")
            out = np.array(data[idx], dtype=dtype)
    return out


def write_mrc(path, data, voxel_size: float = 1.0, stack: bool | None = None) -> Path:
    """Write a map (3D) or an image stack atomically; ``.gz`` names are gzip-compressed.

    ``stack`` (default: True for 2D input or a ``.mrcs`` name) marks a 3D array as images.
    """
    import mrcfile

    path = Path(path)
    a = np.asarray(data)
    if a.ndim == 2:
        a = a[None]
        stack = True
    if a.ndim != 3:
        raise InputError(f"write_mrc: expected a 2D image, a stack or a 3D map, got {a.shape}")
    if stack is None:
        stack = ".mrcs" in path.name
    if a.dtype not in (np.float32, np.int8, np.int16, np.uint16, np.complex64, np.uint8):
        a = a.astype(np.float32)
    compression = "gzip" if path.name.endswith(".gz") else None
    with atomic_path(path) as tmp:
        with mrcfile.new(str(tmp), overwrite=True, compression=compression) as m:
            m.set_data(np.ascontiguousarray(a))
            if stack:
                m.set_image_stack()
            else:
                m.set_volume()
            m.voxel_size = float(voxel_size)
    return path


# ---------------------------------------------------------------------------------------------
# STAR

_CTF_COLUMNS = ("defocus_u", "defocus_v")
_NUMERIC = ["defocus_u", "defocus_v", "defocus_angle", "phase_shift", "voltage", "cs",
            "amplitude_contrast", "bfactor", "pixel_size", "rot", "tilt", "psi",
            "shift_x", "shift_y"]
_PARTICLE_MAP = {  # normalised name ← RELION label (particle level)
    "defocus_u": "rlnDefocusU", "defocus_v": "rlnDefocusV",
    "defocus_angle": "rlnDefocusAngle", "phase_shift": "rlnPhaseShift",
    "bfactor": "rlnCtfBfactor", "rot": "rlnAngleRot", "tilt": "rlnAngleTilt",
    "psi": "rlnAnglePsi", "micrograph": "rlnMicrographName",
}
_OPTICS_MAP = {"voltage": "rlnVoltage", "cs": "rlnSphericalAberration",
               "amplitude_contrast": "rlnAmplitudeContrast"}
_V30_ONLY = ("rlnPhaseShift", "rlnCtfBfactor", "rlnCtfScalefactor")
_DEFAULTS = {"defocus_angle": 0.0, "phase_shift": 0.0, "bfactor": 0.0}


def _read_blocks(path) -> dict:
    import starfile

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such STAR file")
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
    table = _particle_block(blocks, "<star>")
    return "3.0" if any(c in table.columns for c in _V30_ONLY) else "1"


def _particle_block(blocks: dict, path) -> pd.DataFrame:
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
    blocks = _read_blocks(path)
    style = star_style(blocks)
    part = _particle_block(blocks, path).reset_index(drop=True)
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
    for key, label in _PARTICLE_MAP.items():
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
        for key, label in _OPTICS_MAP.items():
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
        for key, label in _OPTICS_MAP.items():
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
        missing = [_PARTICLE_MAP[c] for c in _CTF_COLUMNS if c not in out.columns]
        missing += [label for key, label in _OPTICS_MAP.items() if key not in out.columns]
        if missing:
            raise InputError(f"{path}: missing CTF column(s) {', '.join(missing)} "
                             f"(RELION {style} style file); cannot build CTFs")
    for key, val in _DEFAULTS.items():
        if key not in out.columns:
            out[key] = val
    for key in ("shift_x", "shift_y"):
        if key not in out.columns:
            out[key] = 0.0
    for key in _NUMERIC:
        if key in out.columns:
            out[key] = pd.to_numeric(out[key], errors="coerce").astype(np.float64)
    if require_ctf:
        for key in _CTF_COLUMNS + tuple(_OPTICS_MAP):
            bad = out[key].isna()
            if bad.any():
                raise InputError(f"{path}: column {key} has {int(bad.sum())} non-numeric "
                                 f"value(s), first in particle row {int(np.flatnonzero(bad)[0]) + 1}")
    out.attrs["style"] = style
    out.attrs["path"] = str(path)
    return out


def write_star(path, table: pd.DataFrame, style: str = "3.1") -> Path:
    """Write a normalised particle table as a RELION STAR file of ``style`` "1", "3.0" or "3.1".

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
    for key, label in _PARTICLE_MAP.items():
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
    with atomic_path(path, suffix=".star") as tmp:
        starfile.write(blocks, tmp, float_format="%.8g")
        if style == "3.1":
            text = tmp.read_text()
            tmp.write_text("\n# version 30001\n" + text)
    return Path(path)


# ---------------------------------------------------------------------------------------------
# particles


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
        with _open_mrc(paths.iloc[0], header_only=True) as m:
            vs = float(m.voxel_size.x)
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
