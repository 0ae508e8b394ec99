"""Reading and writing cryo-EM data: MRC maps and stacks, STAR files (starfile).

Every writer is atomic: it writes a temporary file in the destination directory and renames
it over the target (``os.replace``), so a failure never leaves a half-written file.  MRC files
are read by this module's own header parser (one policy, see :func:`parse_mrc_header`) and
written with mrcfile.

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

import dataclasses
import gzip
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from radsvd._files import atomic_path
from radsvd._lazy import LazyModule
from radsvd._validate import InputError, InputWarning

pd = LazyModule("pandas")     # STAR tables only: reading maps and stacks does not load it

# ---------------------------------------------------------------------------------------------
# MRC: one header parser and one reading policy for every reader (docs/robustness.md)
#
# Files are read as RELION reads them: a missing ``MAP `` id or a blank machine stamp is a
# warning (little-endian assumed), a header that contradicts the file (sizes, mode, dimensions)
# is an InputError raised before anything is allocated.  Plain files are memory-mapped; gzip
# files are streamed, never decompressed beyond what the header describes.

MRC_HEADER_BYTES = 1024
_MODES = {0: "i1", 1: "i2", 2: "f4", 6: "u2", 12: "f2"}   # supported (real) modes → dtype
_MODE_NAMES = {0: "int8", 1: "int16", 2: "float32", 3: "complex int16", 4: "complex64",
               6: "uint16", 12: "float16", 101: "4-bit packed"}
SUPPORTED_MODES = ", ".join(f"{m} ({_MODE_NAMES[m]})" for m in _MODES)
_GZIP_MAX_RATIO = 1032      # deflate cannot expand a stream by more than 1032:1
_GZIP_TAIL_SLACK = 1 << 16  # bytes read past the described data to notice a longer stream
_CHUNK_BYTES = 1 << 24      # sections are streamed or summarised in blocks of about this size


@dataclass(frozen=True)
class MRCHeader:
    """What a reader needs from an MRC header, checked against the file.

    ``shape`` is the (nz, ny, nx) array the readers return (for maps after applying a
    non-standard axis order); ``data_offset`` = 1024 + ``nsymbt`` (the extended header);
    ``data_bytes`` = nx·ny·nz·itemsize; ``warnings`` are the tolerated oddities, emitted once
    by the readers as :class:`~radsvd._validate.InputWarning`.
    """

    nx: int
    ny: int
    nz: int
    mode: int
    dtype: np.dtype
    voxel_size: float          # Å along x; 0 if the header has none
    nsymbt: int                # extended header bytes
    data_offset: int
    data_bytes: int
    is_stack: bool
    ispg: int
    axis_order: tuple          # (mapc, mapr, maps) as applied: (1, 2, 3) is standard
    byte_order: str            # "<" or ">"
    compressed: bool = False
    source: str = ""
    warnings: tuple = ()
    labels: tuple = ()         # the header's text labels (up to 10 of 80 characters)

    @property
    def shape(self) -> tuple:
        stored = (self.nz, self.ny, self.nx)
        return tuple(stored[a] for a in self._permutation()) if not self.is_stack else stored

    @property
    def extended_header_bytes(self) -> int:
        return self.nsymbt

    @property
    def section_bytes(self) -> int:
        return self.nx * self.ny * self.dtype.itemsize

    def _permutation(self) -> tuple:
        """Stored axes (sections, rows, columns) → (z, y, x)."""
        labels = (self.axis_order[2], self.axis_order[1], self.axis_order[0])
        return tuple(labels.index(axis) for axis in (3, 2, 1))


def _stack_or_map(nx, ny, nz, ispg, name, notes) -> bool:
    """True if the file holds 2D images: the name, then the space group, then the shape.

    ``.mrcs`` is a stack and ``.map`` a map whatever the header says; otherwise nz = 1 is one
    image, space group 0 an image stack (MRC2014), 1–230 a volume unless the header describes
    nz square images of a different size (then a stack, with a note), 401–630 (stacks of
    volumes) is refused.
    """
    name = name.lower().removesuffix(".gz")
    if name.endswith(".mrcs"):
        return True
    if name.endswith(".map"):
        return False
    if nz == 1:
        return True
    if ispg == 0:
        return True
    if 401 <= ispg <= 630:
        raise InputError(f"space group {ispg} marks a stack of volumes, which radsvd does not "
                         "read: split it into single maps")
    if not 1 <= ispg <= 230:
        notes.append(f"unknown space group {ispg}; the shape decides stack or map")
    if nx == ny != nz:
        if 1 <= ispg <= 230:
            notes.append(f"the header marks a volume (space group {ispg}) but it holds {nz} "
                         f"square {nx}×{ny} sections: read as a stack of {nz} images")
        return True
    return False


def parse_mrc_header(raw: bytes, file_size: int | None = None, source: str = "") -> MRCHeader:
    """Parse and check the 1024-byte header of an MRC map or image stack (MRC2014, pre-2014).

    ``file_size``: the file's size in bytes, checked against the sizes the header describes
    (truncated data or an extended header larger than the file is an error, extra bytes at
    the end a warning).  ``source`` names the file in messages and decides stack versus map by
    its extension (``.mrcs``, ``.map``).  Raises InputError for anything that cannot be read:
    a short header, nx/ny/nz < 1, a negative extended header, unsupported (e.g. complex) modes.
    """
    where = f"{source}: " if source else ""
    raw = bytes(raw[:MRC_HEADER_BYTES])
    if len(raw) < MRC_HEADER_BYTES:
        raise InputError(f"{where}{len(raw)} bytes, shorter than the 1024-byte MRC header: "
                         "not an MRC file, or truncated")
    notes = []
    stamp = raw[212:216]
    if stamp[:2] in (b"\x44\x44", b"\x44\x41"):
        order = "<"
    elif stamp[:2] == b"\x11\x11":
        order = ">"
    else:
        order = "<"
        if not _plausible(raw, "<") and _plausible(raw, ">"):
            order = ">"
        notes.append(f"{'blank' if stamp == bytes(4) else 'unknown'} machine stamp "
                     f"{stamp.hex()}: read as {'little' if order == '<' else 'big'}-endian")
    if raw[208:212] != b"MAP ":
        if not _plausible(raw, order):
            nx, ny, nz, mode = struct.unpack_from(order + "4i", raw, 0)
            raise InputError(f"{where}not a readable MRC file: no 'MAP ' id at byte 208 and "
                             f"header values no MRC file has (nx={nx} ny={ny} nz={nz} "
                             f"mode={mode})")
        notes.append("no 'MAP ' id at byte 208 (a pre-2014 or RELION-written header): "
                     "read anyway")
    nx, ny, nz, mode = struct.unpack_from(order + "4i", raw, 0)
    mx = struct.unpack_from(order + "i", raw, 28)[0]
    cell_x = struct.unpack_from(order + "f", raw, 40)[0]
    mapc, mapr, maps = struct.unpack_from(order + "3i", raw, 64)
    ispg, nsymbt = struct.unpack_from(order + "2i", raw, 88)
    bad = [f"{k} = {v}" for k, v in (("nx", nx), ("ny", ny), ("nz", nz)) if v < 1]
    if bad:
        raise InputError(f"{where}corrupt MRC header: {', '.join(bad)} (dimensions must be "
                         ">= 1)")
    if mode not in _MODES:
        kind = _MODE_NAMES.get(mode, "unknown")
        raise InputError(f"{where}MRC mode {mode} ({kind}) is not supported: radsvd reads the "
                         f"real modes {SUPPORTED_MODES}")
    if nsymbt < 0:
        raise InputError(f"{where}corrupt MRC header: negative extended header size "
                         f"nsymbt = {nsymbt}")
    dtype = np.dtype(_MODES[mode]).newbyteorder(order)
    data_offset = MRC_HEADER_BYTES + nsymbt
    data_bytes = nx * ny * nz * dtype.itemsize
    if file_size is not None:
        if data_offset > file_size:
            raise InputError(f"{where}the header claims an extended header of {nsymbt} bytes "
                             f"but the file has only {file_size} bytes: corrupt header")
        if data_offset + data_bytes > file_size:
            raise InputError(
                f"{where}truncated or inconsistent MRC file: the header describes "
                f"{nx}×{ny}×{nz} {_MODE_NAMES[mode]} values ({data_offset + data_bytes} "
                f"bytes with headers) but the file has {file_size} bytes (an interrupted "
                "download? check its size and checksum, or fetch it again)")
        if data_offset + data_bytes < file_size:
            notes.append(f"{file_size - data_offset - data_bytes} bytes after the data the "
                         "header describes: ignored")
    voxel = cell_x / (mx if mx > 0 else nx)
    if not (np.isfinite(voxel) and voxel > 0):
        if cell_x != 0:
            notes.append(f"unusable cell size {cell_x!r} Å: voxel size unknown (0)")
        voxel = 0.0
    axes = (mapc, mapr, maps)
    if sorted(axes) != [1, 2, 3]:
        if axes != (0, 0, 0):
            notes.append(f"invalid axis order (mapc, mapr, maps) = {axes}: standard "
                         "(1, 2, 3) assumed")
        axes = (1, 2, 3)
    is_stack = _stack_or_map(nx, ny, nz, ispg, source, notes)
    if axes != (1, 2, 3):
        if is_stack:
            notes.append(f"axis order (mapc, mapr, maps) = {axes} ignored for an image stack")
            axes = (1, 2, 3)
        else:
            notes.append(f"axis order (mapc, mapr, maps) = {axes}: transposed to (z, y, x)")
    nlabl = min(max(struct.unpack_from(order + "i", raw, 220)[0], 0), 10)
    labels = tuple(raw[224 + 80 * i:304 + 80 * i].split(b"\0", 1)[0].decode("latin-1").rstrip()
                   for i in range(nlabl))
    return MRCHeader(nx, ny, nz, mode, dtype, float(voxel), nsymbt, data_offset, data_bytes,
                     is_stack, ispg, axes, order, source=source,
                     warnings=tuple(f"{where}{n}" for n in notes), labels=labels)


def _plausible(raw: bytes, order: str) -> bool:
    nx, ny, nz, mode = struct.unpack_from(order + "4i", raw, 0)
    return mode in _MODE_NAMES and 0 < nx < 1 << 20 and 0 < ny < 1 << 20 and 0 < nz < 1 << 28


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def _read_header(path) -> MRCHeader:
    """Header of a plain or gzipped MRC file, checked against the file size; no warnings."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such MRC file")
    if not path.is_file():
        raise InputError(f"{path}: {'a folder' if path.is_dir() else 'not a regular file'}, "
                         "not an MRC file")
    size = path.stat().st_size
    if not _is_gzip(path):
        with open(path, "rb") as f:
            return parse_mrc_header(f.read(MRC_HEADER_BYTES), size, str(path))
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read(MRC_HEADER_BYTES)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"{path}: corrupt or truncated gzip file ({exc})") from None
    h = parse_mrc_header(raw, None, str(path))
    limit = _GZIP_MAX_RATIO * size + MRC_HEADER_BYTES
    if h.data_offset + h.data_bytes > limit:
        raise InputError(
            f"{path}: the header describes {h.data_offset + h.data_bytes} bytes but a gzip "
            f"file of {size} bytes expands to at most {limit}: corrupt header or not an MRC "
            "file")
    return dataclasses.replace(h, compressed=True)


