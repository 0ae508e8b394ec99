"""The one thread-pool helper: results in task order, one executor per worker count, nested
calls from a pool thread run inline (no deadlock), BLAS limited on request."""

import threading

from radsvd._pool import executor, pool_map


def test_results_in_task_order_on_shared_executors():
    items = list(range(20))
    assert pool_map(lambda x: x * x, items, workers=3) == [x * x for x in items]
    assert pool_map(lambda x: -x, items, workers=1) == [-x for x in items]
    assert executor(3) is executor(3) and executor(2) is not executor(3)


def test_nested_calls_run_inline():
    """Every outer task blocks until its inner map is done: with inner tasks queued on the
    same two busy threads this would never finish."""
    names = []

    def outer(i):
        inner = pool_map(lambda j: (threading.current_thread().name, i * 10 + j), range(3),
                         workers=2)
        names.extend(n for n, _ in inner)
        return [v for _, v in inner]

    result = []
    runner = threading.Thread(target=lambda: result.append(pool_map(outer, range(4), 2)),
                              daemon=True)
    runner.start()
    runner.join(timeout=60)
    assert result == [[[i * 10 + j for j in range(3)] for i in range(4)]], "deadlocked"
    assert all(n.startswith("radsvd-pool") for n in names)


def test_blas_limited_to_one_thread_inside_tasks():
    from threadpoolctl import threadpool_info

    def blas_threads(_):
        return [d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas"]

    for counts in pool_map(blas_threads, range(2), workers=2):
        assert all(c == 1 for c in counts)
