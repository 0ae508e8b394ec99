"""HTTP transport of the fetcher: deadlines, retries, Range requests, private partial files.

- Deadlines: every read waits at most ``Limits.read_timeout`` seconds for data; a whole file
  (all its attempts) gets ``Limits.deadline`` seconds, enforced by a watchdog that shuts the
  connection, so a server that trickles or stalls anywhere (headers included) cannot hang us.
- Retries: connection failures and transient answers (HTTP 408, 429, 5xx) are retried on
  every request, with back-off, up to ``Limits.retries`` times within the deadline.
- Redirects: followed only to http(s) URLs.
- Partial files: ``.<name>.<random>.partial`` beside the destination, created with O_EXCL
  and opened with O_NOFOLLOW, held under an exclusive lock while in use; an abandoned one
  (its lock free) is resumed by the next run with an HTTP Range request.
Only the standard library is used.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import http.client
import math
import os
import socket
import stat
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from radsvd._validate import InputError

try:
    import fcntl
except ImportError:  # not POSIX: partial files are still private by name, only unlocked
    fcntl = None

USER_AGENT = "radsvd-fetch/0.1 (cryo-EM alignment benchmarks)"
CHUNK = 1 << 20
PART_SUFFIX = ".partial"


class FetchError(RuntimeError):
    """A download failed or did not match what was expected; the message says what to do."""


class NotFoundError(FetchError):
    """The server has no file at this address (HTTP 404/410)."""


class DeadlineError(FetchError):
    """A download did not finish within its deadline."""


class ChecksumError(FetchError):
    """A complete download whose sha256 differs from the expected one."""

    def __init__(self, message, expected: str, actual: str):
        super().__init__(message)
        self.expected, self.actual = expected, actual


class _Transient(ConnectionError):
    """A failure worth retrying (connection lost, timeout, HTTP 408/429/5xx)."""


@dataclass(frozen=True)
class Limits:
    """How long and how often to try: per-read timeout and total deadline per file (s)."""

    read_timeout: float = 30.0
    deadline: float = 3600.0
    retries: int = 3

    def __post_init__(self):
        for name in ("read_timeout", "deadline"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                    or v <= 0:
                raise InputError(f"fetch: {name} must be a positive number of seconds, got {v!r}")
        r = self.retries
        if isinstance(r, bool) or not isinstance(r, int) or r < 0:
            raise InputError(f"fetch: retries must be an integer >= 0, got {r!r}")


def check_url(url, what: str = "URL") -> str:
    """``url`` if it is an absolute http(s) URL with a host, else InputError."""
    parts = urllib.parse.urlsplit(str(url))
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise InputError(f"{what} {url!r} is not an http(s) URL (expected e.g. "
                         "https://ftp.ebi.ac.uk)")
    return str(url)


# ---------------------------------------------------------------------------------------------
# the clock: total deadline of one file, enforced on the sockets it opened


class _Clock:
    """Deadline of one file over all its attempts; shuts its connections when it passes."""

    def __init__(self, url: str, limits: Limits):
        self.url, self.limits = url, limits
        self.end = time.monotonic() + limits.deadline
        self._socks, self._fired, self._lock = [], False, threading.Lock()
        self._timer = threading.Timer(limits.deadline, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._timer.cancel()

    def remaining(self) -> float:
        return self.end - time.monotonic()

    def expired(self) -> bool:
        return self._fired or self.remaining() <= 0

    def error(self, got: str = "") -> DeadlineError:
        lim = self.limits
        return DeadlineError(
            f"{self.url}: not complete within the total deadline of {lim.deadline:g} s "
            f"(per-read timeout {lim.read_timeout:g} s){got}; the server is too slow or "
            "stalled: run again later (a partial download is resumed) or raise --deadline")

    def check(self) -> None:
        if self.expired():
            raise self.error()

    def socket_timeout(self) -> float:
        self.check()
        return max(0.01, min(self.limits.read_timeout, self.remaining()))

    def watch(self, sock) -> None:
        with self._lock:
            if self._fired:
                _shut(sock)
            else:
                self._socks.append(sock)

    def _fire(self) -> None:
        with self._lock:
            self._fired = True
            for s in self._socks:
                _shut(s)


def _shut(sock) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


# ---------------------------------------------------------------------------------------------
# requests


class _Redirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urllib.parse.urlsplit(newurl).scheme.lower() not in ("http", "https"):
            raise FetchError(f"{req.full_url}: the server redirects to {newurl!r}; only "
                             "http(s) redirects are followed")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _opener(url: str, clock: _Clock):
    class Conn(http.client.HTTPConnection):
        def connect(self):
            super().connect()
            clock.watch(self.sock)

    class SConn(http.client.HTTPSConnection):
        def connect(self):
            super().connect()
            clock.watch(self.sock)

    class Plain(urllib.request.HTTPHandler):
        def http_open(self, req):
            return self.do_open(Conn, req)

    class Secure(urllib.request.HTTPSHandler):
        def https_open(self, req):
            return self.do_open(SConn, req, context=self._context)

    handlers = [Plain(), Secure(), _Redirects()]
    host = urllib.parse.urlsplit(url).hostname or ""
    if host in ("127.0.0.1", "localhost", "::1"):
        handlers.append(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener(*handlers)


def _open(url: str, clock: _Clock, start: int = 0, end: int | None = None):
    """The response to a GET of ``url`` (bytes [start, end) if given); errors mapped to
    NotFoundError / FetchError (final), _Transient (retry) or DeadlineError."""
    headers = {"User-Agent": USER_AGENT}
    if start or end is not None:
        headers["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
    req = urllib.request.Request(url, headers=headers)
    try:
        return _opener(url, clock).open(req, timeout=clock.socket_timeout())
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416:
            raise
        if exc.code >= 500 or exc.code in (408, 429):
            raise _Transient(f"HTTP {exc.code} {exc.reason} for {url}") from None
        if 300 <= exc.code < 400:
            raise FetchError(f"{url}: the server's redirects lead nowhere usable (HTTP "
                             f"{exc.code}: a redirect loop, too many redirects or a "
                             "non-http(s) target)") from None
        hint = {404: "the file is not at this address (moved or renamed?): check the entry "
                     "page and the manifest URL",
                410: "the file was removed from this address",
                403: "access denied by the server"}.get(exc.code, "the server refused")
        cls = NotFoundError if exc.code in (404, 410) else FetchError
        raise cls(f"HTTP {exc.code} {exc.reason} for {url}: {hint}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        if clock.expired():
            raise clock.error() from None
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, (TimeoutError, socket.timeout)):
            raise _Transient(f"{url}: no answer within the read timeout of "
                             f"{clock.limits.read_timeout:g} s") from None
        raise _Transient(f"cannot reach {url}: {reason}") from None
    except ValueError as exc:  # urllib: malformed URL
        raise FetchError(f"{url}: {exc}") from None


def _read_into(resp, out, want: int | None, clock: _Clock, url: str, got: int) -> int:
    """Copy at most ``want`` bytes (all if None) of ``resp`` to ``out``; returns bytes copied.

    One socket read at a time (``read1``): what arrived is written at once, so a run killed
    mid-transfer leaves it in the partial file for the next run to resume."""
    n = 0
    read = getattr(resp, "read1", resp.read)
    try:
        while want is None or n < want:
            block = read(CHUNK if want is None else min(CHUNK, want - n))
            if not block:
                break
            out(block)
            n += len(block)
    except (http.client.HTTPException, OSError) as exc:
        if clock.expired():
            raise clock.error(f" ({got + n} bytes received)") from None
        what = (f"no data for {clock.limits.read_timeout:g} s (read timeout)"
                if isinstance(exc, (TimeoutError, socket.timeout)) else type(exc).__name__)
        raise _Transient(f"{url}: transfer interrupted after {got + n} bytes: {what}") from None
    if clock.expired():
        raise clock.error(f" ({got + n} bytes received)")
    return n


def _content_range(resp) -> tuple[int | None, int | None]:
    """(first byte, total size) of a 206 answer's Content-Range (None where absent)."""
    cr = resp.headers.get("Content-Range") or ""
    if not cr.startswith("bytes "):
        return None, None
    span, _, total = cr[6:].partition("/")
    first = span.split("-")[0]
    return (int(first) if first.isdigit() else None, int(total) if total.isdigit() else None)


