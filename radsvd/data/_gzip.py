"""The data layer's one gzip reader: files are recognised by their magic bytes, never by name.

MRC maps and stacks (:mod:`radsvd.data.mrc`), STAR files (:mod:`radsvd.data.star`) and
downloads (:mod:`radsvd.data.fetch`) all open compressed files here, so a corrupt or truncated
stream is one :class:`~radsvd._validate.InputError` naming the file wherever it is read.
"""

from __future__ import annotations

import gzip
import io
import struct
import zlib
from contextlib import contextmanager
from pathlib import Path

from radsvd._validate import InputError

GZIP_MAGIC = b"\x1f\x8b"
MAX_RATIO = 1032        # deflate cannot expand a stream by more than 1032:1
_ERRORS = (OSError, EOFError, zlib.error)


def is_gzip(path) -> bool:
    """True if the file starts with the gzip signature (whatever its name)."""
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


@contextmanager
def open_binary(path):
    """The file's bytes, decompressed if it is gzip; stream errors become one InputError."""
    path = Path(path)
    if not is_gzip(path):
        with open(path, "rb") as f:
            yield f
        return
    try:
        with gzip.open(path, "rb") as f:
            yield f
    except _ERRORS as exc:
        raise InputError(f"{path}: corrupt or truncated gzip file ({exc})") from None


def read_head(path, n: int) -> bytes:
    """The first ``n`` (decompressed) bytes of a plain or gzip file."""
    with open_binary(path) as f:
        return f.read(n)


@contextmanager
def open_text(path):
    """A text stream (UTF-8, undecodable bytes replaced) of a plain or gzip file."""
    with open_binary(path) as f:
        yield io.TextIOWrapper(f, encoding="utf-8", errors="replace")


def stored_size(path) -> int:
    """The uncompressed size modulo 2**32 that a gzip file's trailer records (ISIZE)."""
    with open(path, "rb") as f:
        f.seek(-4, 2)
        return struct.unpack("<I", f.read(4))[0]