def _emit(header: MRCHeader) -> None:
    for note in header.warnings:
        warnings.warn(note, InputWarning, stacklevel=3)


def mrc_header(path) -> MRCHeader:
    """Read and check the header of an MRC map or stack (plain or gzip); warns on oddities."""
    h = _read_header(path)
    _emit(h)
    return h


mrc_info = mrc_header  # the former name


def _sections(path, h: MRCHeader, stop: int):
    """Yield (first, block): sections [0, stop) of a gzipped file in stored dtype, streamed.

    Never decompresses more than the header describes plus a small slack; when the whole data
    block was wanted, a longer stream is a warning (as extra bytes in a plain file are)."""
    per = max(1, _CHUNK_BYTES // h.section_bytes)
    try:
        with gzip.open(path, "rb") as f:
            _read_exactly(f, h.data_offset, path, h)
            for first in range(0, stop, per):
                k = min(per, stop - first)
                buf = _read_exactly(f, k * h.section_bytes, path, h)
                yield first, np.frombuffer(buf, dtype=h.dtype).reshape(k, h.ny, h.nx)
            if stop == h.nz and f.read(_GZIP_TAIL_SLACK):
                warnings.warn(f"{path}: the gzip stream continues after the data the header "
                              "describes: ignored", InputWarning, stacklevel=3)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"{path}: corrupt or truncated gzip file ({exc})") from None


