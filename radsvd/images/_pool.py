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
