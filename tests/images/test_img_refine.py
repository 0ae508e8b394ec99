"""Local pose refinement and the contrast check on simulated particles with CTF and shifts
(seeds distinct from the benchmark's), against the true poses and independent references."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from radsvd.data.molecules import synthetic_molecule
from radsvd.data.poses import angular_errors, compose_poses
from radsvd.data.simulate import Microscope, simulate_particles, write_particles
from radsvd.rotations import euler_to_rotation

N, P, K = 48, 6.4, 24.0


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """12 noise-free particles with CTF and shifts up to 3 px, prepared for the search."""
    from radsvd.images.particles import prepare_particles

    d = tmp_path_factory.mktemp("refine")
    mol = synthetic_molecule("trpv1-like")
    imgs, table = simulate_particles(mol, 12, N, P, snr=None, seed=7, max_shift=3 * P,
                                     microscope=Microscope(n_micrographs=2))
    paths = write_particles(d, imgs, table, volume=mol.volume(N))
    prob = prepare_particles(paths["star"], paths["map"], K=K, ignore_origins=True,
                             fix_edges=False)
    return prob, table, paths


def test_tilt_rotations_match_scipy():
    """B exp(ax J_x + ay J_y) equals B times scipy's rotation of rotation vector (ax, ay, 0)."""
    from radsvd.images.refine import tilt_rotations

    rng = np.random.default_rng(3)
    B = Rotation.random(5, random_state=4).as_matrix()
    ax, ay = rng.normal(0, 0.3, 5), rng.normal(0, 0.3, 5)
    ax[0] = ay[0] = 0.0
    ref = B @ Rotation.from_rotvec(np.stack([ax, ay, 0 * ax], 1)).as_matrix()
    np.testing.assert_allclose(tilt_rotations(B, ax, ay), ref, atol=1e-14)


def test_refinement_reaches_the_true_poses_and_the_landscape_maximum(clean):
    """From the global search's grid poses (errors of several degrees), the refinement lands
    within 0.5° and 0.2 px of the truth on clean particles, and its score is at least the
    full landscape's value at the true pose minus the slice tolerance (the truth is the
    maximum of a noise-free landscape)."""
    from radsvd.images.particles import search_poses
    from radsvd.images.refine import _Level, _Slicer
    from radsvd.images.polar import images_to_fb
    from radsvd.data.ctf import ctf_polar_stack
    from radsvd.data.stacks import ctf_params

    prob, table, _ = clean
    grid_res = search_poses(prob, rank=6, max_shift_A=4 * P)
    grid_poses = compose_poses(prob.rotations, grid_res.best_target, grid_res.angle,
                               grid_res.shift, prob.pixel_size)
    g_ang = angular_errors(grid_poses.rot, grid_poses.tilt, grid_poses.psi, table.rot,
                           table.tilt, table.psi)
    res = search_poses(prob, rank=6, max_shift_A=4 * P, refine=True)
    ang = angular_errors(res.poses.rot, res.poses.tilt, res.poses.psi, table.rot, table.tilt,
                         table.psi)
    sh = np.hypot(res.poses.shift_x - table.shift_x,
                  res.poses.shift_y - table.shift_y) / prob.pixel_size
    assert np.median(g_ang) > 1.0                        # the grid alone is not enough
    assert np.median(ang) <= 0.5 and np.median(sh) <= 0.2
    assert ang.max() <= 1.0
    # the full landscape at the true pose, γ = 0, δ = −origin (no Newton steps)
    import radsvd.images.refine as RF

    n = len(table)
    rings = ctf_polar_stack(ctf_params(prob.table), prob.grid, prob.box,
                            prob.table.pixel_size.to_numpy(float), ring=True)
    lvl = _Level(_Slicer(prob.volume, prob.grid, 1e-6), images_to_fb(prob.images, prob.grid),
                 rings)
    true_R = euler_to_rotation(table.rot.to_numpy(), table.tilt.to_numpy(), table.psi.to_numpy())
    true_d = -table[["shift_x", "shift_y"]].to_numpy() / prob.pixel_size
    newton, RF.NEWTON = RF.NEWTON, 0
    try:
        _, _, v_true = lvl.evaluate(np.arange(n), true_R, np.zeros(n), true_d, prob.box, 0.0)
    finally:
        RF.NEWTON = newton
    assert np.all(res.score >= v_true - 1e-3 * np.abs(v_true))
    assert np.all(res.score <= v_true + 1e-3 * np.abs(v_true))