def _read_exactly(f, n: int, path, h: MRCHeader) -> bytearray:
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = f.readinto(view[got:])
        if not k:
            raise InputError(
                f"{path}: truncated MRC file: the gzip stream ends before the "
                f"{h.data_offset + h.data_bytes} bytes its header describes (an interrupted "
                "download? fetch it again)")
        got += k
    return buf


def _memmap(path, h: MRCHeader) -> np.ndarray:
    return np.memmap(path, dtype=h.dtype, mode="r", offset=h.data_offset,
                     shape=(h.nz, h.ny, h.nx))


def mrc_data(path, header: MRCHeader | None = None):
    """The data block (nz, ny, nx) in its stored dtype: a read-only memory map for plain
    files, an array streamed from gzip files.  Axis order as stored."""
    h = _read_header(path) if header is None else header
    if not h.compressed:
        return _memmap(path, h)
    out = np.empty((h.nz, h.ny, h.nx), dtype=h.dtype)
    for first, block in _sections(path, h, h.nz):
        out[first:first + len(block)] = block
    return out


def _finite(data: np.ndarray, path) -> None:
    if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
        bad = int(np.count_nonzero(~np.isfinite(data)))
        raise InputError(f"{path}: data contain {bad} NaN or inf value(s)")


def read_mrc(path, dtype=np.float64, expect: str | None = None) -> tuple[np.ndarray, float]:
    """Read a map (nz, ny, nx) or stack (n, ny, nx) and its voxel size in Å (0 if unset).

    Maps with a non-standard axis order are transposed to (z, y, x).  ``expect="map"``
    refuses files that the policy of :func:`parse_mrc_header` classifies as image stacks.
    """
    h = _read_header(path)
    _emit(h)
    if expect == "map" and h.is_stack:
        named = str(path).lower().removesuffix(".gz").endswith(".mrcs")
        if named or not h.nx == h.ny == h.nz:
            raise InputError(f"{path}: an image stack of {h.nz} {h.nx}×{h.ny} images, not a "
                             f"map (space group {h.ispg}{', .mrcs name' if named else ''}); "
                             "pass a 3D map")
        warnings.warn(f"{path}: the header marks an image stack (space group {h.ispg}) but "
                      "the data are cubic: read as a map", InputWarning, stacklevel=2)
    raw = mrc_data(path, h)
    data = np.array(raw if h.is_stack else raw.transpose(h._permutation()), dtype=dtype)
    del raw
    _finite(data, path)
    return data, h.voxel_size


