"""Fitting maps onto a target: translation, hand, box and voxel size against known
transforms of closed-form Gaussian molecules (radsvd.volumes.fit, align_volume_maps, the
align-volumes command)."""

import numpy as np
import pytest

from radsvd._validate import InputError
from radsvd.cli import main
from radsvd.data.mrc import read_mrc, write_mrc
from radsvd.data.molecules import GaussianMolecule
from radsvd.volumes import ShellGrid, align_volume_maps, rotation_matrix
from radsvd.volumes import fit


def _molecule(seed=11, n=14):
    rng = np.random.default_rng(seed)
    return GaussianMolecule(centers=rng.uniform(-0.3, 0.3, (n, 3)),
                            sigmas=rng.uniform(0.06, 0.09, n), weights=rng.uniform(0.5, 1.5, n))


def _moved(mol, R, shift_units, scale=1.0, mirror=False):
    """The molecule mirrored (x → -x), rotated by R, moved by shift (box units of the map's
    own box), all scaled by ``scale`` (target box units → map box units)."""
    c = -mol.centers if mirror else mol.centers
    return GaussianMolecule(centers=(c @ R.T) * scale + shift_units,
                            sigmas=mol.sigmas * scale, weights=mol.weights)


def _angle(R1, R2):
    return np.degrees(np.arccos(np.clip((np.trace(R1.T @ R2) - 1) / 2, -1, 1)))


