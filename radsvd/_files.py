"""Atomic file output: nothing half-written is ever left at a destination path.

A file is written under a temporary name in its destination folder, then renamed onto its
name (``os.replace``).  Temporary names are ``.NAME.radsvd-tmp-PID-HOST-XXXXXXXX.SUFFIX``:

- an error removes the temporary file (any exception, KeyboardInterrupt included);
- SIGTERM and SIGHUP remove every live temporary file of the process, then end it as the
  signal would have (handlers are installed only where the signal's action is the default);
- a process killed outright (``kill -9``, power loss) leaves its file behind; the next write
  into the same folder recognises it by its name (process PID on this host no longer alive)
  and removes it.

Output policy of the commands (:func:`output_policy`, entered by ``radsvd.cli.main``): an
existing output file is refused unless ``--force``, and a missing parent folder is an error
except for folders an option documents that it creates (:func:`check_output_folder`).  Library
calls outside that context keep the library's behaviour: overwrite, create parent folders.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from radsvd._validate import InputError

TMP_TAG = ".radsvd-tmp-"
_HOST = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname().split(".")[0])[:16] or "host"
_TMP_RE = re.compile(r"^\..+\.radsvd-tmp-(\d+)-([A-Za-z0-9]*)-[a-z0-9_]{8}(\..*)?$")
STALE_AFTER = 60.0   # seconds without a write before a dead process's temporary file is removed
_LIVE: set = set()
_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
_PREVIOUS: dict = {}


class _Policy:
    """The command line's output rules, while :func:`output_policy` is active."""

    def __init__(self, force: bool):
        self.force = bool(force)
        self.creatable: set = set()   # folders an option documents that it creates


_POLICY: _Policy | None = None


@contextlib.contextmanager
def output_policy(force: bool = False):
    """Within the block, :func:`check_output_file` (called by every atomic write) refuses an
    existing file unless ``force``, and a missing parent folder unless
    :func:`check_output_folder` declared it.  A module-level state, not a context variable,
    so that worker threads follow it too; ``radsvd.cli.main`` enters it once per command."""
    global _POLICY
    previous, _POLICY = _POLICY, _Policy(force)
    try:
        yield _POLICY
    finally:
        _POLICY = previous


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # alive, another user's
        return True
    return True


def remove_stale_temporaries(folder) -> list:
    """Remove temporary files in ``folder`` left by dead radsvd processes of this host.

    A file qualifies if its name has the radsvd temporary form, its PID is this host's and no
    longer alive, and it has not been written for :data:`STALE_AFTER` seconds.  Returns the
    removed paths."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        m = _TMP_RE.match(entry.name)
        if not m or m.group(2) != _HOST or int(m.group(1)) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if (entry.is_file(follow_symlinks=False)
                    and now - entry.stat(follow_symlinks=False).st_mtime > STALE_AFTER
                    and not _pid_alive(int(m.group(1)))):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def _on_signal(signum, frame):
    """Remove this process's temporary files, then let the signal do what it did before."""
    for tmp in list(_LIVE):
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    _LIVE.clear()
    signal.signal(signum, _PREVIOUS.pop(signum, signal.SIG_DFL))
    os.kill(os.getpid(), signum)


def _install_signal_cleanup() -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in _SIGNALS:
        if sig not in _PREVIOUS and signal.getsignal(sig) == signal.SIG_DFL:
            _PREVIOUS[sig] = signal.signal(sig, _on_signal)


@contextlib.contextmanager
def atomic_path(path, suffix: str | None = None):
    """Yield a temporary path next to ``path``; rename it onto ``path`` if the block succeeds.

    On any exception the temporary file is removed and ``path`` is left untouched.  The file
    gets the usual permissions (0666 less the umask), not mkstemp's private 0600.
    """
    path = Path(path)
    check_output_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)   # under the CLI policy: a declared folder
    remove_stale_temporaries(path.parent)
    _install_signal_cleanup()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{TMP_TAG}{os.getpid()}-{_HOST}-",
                               suffix=suffix or ".part", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    _LIVE.add(str(tmp))
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    finally:
        _LIVE.discard(str(tmp))


