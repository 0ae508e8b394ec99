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

from radsvd._timer import StageTimer

_PATH = os.environ.get("RADSVD_PROFILE") or None
_phases: dict[str, float] = {}
_counters: dict[str, float] = {}
_launch = float(os.environ.get("RADSVD_PROFILE_T0") or time.time())
_timer = StageTimer(_phases if _PATH else None,
                    start=time.perf_counter() - (time.time() - _launch))
_counter_timer = StageTimer(_counters if _PATH else None)
_lock = threading.Lock()


def enabled() -> bool:
    return _PATH is not None


def mark(phase: str) -> None:
    """Add the time since the previous mark to ``phase``."""
    _timer.lap(phase)


def add(counter: str, value: float) -> None:
    """Add ``value`` to a counter (e.g. thread-seconds spent in streamed transforms)."""
    with _lock:
        _counter_timer.add(counter, float(value))


def _write() -> None:
    with open(_PATH, "w") as f:
        json.dump({"phases": _phases, "counters": _counters}, f)


if _PATH is not None:
    atexit.register(_write)