def remote_size(resp) -> int | None:
    """Size of the whole remote file from a 206 (Content-Range) or 200 (Content-Length)."""
    if getattr(resp, "status", 200) == 206:
        return _content_range(resp)[1]
    length = resp.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


def _retrying(clock: _Clock, fn):
    """``fn()`` retried on _Transient within the retry budget and the deadline."""
    retries = clock.limits.retries
    for attempt in range(retries + 1):
        clock.check()
        try:
            return fn()
        except _Transient as exc:
            if clock.expired():
                raise clock.error() from None
            if attempt == retries:
                raise
            del exc
            time.sleep(max(0.0, min(0.2 * 2 ** attempt, 5.0, clock.remaining())))
    raise AssertionError("unreachable")


def fetch_bytes(url: str, start: int, stop: int, limits: Limits | None = None,
                with_size: bool = False):
    """Bytes [start, stop) of ``url`` by an HTTP Range request, retried on transient errors.

    A server that ignores Range is read only up to ``stop``.  ``with_size``: also return the
    remote file's total size (None if the server does not say).
    """
    limits = limits or Limits()
    with _Clock(url, limits) as clock:
        def attempt():
            with _open(url, clock, start=start, end=stop) as resp:
                first = _content_range(resp)[0] if getattr(resp, "status", 200) == 206 else 0
                first = start if first is None else first
                if first > start:
                    raise FetchError(f"{url}: asked for bytes from {start}, the server "
                                     f"answered from {first}")
                buf = bytearray()
                _read_into(resp, buf.extend, stop - first, clock, url, 0)
                return bytes(buf[start - first:]), remote_size(resp)

        try:
            data, total = _retrying(clock, attempt)
        except _Transient as exc:
            raise FetchError(f"{exc} (after {limits.retries + 1} attempts)") from None
    if len(data) < stop - start:
        raise FetchError(f"{url}: wanted bytes {start}–{stop}, the file ended after "
                         f"{start + len(data)}")
    return (data, total) if with_size else data


