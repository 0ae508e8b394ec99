"""What a download must look like before it is kept: MRC maps and stacks, STAR files.

Without a known sha256 this is the only check that an archive's answer is the file asked for
(a server may answer 200 with an HTML error page): the MRC or gzip signature, a header whose
fields make sense (dimensions, mode, voxel size) and a file size that the header explains.
"""

from __future__ import annotations

import gzip
import struct
import warnings
from pathlib import Path

from radsvd._validate import InputError

MODE_BYTES = {0: 1, 1: 2, 2: 4, 3: 4, 4: 8, 6: 2, 12: 2}
_GZIP = b"\x1f\x8b"


def parse_mrc_header(header: bytes, source: str = "") -> dict:
    """nx, ny, nz, mode, nsymbt, byte order and voxel size (Å) of a 1024-byte MRC header.

    A missing ``MAP `` id is accepted with a warning (RELION 3.1 stacks lack it), a blank
    machine stamp means little-endian; dimensions or modes that cannot be read raise.
    """
    where = f"{source}: " if source else ""
    hint = " (an HTML page: the server's error page?)" if header.lstrip()[:1] == b"<" else ""
    if len(header) < 1024:
        raise InputError(f"{where}not an MRC file: {len(header)} bytes, an MRC header has "
                         f"1024{hint}")
    order = ">" if header[212:213] == b"\x11" else "<"
    nx, ny, nz, mode = struct.unpack(order + "4i", header[:16])
    mx = struct.unpack(order + "i", header[28:32])[0]
    cella_x = struct.unpack(order + "f", header[40:44])[0]
    nsymbt = struct.unpack(order + "i", header[92:96])[0]
    if mode not in MODE_BYTES or min(nx, ny, nz) < 1 or nsymbt < 0 \
            or max(nx, ny) > 1 << 16 or nz > 1 << 28:
        raise InputError(f"{where}not an MRC file, or a corrupt header{hint}: nx={nx} ny={ny} "
                         f"nz={nz} mode={mode} nsymbt={nsymbt}")
    if header[208:212] != b"MAP ":
        warnings.warn(f"{where}MRC header has no 'MAP ' id (as RELION 3.1 writes stacks); "
                      "read as MRC", stacklevel=2)
    voxel = cella_x / mx if mx > 0 and cella_x > 0 else 0.0
    return dict(nx=nx, ny=ny, nz=nz, mode=mode, nsymbt=nsymbt, order=order,
                bytes_per_voxel=MODE_BYTES[mode], voxel_size=voxel,
                data_offset=1024 + nsymbt, data_bytes=nx * ny * nz * MODE_BYTES[mode])


def expected_size(head: dict) -> int:
    return head["data_offset"] + head["data_bytes"]


def check_mrc_file(path, expect: dict | None = None, source: str = "") -> dict:
    """Raise InputError unless ``path`` is an MRC map (plain or gzip) whose size its header
    explains and whose box / voxel size match ``expect`` ({box, voxel_size}, if given)."""
    path = Path(path)
    src = source or str(path)
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == _GZIP:
        try:
            with gzip.open(path, "rb") as g:
                raw = g.read(1024)
        except (OSError, EOFError) as exc:
            raise InputError(f"{src}: not a readable gzip file ({exc})") from None
        head = parse_mrc_header(raw, src)
        with open(path, "rb") as f:  # gzip trailer: uncompressed size mod 2**32
            f.seek(-4, 2)
            isize = struct.unpack("<I", f.read(4))[0]
        if isize != expected_size(head) % (1 << 32):
            raise InputError(f"{src}: the header promises {expected_size(head)} bytes, the "
                             f"gzip stream holds {isize} (mod 2^32): truncated or not this map")
    else:
        with open(path, "rb") as f:
            raw = f.read(1024)
        head = parse_mrc_header(raw, src)
        size = path.stat().st_size
        if size != expected_size(head):
            raise InputError(f"{src}: {size} bytes, the header promises "
                             f"{expected_size(head)}: truncated or not an MRC file")
    expect = expect or {}
    problems = []
    box = expect.get("box")
    if box is not None and (head["nx"], head["ny"], head["nz"]) != (box,) * 3:
        problems.append(f"shape {(head['nz'], head['ny'], head['nx'])}, expected {(box,) * 3}")
    vs = expect.get("voxel_size")
    if vs is not None and abs(head["voxel_size"] - vs) > 1e-3 * vs:
        problems.append(f"voxel size {head['voxel_size']:.4f} Å, expected {vs}")
    if problems:
        raise InputError(f"{src}: map header differs from the manifest: {'; '.join(problems)}")
    return head


def check_star_file(path, source: str = "") -> None:
    """Raise InputError unless ``path`` is a STAR file with a particle table."""
    from radsvd.data.io import read_star

    path = Path(path)
    src = source or str(path)
    with open(path, "rb") as f:
        start = f.read(4096).lstrip()
    if start[:1] == b"<":
        raise InputError(f"{src}: an HTML/XML page, not a STAR file (the server's error page?)")
    if b"\0" in start:
        raise InputError(f"{src}: binary data, not a STAR file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table = read_star(path, require_ctf=False)
    except (InputError, ValueError, KeyError) as exc:
        raise InputError(f"{src}: not a RELION particle STAR file ({exc})") from None
    if "image_path" not in table.columns or not len(table):
        raise InputError(f"{src}: the STAR file names no particle images (rlnImageName)")
