"""Transforms at the data's precision (single, eps 1e-6, for float32 data) leave the paper-scale
results as they are at 1e-12: the same best targets, angles and rotations, and f and the
correlation of the compressed landscapes within 1e-4.

Why the tolerances hold: finufft at eps 1e-6 changes the coefficients by ~1e-6 relative
(measured 1.1e-6 on the images, 2e-7 on the maps); the landscapes are bilinear in them, so
they move by ~2e-6 relative, and f and the correlation (ratios of sums of squares of
landscapes) by the same order, 50× below the 1e-4 required.  Poses stay identical when the
best score leads the runner-up by more than that; the test checks the lead too.
"""

import numpy as np

from radsvd.bench.images import synthetic_images
from radsvd.grids import PolarGrid
from radsvd.images import align_images, images_to_fb, radial_svd, rank_sweep


def test_images_single_precision_transform_keeps_poses_f_and_correlation():
    grid = PolarGrid(K=48.0)                                  # paper scale: R = 49, Q = 98
    tg = synthetic_images(96, 64, seed=1, noise=0.0).astype(np.float32)
    im = synthetic_images(128, 64, seed=2).astype(np.float32)
    fb = {p: (images_to_fb(im, grid, precision=p), images_to_fb(tg, grid, precision=p))
          for p in ("single", "double")}
    assert np.array_equal(images_to_fb(im[:4], grid), fb["single"][0][:4])   # the default
    a64, b64 = fb["double"]
    rel = np.linalg.norm(fb["single"][0] - a64) / np.linalg.norm(a64)
    assert 1e-9 < rel < 5e-6                       # single precision was used, at ~eps
    res = {}
    for p, (a, b) in fb.items():
        basis = radial_svd(b, grid)
        res[p] = (align_images(a, b, grid, all_pairs=True),
                  align_images(a, b, grid, basis=basis, rank=6, all_pairs=True),
                  rank_sweep(a[:48], b, grid, basis, [2, 6], precision="double"))
    for full_or_rank in (0, 1):
        r32, r64 = res["single"][full_or_rank], res["double"][full_or_rank]
        assert np.array_equal(r32.best_target, r64.best_target)
        assert np.array_equal(r32.angle, r64.angle)
        # the best target leads the runner-up by 10x the transform's ~2e-6 relative error
        s = np.sort(r64.scores, axis=1)
        assert np.min((s[:, -1] - s[:, -2]) / np.abs(s[:, -1])) > 2e-5
        assert np.max(np.abs(r32.score - r64.score)) < 1e-5 * np.max(np.abs(r64.score))
    for H in (2, 6):
        m32, m64 = res["single"][2][H], res["double"][2][H]
        assert abs(m32["f"] - m64["f"]) < 1e-4
        assert abs(m32["correlation"] - m64["correlation"]) < 1e-4


def test_maps_single_precision_transform_keeps_rotations_f_and_correlation():
    from radsvd.data.molecules import synthetic_molecule
    from radsvd.data.rotations import random_rotations
    from radsvd.volumes.align import align_volumes, rank_sweep as volume_rank_sweep
    from radsvd.volumes.basis import volume_svd
    from radsvd.volumes.shells import ShellGrid, ShellTransform, to_shells

    grid = ShellGrid(K=48.0)                                  # paper scale: L = 48
    N = 65
    mol = synthetic_molecule("trpv1-like", n_atoms=60)
    rng = np.random.default_rng(0)
    target = mol.volume(N).astype(np.float32)
    sd = 0.5 * target.std()
    maps = np.stack([mol.rotated(R).volume(N) + sd * rng.standard_normal((N, N, N))
                     for R in random_rotations(3, rng=1)]).astype(np.float32)
    t32 = ShellTransform(grid, N, np.float32)
    assert (t32.precision, t32.eps) == ("single", 1e-6)
    coef = {"single": (t32(maps), t32(target)[0]),
            "double": (to_shells(maps, grid, precision="double"),
                       to_shells(target, grid, precision="double")[0])}
    assert np.array_equal(coef["single"][0], to_shells(maps, grid))     # the default
    ca64 = coef["double"][0]
    rel = np.linalg.norm(coef["single"][0] - ca64) / np.linalg.norm(ca64)
    assert 1e-9 < rel < 5e-6
    out = {}
    for p, (ca, cb) in coef.items():
        basis = volume_svd(cb, grid, H_C=8)
        out[p] = (align_volumes(ca, cb, grid), align_volumes(ca, cb, grid, basis, (8, 8)),
                  volume_rank_sweep(ca[:1], cb, grid, [(8, 8)])[0])
    for k in (0, 1):
        r32, r64 = out["single"][k], out["double"][k]
        assert np.array_equal(r32.euler, r64.euler)
        assert np.max(np.abs(r32.score - r64.score)) < 1e-5 * np.max(np.abs(r64.score))
    m32, m64 = out["single"][2], out["double"][2]
    assert abs(m32["f"] - m64["f"]) < 1e-4
    assert abs(m32["correlation"] - m64["correlation"]) < 1e-4
    # the real-space entry point transforms at the maps' precision too (float32: single)
    from radsvd.volumes.align import align_volume_maps

    opts = dict(K=48.0, max_shift=0, mirror="no", refine=False)   # the rotation search
    res = align_volume_maps(maps, target, **opts)
    assert res.info["transform_precision"] == "single"
    # the same grid maxima as the coefficient path (its full landscape, eq. 103)
    np.testing.assert_allclose(res.matrix, out["single"][0].matrix, atol=1e-12)
    mixed = align_volume_maps(maps, target.astype(np.float64), **opts)
    assert mixed.info["transform_precision"] == "double"            # the wider: double


def test_map_transforms_do_not_depend_on_the_thread_count():
    """Each map is transformed by one finufft thread (at upsampling factor 1.25 finufft's
    result depends on its thread count, by ~4e-6 relative); a stack is spread over the pool."""
    from radsvd._jit import threads
    from radsvd.volumes.shells import ShellGrid, to_shells

    grid = ShellGrid(K=16.0)
    maps = np.random.default_rng(4).standard_normal((3, 33, 33, 33)).astype(np.float32)
    with threads(1):
        one = to_shells(maps, grid)
    with threads(2):
        two = to_shells(maps, grid)
    assert np.array_equal(one, two)
    assert np.array_equal(two[1], to_shells(maps[1], grid)[0])
