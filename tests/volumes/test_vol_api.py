"""One API voice: target last, one `rank` spelling, the precision policy; best_rotations'
timing recorder and unpruned mode; saved results."""

import ast
import os
import pathlib
import stat

import numpy as np
import pytest
import vol_helpers as hv

from radsvd import InputError
from radsvd.data.molecules import GaussianMolecule
from radsvd.volumes import (ShellGrid, VolumeAlignResult, align_volume_maps,
                            align_volumes, landscapes, prepare, rank_sweep, rotation_matrix,
                            volume_svd)
from radsvd.volumes.landscape import STEPS


def _same(r1, r2):
    for key in ("euler", "score", "tau"):
        np.testing.assert_array_equal(getattr(r1, key), getattr(r2, key))


def test_align_volume_maps_takes_the_target_last():
    rng = np.random.default_rng(1)
    mol = GaussianMolecule(centers=rng.uniform(-0.3, 0.3, (6, 3)), sigmas=np.full(6, 0.1),
                           weights=rng.uniform(0.5, 1.5, 6))
    target = mol.volume(16)
    vols = np.stack([mol.rotated(rotation_matrix([0.3, 0.8, -1.0])).volume(16), target])
    both = align_volume_maps(vols, target, K=5, rank=3)
    assert both.score[1] >= both.score[0]          # the target itself matches best
    np.testing.assert_allclose(both.matrix[1], np.eye(3), atol=0.35)
    # target last: swapping the roles gives the inverse rotations, not the same ones
    single = align_volume_maps(vols[0], target, K=5)
    swapped = align_volume_maps(target, vols[0], K=5)
    np.testing.assert_allclose(single.matrix[0] @ swapped.matrix[0], np.eye(3), atol=0.35)
    assert not np.allclose(single.matrix[0], swapped.matrix[0], atol=0.1)


def test_one_rank_spelling():
    grid = ShellGrid(K=5, R=4, L=5)
    A, B = hv.coefficients(grid, 3, 1), hv.coefficients(grid, 1, 2)
    basis = volume_svd(B, grid)
    X = landscapes(A, B, grid, basis, rank=(3, 3))
    np.testing.assert_array_equal(landscapes(A, B, grid, basis, rank=3), X)   # H = (H, H)
    plan = prepare(grid, B, basis, rank=(2, 3))
    assert (plan.H_C, plan.H_D) == (2, 3)
    ref = align_volumes(A, B[0], grid, basis, rank=(2, 3))
    _same(align_volumes(A, B[0], grid, basis, rank=(2, 3), plan=plan), ref)
    full = align_volumes(A, B[0], grid)
    _same(align_volumes(A, B[0], grid, rank="full"), full)
    assert not full.info["compressed"] and ref.info["compressed"]
    with pytest.raises(TypeError):
        prepare(grid, B, basis, ranks=(2, 2))       # the pre-release keyword is gone
    sweep = rank_sweep(A, B, grid, [2, (2, 2)], basis=basis)
    assert sweep[0] == sweep[1]
    with pytest.raises(InputError, match="ranks"):
        rank_sweep(A, B, grid, ["full"])


def test_precision_policy():
    """'auto' (the default of the alignments and plans): single precision for compressed
    landscapes, double for the full one; landscapes and rank_sweep return double."""
    grid = ShellGrid(K=5, R=4, L=5)
    A, B = hv.coefficients(grid, 2, 3), hv.coefficients(grid, 1, 4)
    basis = volume_svd(B, grid)
    assert align_volumes(A, B[0], grid).info["precision"] == "double"
    assert align_volumes(A, B[0], grid, basis, 2).info["precision"] == "single"
    assert prepare(grid, B).precision == "double"
    assert prepare(grid, B, basis, 2).precision == "single"
    assert landscapes(A, B, grid).dtype == np.float64
    assert landscapes(A, B, grid, basis, 2).dtype == np.float64
    assert landscapes(A, B, grid, basis, 2, precision="auto").dtype == np.float32
    with pytest.raises(InputError, match="precision"):
        prepare(grid, B, precision="half")


@pytest.mark.parametrize("compressed", [False, True])
def test_best_rotations_records_step_times_and_runs_unpruned(compressed):
    """timer= adds every step's seconds without changing a bit; prune=False transforms every
    slice and gives best(slices(coef)) exactly."""
    grid = ShellGrid(K=6, R=4, L=6)
    A, B = hv.coefficients(grid, 5, 5), hv.coefficients(grid, 1, 6)
    plan = (prepare(grid, B, volume_svd(B, grid), rank=(2, 3), head_only=True) if compressed
            else prepare(grid, B))
    ref = plan.best_rotations(A)
    times = {}
    got = plan.best_rotations(A, timer=times)
    for x, y in zip(ref, got):
        np.testing.assert_array_equal(x, y)
    assert set(times) == set(STEPS) and all(t >= 0 for t in times.values())
    first = dict(times)
    plan.best_rotations(A, timer=times)
    assert all(times[k] >= first[k] for k in STEPS) and times["step3"] > first["step3"]
    stages = {}
    res = align_volumes(A, B[0], grid, plan=plan, block=2, refine=True, timer=stages)
    assert set(stages) == set(STEPS) | {"refine"} and all(t >= 0 for t in stages.values())
    np.testing.assert_array_equal(res.score, align_volumes(A, B[0], grid, plan=plan, block=2,
                                                           refine=True).score)
    stages = {}
    align_volumes(A, B[0], grid, return_landscapes=True, timer=stages)
    assert set(stages) == {"plan", "landscapes"}
    whole = plan.best(plan.slices(A))
    unpruned = plan.best_rotations(A, prune=False)
    for x, y in zip(whole, unpruned):
        np.testing.assert_array_equal(x, y)
    slices = A.shape[0] * plan.n_slices
    assert plan.step3_calls == (slices * plan.M, slices, slices)


def test_result_save_is_atomic_with_usual_permissions(tmp_path):
    res = VolumeAlignResult(euler=np.zeros((1, 3)), matrix=np.eye(3)[None],
                            score=np.ones(1), tau=np.zeros((1, 3)), info=dict(K=8.0))
    path = tmp_path / "res.npz"
    res.save(path)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask       # not mkstemp's 0600
    d = np.load(path)
    assert float(d["info_K"]) == 8.0 and d["euler"].shape == (1, 3)
    before = path.read_bytes()
    res.info["bad"] = lambda: None                                     # cannot be pickled
    with pytest.raises(Exception):
        res.save(path)
    assert path.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["res.npz"]


def test_volume_engine_does_not_import_the_data_layer():
    """Layers: radsvd/volumes (but the test-volume maker and the reconstruction from a
    particle STAR, which read particles) imports rotations from the ground layer, not from
    radsvd.data; the former path re-exports the same functions."""
    import radsvd.data.rotations as old
    import radsvd.rotations as new

    assert old.euler_to_rotation is new.euler_to_rotation
    root = pathlib.Path(new.__file__).parent / "volumes"
    for path in root.rglob("*.py"):
        if path.name == "reconstruct.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert not (node.module or "").startswith("radsvd.data"), path
