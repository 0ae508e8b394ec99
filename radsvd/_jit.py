"""The one numba decorator of the project, and thread control.

Every compiled kernel in radsvd is decorated with :func:`jit`.  Kernels are private
(``_name``) and are called only through public wrappers that validate and canonicalise
their inputs (dtype, layout, shapes), so each kernel compiles for a small, fixed set of
signatures.

Compilation cache: on by default (``RADSVD_NUMBA_CACHE=0`` turns it off; ``NUMBA_CACHE_DIR``
chooses the folder).  Where numba finds no writable cache folder (a read-only installation
and an unwritable home), kernels compile without a cache and one warning line says so,
instead of failing at import.  Thread counts
are changed with :func:`set_threads` (``numba.set_num_threads``), never by changing
``NUMBA_NUM_THREADS`` between runs that share a cache (numba issue #7518).

First-run notice: numba compiles a kernel on its first call when the cache holds no copy
(a fresh installation, a changed source file).  That took 16 s of align-volumes and 35 s of
``bench --quick`` on 2 cores, silently; :class:`_CompileNotice` prints one line before the
first compilation of a radsvd kernel in a process and the total at exit
(``RADSVD_COMPILE_NOTICE=0`` silences both).  ``radsvd warmup`` compiles them ahead.

Fast-math: only flags that cannot change results for finite inputs in a way that matters
to us (contraction to FMA, reciprocal approximations, no signed zeros); never ``nnan``/``ninf``,
so NaN checks stay meaningful.  Parallel kernels give each output element to exactly one
thread with a fixed loop order, so results do not depend on the thread count.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import math
import numbers
import os
import sys
import time

import numba
import numba.core.event

from radsvd._validate import InputError

CACHE = os.environ.get("RADSVD_NUMBA_CACHE", "1").strip().lower() not in ("0", "false", "no",
                                                                          "off")
FASTMATH = frozenset({"contract", "arcp", "nsz"})


class _CompileNotice(numba.core.event.Listener):
    """Listener of numba's ``numba:compile`` events, which fire only on a cache miss (a
    kernel loaded from the cache fires none): announce the first, sum the nested ones."""

    def __init__(self):
        self.depth, self.kernels, self.seconds, self.start = 0, 0, 0.0, 0.0
        self.quiet = False      # radsvd warmup reports for itself

    def on_start(self, event):
        if self.depth == 0:
            self.start = time.perf_counter()
        self.depth += 1
        func = getattr(event.data.get("dispatcher"), "py_func", None)
        if not getattr(func, "__module__", "").startswith("radsvd"):
            return
        self.kernels += 1
        if self.kernels == 1 and not self.quiet and CACHE:   # without a cache: warned at import
            print("radsvd: compiling numba kernels once (about 15-60 s on 2 cores; later runs "
                  "load them from the cache; `radsvd warmup` compiles them ahead)...",
                  file=sys.stderr, flush=True)
            atexit.register(self.summary)

    def on_end(self, event):
        self.depth -= 1
        if self.depth == 0:
            self.seconds += time.perf_counter() - self.start

    def summary(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            print(f"radsvd: compiled {self.kernels} kernel signature(s) in {self.seconds:.0f} s "
                  "(cached for the next runs)", file=sys.stderr)


COMPILE_NOTICE = _CompileNotice()
if os.environ.get("RADSVD_COMPILE_NOTICE", "1").strip().lower() not in ("0", "false", "no",
                                                                        "off"):
    numba.core.event.register("numba:compile", COMPILE_NOTICE)


def jit(func=None, *, parallel: bool = False, inline: bool = False):
    """Compile ``func`` with the project's numba options (``@jit`` or ``@jit(parallel=True)``).

    ``inline=True``: a helper inlined into its callers at numba's IR level, so its loops are
    optimised in the caller's context (LLVM alone may leave a call, which can cost 2×)."""
    options = dict(nogil=True, fastmath=set(FASTMATH), error_model="numpy",
                   parallel=parallel, inline="always" if inline else "never")
    if func is None:
        return functools.partial(_njit, options=options)
    return _njit(func, options)


def _njit(func, options):
    """``numba.njit`` with the cache if numba can place one, else without (warned once)."""
    global CACHE
    if CACHE:
        try:
            return numba.njit(cache=True, **options)(func)
        except RuntimeError as exc:  # numba: "cannot cache function …: no locator available"
            if "no locator available" not in str(exc):
                raise
            CACHE = False
            print("radsvd: warning: no writable folder for numba's compilation cache (read-only "
                  "installation and home?): compiling without a cache; set NUMBA_CACHE_DIR to a "
                  "writable folder, or RADSVD_NUMBA_CACHE=0 to silence this", file=sys.stderr)
    return numba.njit(cache=False, **options)(func)


def prepare_compiler() -> None:
    """Set up numba's CPU target now (its typing and lowering registries: 0.2–0.3 s once per
    process, otherwise paid inside the first kernel call, even one loaded from the cache).
    The commands call it before their first kernel, so that the whole-command benchmark
    counts it as start-up rather than in whichever phase calls a kernel first."""
    from numba.core.registry import cpu_target

    cpu_target.typing_context.refresh()
    cpu_target.target_context.refresh()


def available_threads() -> int:
    """Size of numba's thread pool (``NUMBA_NUM_THREADS``)."""
    return numba.config.NUMBA_NUM_THREADS


def set_threads(n: int | None) -> int:
    """Use ``n`` threads for numba kernels, BLAS and scipy.fft.

    Results do not depend on the thread count (docs/design.md, Determinism).

    Parameters
    ----------
    n : int or None
        Threads, at most ``NUMBA_NUM_THREADS`` (larger values are capped); None for all.

    Returns
    -------
    int
        The thread count now in use.

    Examples
    --------
    >>> radsvd.set_threads(1)
    1
    >>> _ = radsvd.set_threads(None)     # all of them again
    """
    if n is not None and (isinstance(n, bool) or not isinstance(n, numbers.Real)
                          or not math.isfinite(n) or int(n) != n):
        raise InputError(f"thread count must be an integer, got {n!r}")
    n = available_threads() if n is None else int(n)
    if n < 1:
        raise InputError(f"thread count must be >= 1, got {n}")
    n = min(n, available_threads())
    numba.set_num_threads(n)
    from threadpoolctl import threadpool_limits

    threadpool_limits(n)
    global _FFT_WORKERS
    _FFT_WORKERS = n
    return n


_FFT_WORKERS = None


def fft_workers() -> int:
    """Worker count for scipy.fft calls (follows :func:`set_threads`)."""
    return _FFT_WORKERS or numba.get_num_threads()


@contextlib.contextmanager
def threads(n: int | None):
    """Context manager: run the enclosed block with ``n`` threads, then restore.

    Parameters
    ----------
    n : int or None
        Threads for the block (None: all), as :func:`set_threads`.

    Returns
    -------
    context manager
        Restores the previous thread counts on exit.

    Examples
    --------
    >>> import numba
    >>> with radsvd.threads(1):
    ...     print(numba.get_num_threads())
    1
    """
    previous = numba.get_num_threads()
    previous_fft = _FFT_WORKERS
    set_threads(n)
    try:
        yield
    finally:
        set_threads(previous)
        globals()["_FFT_WORKERS"] = previous_fft
