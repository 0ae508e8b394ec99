"""The project's thread pools: Python threads over tasks that release the GIL (numba kernels
with ``nogil``, ducc0, numpy, single-threaded BLAS), results in task order.

Every task runs serial kernels and results are merged in the order of the tasks, so outputs
are bitwise independent of the number of workers.  One persistent executor per worker
count (:func:`executor`) serves every caller: no thread start-up per call.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

__all__ = ["n_workers", "executor", "pool_map"]

_EXECUTORS: dict[int, ThreadPoolExecutor] = {}
_LOCK = threading.Lock()
_PREFIX = "radsvd-pool"


def n_workers() -> int:
    """Number of workers: numba's current thread count (follows radsvd.set_threads)."""
    import numba

    return max(1, int(numba.get_num_threads()))


def executor(workers: int) -> ThreadPoolExecutor:
    """The shared thread pool of ``workers`` threads (created on first use)."""
    with _LOCK:
        if workers not in _EXECUTORS:
            _EXECUTORS[workers] = ThreadPoolExecutor(workers, thread_name_prefix=_PREFIX)
        return _EXECUTORS[workers]


def pool_map(fn, items, workers: int | None = None, progress=None,
             single_blas: bool = True) -> list:
    """[fn(item) for item in items] on ``workers`` threads (default :func:`n_workers`), in
    order; ``single_blas``: BLAS limited to one thread meanwhile (tasks that call BLAS would
    otherwise oversubscribe the cores); ``progress``: a tqdm-like bar, advanced per item."""
    import contextlib

    workers = n_workers() if workers is None else workers
    if threading.current_thread().name.startswith(_PREFIX):
        workers = 1                        # nested call from a pool thread: run inline
    items = list(items)
    out = [None] * len(items)
    if single_blas:
        from threadpoolctl import threadpool_limits

        limit = threadpool_limits(limits=1, user_api="blas")
    else:
        limit = contextlib.nullcontext()
    with limit:
        if workers <= 1 or len(items) <= 1:
            for i, it in enumerate(items):
                out[i] = fn(it)
                if progress is not None:
                    progress.update(1)
        else:
            futures = [executor(workers).submit(fn, it) for it in items]
            for i, f in enumerate(futures):
                out[i] = f.result()
                if progress is not None:
                    progress.update(1)
    return out