# ---------------------------------------------------------------------------------------------
# partial files


class _Part:
    """A private, locked partial file for ``dest`` (module doc)."""

    def __init__(self, dest: Path):
        self.dest = dest
        self.path, self.fd = self._claim() or self._create()

    def _lock(self, fd) -> bool:
        if fcntl is None:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            return False

    def _claim(self):
        """An abandoned partial file of an earlier run (regular file, lock free)."""
        prefix = f".{self.dest.name}."
        pattern = glob.escape(str(self.dest.parent / prefix)) + "*" + PART_SUFFIX
        for cand in sorted(glob.glob(pattern)):
            if "." in Path(cand).name[len(prefix):-len(PART_SUFFIX)]:
                continue  # another file's (".a.map.gz.X.partial" is not a part of "a.map")
            try:
                fd = os.open(cand, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0))
            except OSError:  # gone, a symlink (ELOOP) or unreadable: not ours
                continue
            if stat.S_ISREG(os.fstat(fd).st_mode) and self._lock(fd):
                return Path(cand), fd
            os.close(fd)
        return None

    def _create(self):
        while True:
            fd, name = tempfile.mkstemp(prefix=f".{self.dest.name}.", suffix=PART_SUFFIX,
                                        dir=self.dest.parent)  # O_EXCL, no link followed
            if self._lock(fd):
                return Path(name), fd
            os.close(fd)  # another run claimed it in between: leave it to that run

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def truncate(self, n: int) -> None:
        os.ftruncate(self.fd, n)

    def write(self, data) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]

    def seek_end(self) -> None:
        os.lseek(self.fd, 0, os.SEEK_END)

    def sha256(self) -> str:
        os.lseek(self.fd, 0, os.SEEK_SET)
        digest = _sha256_of(lambda n: os.read(self.fd, n))
        self.seek_end()
        return digest

    def commit(self, dest: Path) -> None:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(self.fd, 0o666 & ~umask)
        os.replace(self.path, dest)  # a link planted at dest is replaced, never followed
        self.close()

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self.close()

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def sha256_file(path) -> str:
    with open(path, "rb") as f:
        return _sha256_of(f.read)


def _sha256_of(read) -> str:
    """Hex SHA-256 of what ``read(n)`` returns, CHUNK bytes at a time, until it returns b""."""
    h = hashlib.sha256()
    for block in iter(lambda: read(CHUNK), b""):
        h.update(block)
    return h.hexdigest()