def save_npz(path, **arrays) -> None:
    """``np.savez`` to exactly ``path``, atomically."""
    with atomic_path(path, ".npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def _writable_folder(folder: Path, what: str) -> None:
    """Raise InputError unless files can be created in ``folder`` (or, if it does not exist
    yet, in its nearest existing ancestor, where it would be created)."""
    probe = folder
    try:
        while not probe.exists():
            if probe.is_symlink():
                raise InputError(f"{what}: {probe} is a broken symbolic link")
            probe = probe.parent
        if not probe.is_dir():
            raise InputError(f"{what}: {probe} is a file, not a folder")
        tempfile.TemporaryFile(dir=probe).close()
    except OSError as exc:
        raise InputError(f"{what}: cannot write in {probe} ({exc.strerror or exc})") from None


def _declared(folder: Path) -> bool:
    """Whether the active policy lets ``folder`` be created (it or an ancestor declared)."""
    folder = folder.absolute()
    return any(folder == d or d in folder.parents for d in _POLICY.creatable)


def check_output_file(path, option: str = "output") -> Path:
    """Check, before any work, that ``path`` can be written as a file; returns it as a Path.

    Refuses a folder, a path under a file, and folders that cannot be written (read-only,
    not permitted); a missing folder is fine if it can be created.  Under the command line's
    :func:`output_policy` it also refuses an existing file (unless ``--force``) and a missing
    folder (unless declared by :func:`check_output_folder`)."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    try:
        if path.is_dir():
            raise InputError(f"{option}: {path} is a folder; name a file")
        if _POLICY is not None:
            if (not _POLICY.force and (path.exists() or path.is_symlink())
                    and not _TMP_RE.match(path.name)):   # a nested write into a temporary
                raise InputError(f"{option}: {path} exists; pass --force to overwrite it")
            if not parent.exists() and not _declared(parent):
                raise InputError(f"{option}: folder {parent} does not exist; create it first")
    except OSError as exc:
        raise InputError(f"{option}: cannot reach {path} ({exc.strerror or exc})") from None
    _writable_folder(parent, option)
    return path


def check_output_folder(path, option: str = "output folder", files=()) -> Path:
    """Check, before any work, that ``path`` is (or can be created as) a writable folder.

    Under the command line's :func:`output_policy` the folder may be created (the option
    documents it) but its parent must exist, and the ``files`` to be written in it must not
    exist unless ``--force``."""
    path = Path(path)
    try:
        if path.exists() and not path.is_dir():
            raise InputError(f"{option}: {path} is an existing file, not a folder")
        if _POLICY is not None:
            parent = path.absolute().parent
            if not path.is_dir() and not parent.is_dir() and not _declared(parent):
                raise InputError(f"{option}: folder {parent} does not exist; create it first "
                                 f"({option} creates only its last folder)")
            _POLICY.creatable.add(path.absolute())
            for name in files:
                check_output_file(path / name, option)
    except OSError as exc:
        raise InputError(f"{option}: cannot reach {path} ({exc.strerror or exc})") from None
    _writable_folder(path, option)
    return path


def _same_file(a: Path, b: Path) -> bool:
    """True if two paths name one file: equal once resolved, or one inode (hard links)."""
    try:
        if a.resolve() == b.resolve():
            return True
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def refuse_input_as_output(outputs, inputs) -> None:
    """Raise InputError, before any work, if an output path names one of the input files
    however it is spelled (``./a/../a/x.star``, a symbolic or a hard link): writing it would
    replace the input.  ``outputs``, ``inputs``: iterables of paths or ``(what, path)`` pairs,
    ``what`` naming the option or role in the message."""
    def named(items):
        return [(x[0], Path(x[1])) if isinstance(x, tuple) else (None, Path(x)) for x in items]

    for out_name, out in named(outputs):
        for in_name, inp in named(inputs):
            if _same_file(out, inp):
                raise InputError(f"{out_name + ' ' if out_name else ''}{out} is the input "
                                 f"{in_name or 'file'} {inp}: writing it would replace the "
                                 "input; choose another output name")
