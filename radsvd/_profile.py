"""Where a ``radsvd`` command's time goes, for ``radsvd bench --e2e``.

With ``RADSVD_PROFILE=FILE`` in the environment, the commands call :func:`mark` at the end of
each phase (reading, transform, precomputation, alignment, writing): the time since the
previous mark is added to that phase.  The first mark, ``startup``, measures from the
process launch (``RADSVD_PROFILE_T0``, seconds since the epoch, set by the caller; else the
import of this module) to the end of the command's own imports.  At exit the phases go to
FILE as JSON ``{"phases": {name: seconds}, "counters": {...}}``.  Without the variable every
call is a no-op.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import time

_PATH = os.environ.get("RADSVD_PROFILE") or None
_phases: dict[str, float] = {}
_counters: dict[str, float] = {}
_last = float(os.environ.get("RADSVD_PROFILE_T0") or time.time())
_lock = threading.Lock()


def enabled() -> bool:
    return _PATH is not None


def mark(phase: str) -> None:
    """Add the time since the previous mark to ``phase``."""
    global _last
    if _PATH is None:
        return
    now = time.time()
    _phases[phase] = _phases.get(phase, 0.0) + (now - _last)
    _last = now


def add(counter: str, value: float) -> None:
    """Add ``value`` to a counter (e.g. thread-seconds spent in streamed transforms)."""
    if _PATH is not None:
        with _lock:
            _counters[counter] = _counters.get(counter, 0.0) + float(value)


def _write() -> None:
    with open(_PATH, "w") as f:
        json.dump({"phases": _phases, "counters": _counters}, f)


if _PATH is not None:
    atexit.register(_write)