def _atoms_error(res, mol, moved, NA, pA, NB, pB):
    """Largest distance (Å) between the target's atoms and the moved map's atoms carried
    by the result's 4×4 transform (ChimeraX coordinates, zero origins)."""
    XA = moved.centers * (NA * pA / 2) + (NA // 2) * pA
    XB = mol.centers * (NB * pB / 2) + (NB // 2) * pB
    M = res.transform[0]
    return np.abs(XA @ M[:3, :3].T + M[:3, 3] - XB).max()


def test_translation_grid_is_the_direct_sum():
    grid = ShellGrid(K=4, R=4, L=4)
    rng = np.random.default_rng(0)
    nodes = fit._nodes(grid)
    c = rng.normal(size=nodes.shape[1]) + 1j * rng.normal(size=nodes.shape[1])
    h, radius = 0.1, 0.25
    t, val = fit.translation_grid(c, nodes, h, radius)
    m = np.arange(-2, 3)
    best = (-np.inf, None)
    for x in m:
        for y in m:
            for z in m:
                tt = h * np.array([x, y, z])
                if np.linalg.norm(tt) <= radius:
                    v = fit.translation_value(c, nodes, tt)
                    best = max(best, (v, tuple(tt)), key=lambda p: p[0])
    # the NUFFT at tolerance 1e-6 relative to Σ|c|
    assert abs(val - best[0]) < 1e-5 * np.abs(c).sum()
    np.testing.assert_allclose(t, best[1], atol=1e-12)


def test_rotation_and_subvoxel_shift_are_recovered():
    mol = _molecule()
    N = 32
    R = rotation_matrix([0.7, 1.2, -2.4])
    shift_vox = np.array([1.6, -2.3, 0.8])
    moved = _moved(mol, R, shift_vox * 2 / N)
    res = align_volume_maps(moved.volume(N), mol.volume(N), K=12, max_shift=4.0)
    # map → target: y = Rᵀ (x - s); the closed-form maps are band-limited to within
    # rounding at K = 12 (σ ≥ 0.06: exp(-σ²K²/2) ~ 0.4, the rest is the sampled Gaussian),
    # so the optimum is the truth up to the quadrature: a small fraction of a voxel
    assert _angle(res.matrix[0], R.T) < 0.05
    np.testing.assert_allclose(res.shift[0], -R.T @ shift_vox, atol=0.02)
    assert not res.mirrored[0]
    assert res.score[0] > 0.999
    assert _atoms_error(res, mol, moved, N, 1.0, N, 1.0) < 0.02


def test_mirror_auto_finds_the_hand_and_reports_both_scores():
    mol = _molecule(5)
    N = 32
    R = rotation_matrix([-0.4, 2.0, 1.1])
    moved = _moved(mol, R, np.array([0.05, -0.03, 0.02]), mirror=True)
    res = align_volume_maps(moved.volume(N), mol.volume(N), K=12, max_shift=3.0,
                            mirror="auto")
    assert res.mirrored[0]
    assert np.linalg.det(res.transform[0][:3, :3]) == pytest.approx(-1.0)
    assert res.info["score_mirrored"][0] > 0.999 > res.info["score_unmirrored"][0]
    assert res.score[0] == res.info["score_mirrored"][0]
    assert _atoms_error(res, mol, moved, N, 1.0, N, 1.0) < 0.02
    kept = align_volume_maps(moved.volume(N), mol.volume(N), K=12, max_shift=3.0,
                             mirror="no")
    assert not kept.mirrored[0] and kept.score[0] < res.score[0]


def test_different_boxes_voxel_sizes_and_the_aligned_map():
    mol = _molecule(7)
    NB, pB, NA, pA = 30, 3.0, 36, 2.2
    R = rotation_matrix([1.9, 0.6, -0.3])
    scale = (NB * pB) / (NA * pA)
    moved = _moved(mol, R, np.array([3.0, -2.0, 1.5]) / (NA * pA / 2), scale=scale)
    vol, tgt = moved.volume(NA), mol.volume(NB)
    res = align_volume_maps([vol], tgt, voxel_sizes=(pB, [pA]), K=12, max_shift=8.0)
    assert _angle(res.matrix[0], R.T) < 0.05
    assert _atoms_error(res, mol, moved, NA, pA, NB, pB) < 0.03       # Å, 1% of a voxel
    aligned = fit.resample_map(vol, pA, NB, pB, res.transform[0][:3, :3], res.shift[0])
    # cubic-spline resampling of maps sampled at 2-3 voxels per σ: close, not exact
    assert np.corrcoef(aligned.ravel(), tgt.ravel())[0, 1] > 0.99


def test_origins_move_only_the_transform():
    M = fit.chimerax_matrix(np.eye(3), np.zeros(3), 20, 2.0, [10.0, 0, 0], 30, 1.0,
                            [0, 5.0, 0])
    # map voxel 10 (centre) at x = 10 + 20 Å; the target's centre voxel 15 at y = 5 + 15
    np.testing.assert_allclose(M[:3, 3], [15 - 30, 20 - 20, 15 - 20])


def test_choose_rank_falls_back_on_flat_spectra():
    from radsvd.volumes.basis import VolumeBasis

    grid = ShellGrid(K=16)
    decay = 10.0 ** -np.arange(grid.R, dtype=float)
    flat = np.ones(grid.L + 1)
    basis = VolumeBasis(U=np.eye(grid.R), C_values=decay, V=np.eye(grid.L + 1),
                        D_values=flat, eta=grid.eta, H_C_for_D=grid.R)
    rank, info = fit.choose_rank(basis, grid, 8)
    assert rank is None and info["rank_used"] == "full" and "degree" in info["rank_reason"]
    steep = VolumeBasis(U=np.eye(grid.R), C_values=decay, V=np.eye(grid.L + 1),
                        D_values=10.0 ** -np.arange(grid.L + 1.0), eta=grid.eta,
                        H_C_for_D=grid.R)
    rank, info = fit.choose_rank(steep, grid, 8)
    assert rank == 8 and info["spectrum_kept_D"] > 0.999
    rank, info = fit.choose_rank(steep, grid, "auto")
    assert rank == 3                     # kept 1.11/1.111 = 0.9991 at H = 3, 0.991 at H = 2


def test_scores_compare_between_ranks():
    mol = _molecule(3)
    N = 32
    moved = _moved(mol, rotation_matrix([0.3, 0.9, 2.0]), np.zeros(3))
    full = align_volume_maps(moved.volume(N), mol.volume(N), K=12, max_shift=2.0)
    low = align_volume_maps(moved.volume(N), mol.volume(N), K=12, max_shift=2.0, rank=6)
    assert low.info["rank_used"] in ("6", "full")
    assert low.score[0] == pytest.approx(full.score[0], abs=1e-6)


def test_default_K_follows_the_box_and_bad_options():
    mol = _molecule(2)
    vol = mol.volume(20)
    res = align_volume_maps(vol, vol, max_shift=0, mirror="no")
    assert res.info["K"] == pytest.approx(np.pi * 20 / 4)
    np.testing.assert_allclose(res.matrix[0], np.eye(3), atol=1e-6)
    with pytest.raises(InputError, match="Nyquist"):
        align_volume_maps(vol, vol, K=48)
    with pytest.raises(InputError, match="voxel size"):
        align_volume_maps(vol, vol, voxel_sizes=(1.0, [0.0]))
    with pytest.raises(InputError, match="max_shift"):
        align_volume_maps(vol, vol, max_shift=-1)
    with pytest.raises(InputError, match="mirror"):
        align_volume_maps(vol, vol, mirror="maybe")
    with pytest.raises(InputError, match="no energy"):
        align_volume_maps(np.zeros_like(vol), vol)


def test_cli_out_map_boxes_pixel_sizes_and_voxel_size_option(tmp_path, capsys):
    mol = _molecule(9)
    NB, pB, NA, pA = 30, 3.0, 34, 2.5
    R = rotation_matrix([0.5, 1.4, -1.0])
    scale = (NB * pB) / (NA * pA)
    moved = _moved(mol, R, np.array([-2.0, 2.5, 1.0]) / (NA * pA / 2), scale=scale,
                   mirror=True)
    tgt, mp, out, amap = (tmp_path / n for n in ("t.mrc", "m.mrc", "r.npz", "a.mrc"))
    write_mrc(tgt, mol.volume(NB, dtype=np.float32), voxel_size=pB)
    write_mrc(mp, moved.volume(NA, dtype=np.float32), voxel_size=pA)
    assert main(["align-volumes", str(tgt), str(mp), "--K", "12", "--max-shift", "8",
                 "--out", str(out), "--out-map", str(amap), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert f"{mp} onto {tgt}: mirrored" in text and "view matrix models #2," in text
    d = np.load(out)
    assert d["mirrored"][0] and d["score"][0] > 0.999
    np.testing.assert_allclose(rotation_matrix(np.radians(d["euler_relion"][0][::-1])),
                               d["matrix"][0], atol=1e-12)
    aligned, size = read_mrc(amap)
    assert aligned.shape == (NB,) * 3 and size == pytest.approx(pB)
    assert np.corrcoef(aligned.ravel(), mol.volume(NB).ravel())[0, 1] > 0.99
    # a header without a voxel size: an error naming the option, then the option fixes it
    write_mrc(tmp_path / "nopx.mrc", moved.volume(NA, dtype=np.float32), voxel_size=0.0)
    assert main(["align-volumes", str(tgt), str(tmp_path / "nopx.mrc"), "--K", "12",
                 "--out", str(tmp_path / "x.npz"), "--no-progress"]) == 2
    assert "--voxel-size" in capsys.readouterr().err
    assert main(["align-volumes", str(tgt), str(tmp_path / "nopx.mrc"), "--K", "12",
                 "--voxel-size", f"{pB},{pA}", "--max-shift", "8", "--out",
                 str(tmp_path / "x.npz"), "--no-progress"]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "x.npz")["transform"], d["transform"],
                               atol=1e-6)


def test_phase_sum_on_half_the_nodes_is_the_landscape_of_the_moved_map():
    # X(τ, t) two ways: the NUFFT of the target at the rotated half nodes (fit) against
    # eq. 103 on the shell coefficients of the moved map (sht, step 1, Wigner-d)
    from radsvd.volumes import prepare
    from radsvd.volumes.align import _full_T, landscape_value
    from radsvd.volumes.shells import ShellTransform, sht

    mol = _molecule(4)
    N = 24
    grid = ShellGrid(K=8)
    tr = ShellTransform(grid, N, np.float64)
    A = _moved(mol, rotation_matrix([0.2, 0.7, 1.0]), np.array([0.1, 0.0, -0.05])).volume(N)
    B = mol.volume(N)
    a = fit.map_samples(A, grid, tr, voxel_size=1.0)
    b = fit.map_samples(B, grid, tr, voxel_size=1.0)
    plan = prepare(grid, sht(b.samples[None], grid))
    target = fit.RotatedTarget(B, grid, tr, b)
    tau, t = np.array([0.4, 1.3, -0.9]), np.array([0.03, -0.02, 0.05])
    for mirrored in (False, True):
        c = fit._phase_sum(a, target, tau, mirrored)
        via_phases = fit.translation_value(c, fit.half_nodes(grid), t)
        via_shells = landscape_value(_full_T(a.coefficients(grid, t, mirrored), plan), plan,
                                     tau)
        # both exact on band-limited shells up to the NUFFT tolerance (1e-12) and the
        # degree-L truncation of the rotated target (the coefficient route)
        assert via_phases == pytest.approx(via_shells, rel=1e-6)