def read_stack(path, indices=None, dtype=np.float32) -> np.ndarray:
    """Images (n, ny, nx) of an MRC stack, optionally only ``indices`` (0-based).

    Plain files are memory-mapped (only the selected images are read); gzipped files are
    streamed up to the last selected image."""
    h = _read_header(path)
    _emit(h)
    idx = np.arange(h.nz) if indices is None else np.asarray(indices, dtype=np.int64).ravel()
    if idx.size and (idx.min() < 0 or idx.max() >= h.nz):
        raise InputError(f"{path}: image index {int(idx.max()) + 1} (1-based) is out of "
                         f"range: the stack holds {h.nz} images")
    if not h.compressed:
        out = np.array(_memmap(path, h)[idx], dtype=dtype)
    else:
        out = np.empty((idx.size, h.ny, h.nx), dtype=dtype)
        stop = int(idx.max()) + 1 if idx.size else 0
        for first, block in _sections(path, h, stop):
            sel = (idx >= first) & (idx < first + len(block))
            out[sel] = block[idx[sel] - first]
    _finite(out, path)
    return out


def mrc_statistics(path, header: MRCHeader | None = None, sections=None) -> dict:
    """min, max, mean and std (float64) over the given sections (indices; default all), in
    blocks: never holds more than a block in memory.  Plain files read only those sections;
    gzip files are streamed up to the last of them."""
    h = _read_header(path) if header is None else header
    idx = np.arange(h.nz) if sections is None else np.unique(np.asarray(sections, np.int64))
    if idx.size == 0 or idx[0] < 0 or idx[-1] >= h.nz:
        raise InputError(f"{path}: sections to summarise must lie in 0..{h.nz - 1}")
    per = max(1, _CHUNK_BYTES // h.section_bytes)
    if not h.compressed:
        mm = _memmap(path, h)
        blocks = (mm[idx[i:i + per]] for i in range(0, idx.size, per))
    else:
        blocks = (block[idx[(idx >= first) & (idx < first + len(block))] - first]
                  for first, block in _sections(path, h, int(idx[-1]) + 1))
    n, mean, m2, lo, hi = 0, 0.0, 0.0, np.inf, -np.inf
    for block in blocks:
        if not len(block):
            continue
        b = np.asarray(block, dtype=np.float64)
        _finite(b, path)
        k, bm = b.size, float(b.mean())
        bm2 = float(((b - bm) ** 2).sum())
        delta = bm - mean
        m2 += bm2 + delta * delta * n * k / (n + k)   # Chan et al. pairwise update
        mean += delta * k / (n + k)
        n += k
        lo, hi = min(lo, float(b.min())), max(hi, float(b.max()))
    return {"min": lo, "max": hi, "mean": mean, "std": float(np.sqrt(m2 / n))}


def write_mrc(path, data, voxel_size: float = 1.0, stack: bool | None = None,
              label: str | None = None) -> Path:
    """Write a map (3D) or an image stack atomically; ``.gz`` names are gzip-compressed.

    ``stack`` (default: True for 2D input or a ``.mrcs`` name) marks a 3D array as images;
    ``label`` (≤ 80 characters) is stored as the header's first text label.
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
    if a.dtype.kind == "c":
        raise InputError(f"write_mrc: complex data cannot be written (radsvd reads the real "
                         f"modes {SUPPORTED_MODES}); write the real and imaginary parts apart")
    if a.dtype not in (np.float32, np.float16, np.int8, np.int16, np.uint16):
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
            if label is not None:
                m.header.label[0] = label.encode("ascii")[:80]
                m.header.nlabl = 1
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
        found = [lab.split()[1] for lab in _read_header(stack).labels
                 if lab.startswith(WRITE_ID_TAG) and len(lab.split()) == 2]
        if found != [wid]:
            raise InputError(
                f"{table.attrs.get('path', 'STAR file')} and {stack} do not belong together: the "
                f"STAR file expects write id {wid}, the stack carries "
                f"{found[0] if found else 'none'} (an interrupted write, or a stack replaced "
                "since): write them again (e.g. rerun radsvd simulate)")


def write_star(path, table: pd.DataFrame, style: str = "3.1", write_ids: dict | None = None) \
        -> Path:
    """Write a normalised particle table as a RELION STAR file of ``style`` "1", "3.0" or "3.1".

    ``write_ids`` {stack name: id}: heads the file with ``# radsvd-write-id ID STACK`` lines
    (comments to RELION) that :func:`load_particles` checks against the stacks' header labels.

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
    head = "".join(f"# {WRITE_ID_TAG} {wid} {name}\n" for name, wid in (write_ids or {}).items())
    with atomic_path(path, suffix=".star") as tmp:
        starfile.write(blocks, tmp, float_format="%.8g")
        if style == "3.1" or head:
            text = tmp.read_text()
            tmp.write_text(head + ("\n# version 30001\n" if style == "3.1" else "") + text)
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
        vs = _read_header(paths.iloc[0]).voxel_size
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
