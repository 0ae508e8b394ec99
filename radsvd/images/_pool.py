"""Task pool of the 2D side: Python threads, BLAS single-threaded, results in task order.

Every task runs single-threaded BLAS and serial kernels, and results are merged in the
order of the tasks, so outputs are bitwise independent of the number of workers.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor


def n_workers() -> int:
    """Number of workers: numba's current thread count (follows radsvd.set_threads)."""
    import numba

    return max(1, int(numba.get_num_threads()))


def pool_map(fn, items, workers: int | None = None, progress=None) -> list:
    """[fn(item) for item in items] on ``workers`` threads with BLAS limited to one thread."""
    from threadpoolctl import threadpool_limits

    workers = n_workers() if workers is None else workers
    out = [None] * len(items)
    with threadpool_limits(limits=1, user_api="blas"):
        if workers <= 1 or len(items) <= 1:
            for i, it in enumerate(items):
                out[i] = fn(it)
                if progress is not None:
                    progress.update(1)
        else:
            with ThreadPoolExecutor(max_workers=workers) as ex:
                futures = [ex.submit(fn, it) for it in items]
                for i, f in enumerate(futures):
                    out[i] = f.result()
                    if progress is not None:
                        progress.update(1)
    return out


def all_finite(x) -> bool:
    """True if no NaN/inf in x: a fast sum first (NaN and inf propagate), the exact
    elementwise test only when the sum is not finite (it may just have overflowed)."""
    import numpy as np

    r = x.view(np.float64) if np.iscomplexobj(x) and x.dtype == np.complex128 else x
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(np.sum(r)):
            return True
    return bool(np.isfinite(r).all())
