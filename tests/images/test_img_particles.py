"""align-particles: round trip on simulated particles with known poses and origins, the pose
composition, the STAR written and read back, and bad input."""

import numpy as np
import pytest

from radsvd.cli import main
from radsvd.data.mrc import write_mrc
from radsvd.data.star import read_star, write_star
from radsvd.data.molecules import synthetic_molecule
from radsvd.data.poses import angular_errors, compose_poses
from radsvd.data.rotations import euler_to_rotation, random_rotations
from radsvd.data.simulate import Microscope, simulate_particles, write_particles

N, P, K = 48, 6.4, 24.0


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    d = tmp_path_factory.mktemp("particles")
    mol = synthetic_molecule("trpv1-like")
    imgs, table = simulate_particles(mol, 24, N, P, snr=None, seed=1, max_shift=3 * P,
                                     microscope=Microscope(n_micrographs=2))
    paths = write_particles(d, imgs, table, volume=mol.volume(N))
    return d, paths, table


def _run(d, paths, *extra, out="poses.star"):
    return main(["align-particles", str(paths["star"]), str(paths["map"]), "--K", str(K),
                 "--max-shift", str(4 * P), "--ignore-origins", "--no-fix-edges",
                 "--out", str(d / out), "--no-progress", *extra])


def test_round_trip_recovers_poses_and_origins(sim):
    """Noise-free particles with CTF, random poses and origins: rotations within the shell
    rule's equator spacing 360°/(3 + K), origins within half a grid step (1 px) after the
    off-grid refinement, and rank 6 agrees with the full path."""
    d, paths, truth = sim
    spacing = 360.0 / (3 + K)
    runs = {}
    for name, extra in (("full", ["--rank", "full", "--refine"]),
                        ("rank6", ["--rank", "6", "--refine"]), ("grid", ["--rank", "6"])):
        assert _run(d, paths, *extra, out=f"{name}.star") == 0
        est = read_star(d / f"{name}.star")                      # our own reader
        assert est.attrs["style"] == "3.1" and len(est) == len(truth)
        assert list(est.image_name) == list(read_star(paths["star"]).image_name)
        err = angular_errors(est.rot, est.tilt, est.psi, truth.rot, truth.tilt, truth.psi)
        shift_err = np.abs(est[["shift_x", "shift_y"]].to_numpy()
                           - truth[["shift_x", "shift_y"]].to_numpy()) / P
        runs[name] = (est, err, shift_err)
        assert err.max() <= spacing
    for name in ("full", "rank6"):
        assert runs[name][2].max() <= 0.5
    assert np.median(runs["grid"][2]) <= 0.5
    z = np.load(d / "rank6.npz")
    f = np.load(d / "full.npz")
    assert np.mean(z["best_target"] == f["best_target"]) >= 0.9
    assert int(z["info_rank"]) == 6 and "rlnOriginXAngst" in (d / "rank6.star").read_text()
    assert "rlnRadsvdScore" in (d / "rank6.star").read_text()


def test_origins_in_the_star_are_added(sim, tmp_path):
    """With the STAR's origins used to centre first, the poses keep them: zero search."""
    d, paths, truth = sim
    assert main(["align-particles", str(paths["star"]), str(paths["map"]), "--K", str(K),
                 "--no-fix-edges", "--out", str(tmp_path / "o.star"), "--no-progress"]) == 0
    est = read_star(tmp_path / "o.star")
    assert np.allclose(est.shift_x, truth.shift_x) and np.allclose(est.shift_y, truth.shift_y)


def test_compose_poses_is_the_inverse_of_the_engine_convention():
    """image = R_γ(template at R_t), moved by +δ  ⇔  pose R_t Rz(−γ), origin −δ·p."""
    Rt = random_rotations(5, np.random.default_rng(0))
    gam = np.array([0.1, 1.0, 2.0, 4.0, 6.0])
    delta = np.arange(10.0).reshape(5, 2) - 4
    P_ = compose_poses(Rt, np.arange(5), gam, delta, pixel_size=2.0, origin_x=1.0)
    R = euler_to_rotation(P_.rot, P_.tilt, P_.psi)
    c, s = np.cos(-gam), np.sin(-gam)
    Rz = np.zeros((5, 3, 3))
    Rz[:, 0, 0], Rz[:, 0, 1], Rz[:, 1, 0], Rz[:, 1, 1], Rz[:, 2, 2] = c, -s, s, c, 1
    assert np.allclose(R, Rt @ Rz)
    assert np.allclose(P_.shift_x, 1.0 - 2.0 * delta[:, 0])
    assert np.allclose(P_.shift_y, -2.0 * delta[:, 1])


def test_old_style_star_gets_optics(sim, tmp_path):
    d, paths, truth = sim
    t = read_star(paths["star"])
    t["image_name"] = [f"{i + 1:06d}@{paths['stack']}" for i in range(len(t))]
    old = write_star(tmp_path / "old.star", t, style="1")
    assert main(["align-particles", str(old), str(paths["map"]), "--K", "16", "--n", "4",
                 "--no-fix-edges", "--out", str(tmp_path / "p.star"), "--no-progress"]) == 0
    est = read_star(tmp_path / "p.star")
    assert est.attrs["style"] == "3.1" and len(est) == 4
    assert np.allclose(est.pixel_size, P) and np.allclose(est.voltage, truth.voltage[:4])


@pytest.mark.parametrize("args, match", [
    (["--max-shift", "-1"], "--max-shift"), (["--max-shift", "inf"], "--max-shift"),
    (["--max-shift", "12", "--shift-step", "20"], "larger than"),
    (["--max-shift", "200"], "half the box"), (["--rank", "x"], "rank"),
    (["--method", "pca"], "unknown method")])
def test_bad_options(sim, tmp_path, capsys, args, match):
    d, paths, _ = sim
    rc = main(["align-particles", str(paths["star"]), str(paths["map"]), "--K", "16", "--n", "2",
               "--out", str(tmp_path / "x.star"), "--no-progress", *args])
    assert rc == 2 and match in capsys.readouterr().err
    assert not (tmp_path / "x.star").exists()


def test_bad_star_and_map(sim, tmp_path, capsys):
    d, paths, _ = sim
    t = read_star(paths["star"]).drop(columns=["defocus_u", "defocus_v"])
    t["image_name"] = [f"{i + 1:06d}@{paths['stack']}" for i in range(len(t))]
    noctf = write_star(tmp_path / "noctf.star", t)
    base = ["--K", "16", "--n", "2", "--out", str(tmp_path / "x.star"), "--no-progress",
            "--force"]
    assert main(["align-particles", str(noctf), str(paths["map"]), *base]) == 2
    assert "missing CTF" in capsys.readouterr().err
    assert main(["align-particles", str(noctf), str(paths["map"]), *base, "--no-ctf",
                 "--no-fix-edges"]) == 0
    small = write_mrc(tmp_path / "small.mrc", np.ones((40, 40, 40), np.float32), P)
    assert main(["align-particles", str(paths["star"]), str(small), *base]) == 2
    assert "mismatched box" in capsys.readouterr().err
    wrong_px = write_mrc(tmp_path / "px.mrc", np.ones((48, 48, 48), np.float32), P * 1.5)
    assert main(["align-particles", str(paths["star"]), str(wrong_px), *base]) == 2
    assert "mismatched box" in capsys.readouterr().err
