"""Input validation shared by the public wrappers: clear errors that name the problem."""

from __future__ import annotations

import numpy as np


class InputError(ValueError):
    """Bad input to a public radsvd function; the message says what is wrong and where."""


def real_stack(x, name: str, ndim: int, dtype=np.float64) -> np.ndarray:
    """Return ``x`` as a C-contiguous stack of square (ndim=2) or cubic (ndim=3) real arrays.

    A single image/volume is promoted to a stack of one.  Rejects empty stacks, non-square
    or non-cubic shapes, complex input and NaN/inf values.
    """
    a = np.asarray(x)
    if a.dtype.kind not in "fiub":
        raise InputError(f"{name}: expected real numbers, got dtype {a.dtype}")
    if a.ndim == ndim:
        a = a[None]
    if a.ndim != ndim + 1:
        kind = "images (n, N, N)" if ndim == 2 else "volumes (n, N, N, N)"
        raise InputError(f"{name}: expected a stack of {kind}, got shape {a.shape}")
    if a.shape[0] == 0:
        raise InputError(f"{name}: the stack is empty")
    if len(set(a.shape[1:])) != 1:
        kind = "square" if ndim == 2 else "cubic"
        raise InputError(f"{name}: must be {kind}, got shape {a.shape[1:]}")
    a = np.ascontiguousarray(a, dtype=dtype)
    bad = ~np.isfinite(a)
    if bad.any():
        first = np.argwhere(bad)[0]
        raise InputError(
            f"{name}: {int(bad.sum())} non-finite (NaN or inf) values, first at index "
            f"{tuple(int(i) for i in first)}")
    return a


def finite_array(x, name: str, dtype=None) -> np.ndarray:
    """C-contiguous copy/view of ``x`` with no NaN or inf."""
    a = np.ascontiguousarray(x, dtype=dtype)
    if a.size and not np.all(np.isfinite(a)):
        raise InputError(f"{name}: contains NaN or inf values")
    return a


def rank(H, R: int, name: str = "rank") -> int:
    """Validate a compression rank 1 ≤ H ≤ R."""
    if isinstance(H, (bool, np.bool_)) or int(H) != H:
        raise InputError(f"{name} must be an integer, got {H!r}")
    H = int(H)
    if not 1 <= H <= R:
        raise InputError(f"{name} H = {H} is out of range: need 1 <= H <= {R}")
    return H


def grid_of(grid, cls, name: str = "grid"):
    """Return ``grid`` if it is a ``cls`` (PolarGrid, ShellGrid), else raise a clear error."""
    if not isinstance(grid, cls):
        raise InputError(f"{name}: expected a radsvd.{cls.__name__}, got {type(grid).__name__}")
    return grid


def all_finite(x) -> bool:
    """True if no NaN/inf in x: a fast sum first (NaN and inf propagate), the exact
    elementwise test only when the sum is not finite (it may just have overflowed)."""
    r = x.view(np.float64) if np.iscomplexobj(x) and x.dtype == np.complex128 else x
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(np.sum(r)):
            return True
    return bool(np.isfinite(r).all())
