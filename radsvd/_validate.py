"""Input validation shared by the public wrappers: clear errors that name the problem."""

from __future__ import annotations

import math
import numbers

import numpy as np

MAX_BOX = 4096                         # the largest box (pixels) radsvd is meant for
MAX_K = 0.5 * math.pi * MAX_BOX        # its Nyquist frequency πN/2 ≈ 6434 (box units)
MAX_NODES = 4 * MAX_BOX                # cap on grid counts R, Q, L (defaults at MAX_K: ≤ 12870)


class InputError(ValueError):
    """Bad input to a public radsvd function; the message says what is wrong and where.

    A ``ValueError``; the command line prints it as ``radsvd <cmd>: error: ...`` and exits 2.

    Parameters
    ----------
    message : str
        What is wrong and where (the file, field or argument).

    Examples
    --------
    >>> try:
    ...     radsvd.PolarGrid(K=-1)
    ... except radsvd.InputError as exc:
    ...     print(type(exc).__name__, isinstance(exc, ValueError))
    InputError True
    """


class InputWarning(UserWarning):
    """Input that radsvd reads but that looks odd (e.g. an MRC header without its map id)."""


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
        raise InputError(f"{name} H = {H} is out of range: need 1 <= H <= {R} (R, the radial "
                         "nodes of the polar grid, grows with K)")
    return H


def rank_pair(rank) -> tuple | None:
    """The ranks (H_C, H_D) of a volume ``rank`` argument, or None for the full landscape.

    rank: None or "full" (the full landscape), an integer H (H_C = H_D = H, the paper's
    choice) or a pair (H_C, H_D); each is checked against its bound where it is used."""
    if rank is None or (isinstance(rank, str) and rank == "full"):
        return None
    if isinstance(rank, (str, bool, np.bool_)):
        raise InputError(f"rank must be 'full', None, an integer H or a pair (H_C, H_D), "
                         f"got {rank!r}")
    if np.ndim(rank) == 0:
        return (rank, rank)
    try:
        H_C, H_D = rank
    except (TypeError, ValueError):
        raise InputError(f"rank must be 'full', None, an integer H or a pair (H_C, H_D), "
                         f"got {rank!r}") from None
    return (H_C, H_D)


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


def frequency(K, name: str = "K") -> float:
    """Validate a maximum frequency 0 < K ≤ MAX_K (box units; Nyquist of an N box is πN/2).

    Checked before any grid is built: a grid's size grows with K (R ~ K rings, ~K² angles or
    degrees), so an absurd K would otherwise run for hours before the Nyquist check."""
    if isinstance(K, (bool, np.bool_)) or not isinstance(K, numbers.Real):
        raise InputError(f"{name} must be a number, got {K!r}")
    K = float(K)
    if not (math.isfinite(K) and K > 0):
        raise InputError(f"{name} must be a positive finite frequency, got {K!r}")
    if K > MAX_K:
        raise InputError(f"{name} = {K:g} is beyond the Nyquist frequency πN/2 = {MAX_K:.0f} of "
                         f"the largest supported box (N = {MAX_BOX}); for an N-pixel box use "
                         "K <= πN/2")
    return K


def frequency_for_box(K, N: int, name: str = "K", what: str = "pixel") -> float:
    """Validate K as :func:`frequency` and against the Nyquist frequency πN/2 of an N box."""
    K = frequency(K, name)
    nyquist = 0.5 * math.pi * int(N)
    if K > nyquist * (1 + 1e-12):
        raise InputError(f"{name} = {K:g} is beyond the Nyquist frequency πN/2 = {nyquist:.4g} "
                         f"of a {N}-{what} box; lower {name} or use larger boxes")
    return K


def degenerate_targets(coef, invariant, name: str, flat: str = "warn") -> None:
    """Refuse targets a landscape cannot align to, before any landscape is computed.

    ``coef`` (n, ..., F): each target's coefficients as the engine uses them (after any
    compression); ``invariant`` (F,) bool: the entries no rotation changes (q = 0 in 2D,
    l = 0 in 3D).  A target with no energy is refused (InputError): it scores 0 at every
    rotation against every input.  One whose energy is all invariant (rotationally symmetric
    within K) scores the same at every rotation: ``flat="warn"`` warns that angles against it
    are arbitrary, ``flat="error"`` refuses it.  "No energy" is relative: below 1e-20 of the
    largest target energy (amplitudes below 1e-10 of it, far under any data's noise but far
    above the ~1e-32 of rounding)."""
    import warnings

    c = np.abs(np.asarray(coef)) ** 2
    c = c.reshape(c.shape[0], -1, c.shape[-1])
    total = c.sum(axis=(1, 2))
    moving = c[..., ~np.asarray(invariant, dtype=bool)].sum(axis=(1, 2))
    zero = np.flatnonzero(total <= 1e-20 * total.max())
    if zero.size:
        which = ", ".join(map(str, zero[:10])) + (" …" if zero.size > 10 else "")
        raise InputError(f"{name}: {zero.size} of {len(total)} target(s) are zero within the "
                         f"frequency range (index {which}, 0-based; after compression if any): "
                         "they would score 0 at every rotation; remove them or raise K")
    symmetric = np.flatnonzero(moving <= 1e-20 * total)
    if symmetric.size:
        which = ", ".join(map(str, symmetric[:10])) + (" …" if symmetric.size > 10 else "")
        message = (f"{name}: {symmetric.size} target(s) are rotationally symmetric within the "
                   f"frequency range (index {which}, 0-based): every rotation scores the same, "
                   "so the angle against them is arbitrary")
        if flat == "error":
            raise InputError(message)
        warnings.warn(message, InputWarning, stacklevel=3)


def physical_memory() -> int | None:
    """Bytes of physical memory of this machine (None where the system does not say)."""
    import os

    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(nbytes: int, what: str, advice: str) -> None:
    """Refuse, before allocating, work whose arrays can never fit in physical memory.

    numpy's lazy pages would otherwise let such work start and run until the system's
    out-of-memory killer ends it (or another process on the machine)."""
    total = physical_memory()
    if total is not None and nbytes > total:
        raise InputError(f"{what} needs {nbytes / 2**30:.1f} GiB, more than this machine's "
                         f"{total / 2**30:.1f} GiB of memory; {advice}")
