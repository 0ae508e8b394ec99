"""The volume benchmark runs (quick sizes) and its numpy baseline agrees with the engine."""

import numpy as np

from radsvd.bench.volumes import bench_volumes, measure, numpy_baseline
from radsvd.volumes import ShellGrid, landscapes


def test_numpy_baseline_agrees_with_engine():
    grid = ShellGrid(K=5)
    target, vols = bench_volumes(grid, 3)
    idx, val = numpy_baseline(vols, target, grid)
    X = landscapes(vols, target, grid)
    flat = X.reshape(3, -1)
    # same grid, same order (β, α, γ): identical maxima up to rounding
    np.testing.assert_allclose(val, flat.max(1), rtol=1e-10)
    np.testing.assert_allclose(flat[np.arange(3), idx], val, rtol=1e-10)


def test_quick_measure_records():
    recs = measure(quick=True)
    names = [r["name"] for r in recs]
    assert len(set(names)) == len(names)
    assert {"volumes.full", "volumes.numpy_baseline", "volumes.wigner"} <= set(names)
    for r in recs:
        assert isinstance(r["seconds"], float) and r["seconds"] >= 0 and "params" in r
    full = next(r for r in recs if r["name"] == "volumes.full")
    assert full["best_scores_match_numpy"] == 1.0
    # the runs without branch and bound find the same best rotations (scores to rounding)
    unpruned = [r for r in recs if r["name"].endswith(".unpruned")]
    assert len(unpruned) == 2 and all(r["same_best_as_pruned"] == 1.0 for r in unpruned)
