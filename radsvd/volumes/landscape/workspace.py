"""Reused work arrays of a plan (saves the page faults of fresh allocations per block)."""

from __future__ import annotations

import numpy as np


class Workspace:
    """Named work arrays, reallocated only when a shape or dtype changes.  One per plan, and
    one plan per thread: the arrays returned are overwritten by the next call that asks for
    the same name."""

    def __init__(self):
        self._arrays: dict[str, np.ndarray] = {}

    def get(self, name: str, shape, dtype) -> np.ndarray:
        buf = self._arrays.get(name)
        if buf is None or buf.shape != tuple(shape) or buf.dtype != np.dtype(dtype):
            buf = np.empty(shape, dtype=dtype)
            self._arrays[name] = buf
        return buf
