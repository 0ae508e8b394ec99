"""What a download must look like before it is kept: MRC maps and stacks, STAR files.

Without a known sha256 this is the only check that an archive's answer is the file asked for
(a server may answer 200 with an HTML error page): the MRC or gzip signature, a header that
the project's one MRC parser (:func:`radsvd.data.mrc.parse_mrc_header`) accepts, exactly the
file size that the header describes, and the manifest's box and voxel size for maps.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from radsvd._validate import InputError
from radsvd.data import _gzip
from radsvd.data.mrc import MRCHeader, parse_mrc_header

__all__ = ["check_mrc_file", "check_star_file", "expected_size", "parse_mrc_header",
           "read_header"]

def read_header(raw: bytes, source: str) -> MRCHeader:
    """:func:`radsvd.data.mrc.parse_mrc_header` of downloaded bytes, its warnings logged as
    Python warnings, an HTML page named as such."""
    try:
        head = parse_mrc_header(raw, source=source)
    except InputError as exc:
        if raw.lstrip()[:1] == b"<":
            raise InputError(f"{exc} (an HTML page: the server's error page?)") from None
        raise
    for note in head.warnings:
        warnings.warn(note, stacklevel=3)
    return head


def expected_size(head: MRCHeader) -> int:
    """Bytes of the whole file the header describes (header, extended header, data)."""
    return head.data_offset + head.data_bytes


def check_mrc_file(path, expect: dict | None = None, source: str = "") -> MRCHeader:
    """Raise InputError unless ``path`` is an MRC map (plain or gzip) whose size its header
    explains and whose box / voxel size match ``expect`` ({box, voxel_size}, if given)."""
    path = Path(path)
    src = source or str(path)
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == _gzip.GZIP_MAGIC:
        head = read_header(_gzip.read_head(path, 1024), src)
        isize = _gzip.stored_size(path)
        if isize != expected_size(head) % (1 << 32):
            raise InputError(f"{src}: the header promises {expected_size(head)} bytes, the "
                             f"gzip stream holds {isize} (mod 2^32): truncated or not this map")
    else:
        with open(path, "rb") as f:
            raw = f.read(1024)
        head = read_header(raw, src)
        size = path.stat().st_size
        if size != expected_size(head):
            raise InputError(f"{src}: {size} bytes, the header promises "
                             f"{expected_size(head)}: truncated or not an MRC file")
    expect = expect or {}
    problems = []
    box = expect.get("box")
    if box is not None and (head.nx, head.ny, head.nz) != (box,) * 3:
        problems.append(f"shape {(head.nz, head.ny, head.nx)}, expected {(box,) * 3}")
    vs = expect.get("voxel_size")
    if vs is not None and abs(head.voxel_size - vs) > 1e-3 * vs:
        problems.append(f"voxel size {head.voxel_size:.4f} Å, expected {vs}")
    if problems:
        raise InputError(f"{src}: map header differs from the manifest: {'; '.join(problems)}")
    return head


def check_star_file(path, source: str = "") -> None:
    """Raise InputError unless ``path`` is a STAR file with a particle table."""
    from radsvd.data.star import read_star

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