def test_refinement_is_bitwise_the_same_for_any_thread_count(clean):
    from radsvd._jit import threads
    from radsvd.images.refine import refine_local

    prob, table, _ = clean
    rng = np.random.default_rng(0)
    t = rng.integers(0, len(prob.rotations), (len(table), 2))
    g, d = rng.uniform(0, 6, (len(table), 2)), rng.uniform(-2, 2, (len(table), 2, 2))
    out = []
    for n_threads in (1, 2):
        with threads(n_threads):
            r = refine_local(prob.images, prob.volume, prob.grid, prob.rotations[t], g, d,
                             levels=1)
        out.append(r)
    for name in ("rotation", "angle", "shift", "score", "candidate"):
        assert np.array_equal(getattr(out[0], name), getattr(out[1], name)), name


def test_contrast_auto_finds_inverted_particles_and_warns_on_a_wrong_flag(clean):
    from radsvd.images.contrast import choose_contrast

    prob, _, _ = clean
    given = prob.images.copy()
    used, ev = choose_contrast(prob, "auto", rank=6)
    assert not used and ev.given > ev.inverted and np.array_equal(prob.images, given)
    prob.images *= -1                          # particles with the opposite contrast
    try:
        used, ev = choose_contrast(prob, "auto", rank=6)
        assert used and ev.inverted > ev.given
        assert np.array_equal(prob.images, given)           # flipped back to the truth
        prob.images *= -1
        with pytest.warns(UserWarning, match="--no-invert disagrees"):
            used, _ = choose_contrast(prob, False, rank=6)
        assert not used
    finally:
        prob.images[:] = given


def test_cli_refine_and_contrast_log(clean, tmp_path, capsys):
    from radsvd.cli import main
    from radsvd.data.star import read_star

    _, table, paths = clean
    out = tmp_path / "r.star"
    assert main(["align-particles", str(paths["star"]), str(paths["map"]), "--K", str(K),
                 "--max-shift", str(4 * P), "--ignore-origins", "--no-fix-edges", "--refine",
                 "--n", "4", "--out", str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "contrast: as given" in err and "inverted)" in err
    est = read_star(out)
    ang = angular_errors(est.rot, est.tilt, est.psi, table.rot[:4], table.tilt[:4],
                         table.psi[:4])
    assert np.median(ang) <= 0.5
    assert main(["align-particles", str(paths["star"]), str(paths["map"]), "--refine-levels",
                 "0", "--out", str(out)]) == 2


def test_cli_likelihoods(clean, tmp_path):
    """--likelihoods writes (N_particles, N_templates) arrays whose maximum picks the search's
    best template (ℓ is increasing in the landscape value); bad options are refused."""
    from radsvd.cli import main

    _, _, paths = clean
    out, lik = tmp_path / "p.star", tmp_path / "lik.npz"
    args = ["align-particles", str(paths["star"]), str(paths["map"]), "--K", str(K),
            "--max-shift", str(2 * P), "--ignore-origins", "--no-fix-edges", "--n", "3",
            "--out", str(out), "--no-progress", "--likelihoods", str(lik)]
    assert main(args + ["--noise-sigma", "-1"]) == 2
    assert main(args + ["--noise-sigma", "0.5"]) == 0
    z, poses = np.load(lik), np.load(out.with_suffix(".npz"))
    assert z["maximum"].shape == z["integrated"].shape == (3, len(poses["template_rotations"]))
    assert np.array_equal(np.argmax(z["maximum"], axis=1), poses["best_target"])
    assert np.all(z["integrated"] <= z["maximum"])
    assert main(args[:-1] + [str(out.with_suffix(".npz")), "--noise-sigma", "1"]) == 2