def _download_to(url: str, part: _Part, stop_at: int | None, clock: _Clock, progress) -> None:
    """Append to ``part`` from its current size (Range) until EOF or ``stop_at`` bytes."""
    have = part.size()
    if stop_at is not None and have >= stop_at:
        part.truncate(stop_at)  # a longer prefix of the same file: keep what is needed
        return
    try:
        resp = _open(url, clock, start=have, end=stop_at)
    except urllib.error.HTTPError as exc:  # 416: nothing left past ``have``
        total = (exc.headers.get("Content-Range") or "").rpartition("/")[2]
        if total.isdigit() and have == int(total):
            return  # the partial file was already complete: verified by the caller
        part.truncate(0)  # otherwise start over
        raise _Transient(f"{url}: the server refused the resumed range ({have} bytes kept "
                         "were discarded)") from None
    with resp:
        if getattr(resp, "status", 200) == 206:
            offset = _content_range(resp)[0]
            if offset != have:
                raise FetchError(f"{url}: server answered a range from byte {offset}, "
                                 f"asked for {have}")
            got = have
        else:  # 200: the whole file from its start, whatever was asked
            part.truncate(0)
            got = 0
        part.seek_end()
        length = resp.headers.get("Content-Length")
        expected_end = got + int(length) if length and length.isdigit() else None
        want = None if stop_at is None else stop_at - got
        if stop_at is not None and expected_end is not None:
            expected_end = min(expected_end, stop_at)

        def sink(block):
            part.write(block)
            if progress:
                progress(len(block))

        got += _read_into(resp, sink, want, clock, url, got)
    if expected_end is not None and got < expected_end:
        raise _Transient(f"{url}: connection closed after {got} of {expected_end} bytes")


def fetch_file(url: str, dest, sha256: str | None = None, size: int | None = None,
               limits: Limits | None = None, progress=None, first_bytes: int | None = None,
               validate=None, reuse: bool = True) -> Path:
    """Download ``url`` to ``dest``: verified, atomic, resumable, within ``limits``.

    ``sha256``/``size``: expected values (of the first ``first_bytes`` bytes when that is
    given: only those are fetched, by HTTP Range).  ``validate(path)``: raises InputError
    or FetchError if the content is not what was asked for (an error page, say); nothing
    that fails it is kept.  An existing ``dest`` that passes the checks is kept (``reuse``).
    A mismatching sha256 raises :class:`ChecksumError`.
    """
    check_url(url)
    limits = limits or Limits()
    dest = Path(dest)
    if dest.is_dir():
        raise FetchError(f"{dest}: is a directory, cannot download {url} to it")
    if reuse and dest.is_file() and not dest.is_symlink() and _good(dest, sha256, size, validate):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = _Part(dest)
    try:
        with _Clock(url, limits) as clock:
            try:
                _retrying(clock, lambda: _download_to(url, part, first_bytes, clock, progress))
            except _Transient as exc:
                kept = part.size()
                where = (f"{kept} bytes kept in {part.path} for the next run to resume"
                         if kept else "nothing was kept")
                raise FetchError(f"{url}: download incomplete after {limits.retries + 1} "
                                 f"attempts ({where}): {exc}") from None
        got = part.size()
        if first_bytes is not None and got < first_bytes:
            part.discard()
            raise FetchError(f"{url}: the file has only {got} bytes, {first_bytes} were needed "
                             "(is it the stack the STAR file refers to?)")
        actual = part.sha256()
        if size is not None and got != int(size):
            part.discard()
            raise FetchError(f"{url}: downloaded {got} bytes, expected {int(size)}; nothing "
                             f"was written to {dest}")
        if sha256 and actual != str(sha256).lower():
            part.discard()
            raise ChecksumError(f"{url}: downloaded file has sha256 {actual}, expected "
                                f"{sha256} ({got} bytes): the file may have been re-issued "
                                "on the server, or the download corrupted; nothing was "
                                f"written to {dest}",
                                str(sha256).lower(), actual)
        if validate is not None:
            try:
                validate(part.path)
            except (InputError, FetchError) as exc:
                part.discard()
                raise FetchError(f"{url}: the download is not what was expected, so it was "
                                 f"not kept: {exc}") from None
        part.commit(dest)
    finally:
        if part.fd is not None and part.size() == 0:
            part.discard()  # nothing worth resuming
        part.close()
    return dest


def _good(path: Path, sha256, size, validate) -> bool:
    if size is not None and path.stat().st_size != int(size):
        return False
    if sha256:
        return sha256_file(path) == str(sha256).lower()
    if validate is not None:
        try:
            validate(path)
        except (InputError, FetchError):
            return False
    return True
