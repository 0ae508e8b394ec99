"""MRC maps and image stacks: one header parser and one reading policy for every reader.

Every writer is atomic (:func:`radsvd._files.atomic_path`): a failure never leaves a
half-written file.  Files are read by this module's own header parser
(:func:`parse_mrc_header`, docs/robustness.md) and written with mrcfile.  gzip files are
recognised by their signature (:mod:`radsvd.data._gzip`) and streamed, never decompressed
beyond what the header describes.
"""

from __future__ import annotations

import dataclasses
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from radsvd._files import atomic_path
from radsvd._validate import InputError, InputWarning
from radsvd.data import _gzip

__all__ = ["MRCHeader", "SUPPORTED_MODES", "mrc_data", "mrc_header", "mrc_statistics",
           "parse_mrc_header", "read_header", "read_mrc", "read_stack", "write_mrc"]

# Files are read as RELION reads them: a missing ``MAP `` id or a blank machine stamp is a
# warning (little-endian assumed), a header that contradicts the file (sizes, mode, dimensions)
# is an InputError raised before anything is allocated.  Plain files are memory-mapped; gzip
# files are streamed, never decompressed beyond what the header describes.

MRC_HEADER_BYTES = 1024
_MODES = {0: "i1", 1: "i2", 2: "f4", 6: "u2", 12: "f2"}   # supported (real) modes → dtype
_MODE_NAMES = {0: "int8", 1: "int16", 2: "float32", 3: "complex int16", 4: "complex64",
               6: "uint16", 12: "float16", 101: "4-bit packed"}
SUPPORTED_MODES = ", ".join(f"{m} ({_MODE_NAMES[m]})" for m in _MODES)
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


def _stack_or_map(nx, ny, nz, mz, ispg, name, notes) -> bool:
    """True if the file holds 2D images: the name, then the space group, then the shape.

    ``.mrcs`` is a stack and ``.map`` a map whatever the header says; otherwise nz = 1 is one
    image, space group 0 an image stack (MRC2014), 1–230 a volume unless the header describes
    nz square images of a different size (then a stack, with a note), 401–630 (stacks of
    volumes) is refused unless the stack holds exactly one n³ volume (mz = nz = ny = nx), which
    is read as a map, with a note.
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
    if 401 <= ispg <= 630 and nx == ny == nz and mz in (nz, 0):
        notes.append(f"space group {ispg} marks a stack of volumes, but the file holds exactly "
                     f"one {nx}³ volume: read as a map")
        return False
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
    mx, _, mz = struct.unpack_from(order + "3i", raw, 28)
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
    is_stack = _stack_or_map(nx, ny, nz, mz, ispg, source, notes)
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


def read_header(path) -> MRCHeader:
    """Header of a plain or gzipped MRC file, checked against the file size; its notes are in
    ``warnings``, not emitted (:func:`mrc_header` emits them)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such MRC file")
    if not path.is_file():
        raise InputError(f"{path}: {'a folder' if path.is_dir() else 'not a regular file'}, "
                         "not an MRC file")
    size = path.stat().st_size
    if not _gzip.is_gzip(path):
        with open(path, "rb") as f:
            return parse_mrc_header(f.read(MRC_HEADER_BYTES), size, str(path))
    h = parse_mrc_header(_gzip.read_head(path, MRC_HEADER_BYTES), None, str(path))
    limit = _gzip.MAX_RATIO * size + MRC_HEADER_BYTES
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
    h = read_header(path)
    _emit(h)
    return h


def _sections(path, h: MRCHeader, stop: int):
    """Yield (first, block): sections [0, stop) of a gzipped file in stored dtype, streamed.

    Never decompresses more than the header describes plus a small slack; when the whole data
    block was wanted, a longer stream is a warning (as extra bytes in a plain file are)."""
    per = max(1, _CHUNK_BYTES // h.section_bytes)
    with _gzip.open_binary(path) as f:
        _read_exactly(f, h.data_offset, path, h)
        for first in range(0, stop, per):
            k = min(per, stop - first)
            buf = _read_exactly(f, k * h.section_bytes, path, h)
            yield first, np.frombuffer(buf, dtype=h.dtype).reshape(k, h.ny, h.nx)
        if stop == h.nz and f.read(_GZIP_TAIL_SLACK):
            warnings.warn(f"{path}: the gzip stream continues after the data the header "
                          "describes: ignored", InputWarning, stacklevel=3)


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
    h = read_header(path) if header is None else header
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
    refuses files that the policy of :func:`parse_mrc_header` classifies as image stacks, and
    maps whose every value is 0.

    Parameters
    ----------
    path : str or Path
        An MRC file, plain or gzip-compressed (``.gz``).
    dtype : dtype
        Type of the returned array.
    expect : {None, "map"}
        "map": refuse image stacks and all-zero maps.

    Returns
    -------
    data : ndarray, shape (nz, ny, nx) or (n, ny, nx)
    voxel_size : float
        Å per voxel (0 if the header leaves it unset).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = radsvd.write_mrc(Path(tmp.name) / "map.mrc", np.ones((4, 4, 4)), voxel_size=2.5)
    >>> data, voxel = radsvd.read_mrc(path, expect="map")
    >>> data.shape, voxel
    ((4, 4, 4), 2.5)
    >>> tmp.cleanup()
    """
    h = read_header(path)
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
    if expect == "map" and not np.any(data):
        raise InputError(f"{path}: every value of the map is 0: there is nothing to align "
                         "against (a failed reconstruction or export?)")
    return data, h.voxel_size


def read_stack(path, indices=None, dtype=np.float32) -> np.ndarray:
    """Images (n, ny, nx) of an MRC stack, optionally only ``indices`` (0-based).

    Plain files are memory-mapped (only the selected images are read); gzipped files are
    streamed up to the last selected image."""
    h = read_header(path)
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
    h = read_header(path) if header is None else header
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

    Parameters
    ----------
    path : str or Path
        Output file; a ``.gz`` name is gzip-compressed.
    data : array_like, shape (ny, nx), (nz, ny, nx) or (n, ny, nx)
        A map, one image or an image stack (stored as float32).
    voxel_size : float
        Å per voxel.
    stack : bool, optional
        Mark a 3D array as an image stack (default: True for 2D input or a ``.mrcs`` name).
    label : str, optional
        The header's first text label (≤ 80 characters).

    Returns
    -------
    Path
        The written file.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = radsvd.write_mrc(Path(tmp.name) / "images.mrcs", np.zeros((3, 8, 8)))
    >>> path.name, radsvd.read_mrc(path)[0].shape
    ('images.mrcs', (3, 8, 8))
    >>> tmp.cleanup()
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
