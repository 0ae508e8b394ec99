"""The one stage timer: seconds per named stage, added to a caller's dict.

Used by the engines' ``timer=`` options (``align_images``, ``align_volumes``,
``LandscapePlan.best_rotations``) and by the commands' phase profile
(:mod:`radsvd._profile`).  Laps (:meth:`StageTimer.lap`) time consecutive stages;
:meth:`StageTimer.stage` times one block.  Without a dict every call is a no-op.
"""

from __future__ import annotations

import contextlib
import time


class StageTimer:
    """Adds seconds to ``seconds[stage]`` (nothing when ``seconds`` is None).

    ``start``: the :func:`time.perf_counter` value the first lap counts from (default now).
    """

    def __init__(self, seconds: dict | None, start: float | None = None):
        self.seconds = seconds
        self.t = time.perf_counter() if start is None else start

    def restart(self) -> None:
        """Start the next lap now (the time since the previous lap is not recorded)."""
        self.t = time.perf_counter()

    def lap(self, stage: str) -> None:
        """Add the seconds since the previous lap (or restart) to ``stage``."""
        t = time.perf_counter()
        self.add(stage, t - self.t)
        self.t = t

    def add(self, stage: str, seconds: float) -> None:
        if self.seconds is not None:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    @contextlib.contextmanager
    def stage(self, name: str):
        """``with timer.stage(name): ...`` adds the block's seconds to ``name``."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t0)

    def merge(self, other: StageTimer) -> None:
        """Add every stage of ``other`` (e.g. one task's) to this timer, in key order."""
        for stage, seconds in (other.seconds or {}).items():
            self.add(stage, seconds)
