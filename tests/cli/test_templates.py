"""``radsvd templates``: closed-form projections of a Gaussian map, and the round trip
templates → align-images → RELION poses through the templates' STAR file."""

import numpy as np
import pytest

from radsvd.cli import main
from radsvd.data import read_mrc, read_star, write_mrc
from radsvd.data.molecules import GaussianMolecule
from radsvd.data.poses import angular_errors, compose_poses
from radsvd.data.rotations import euler_to_rotation
from radsvd.data.viewing import directions_from_star, shell_directions
from radsvd.grids import PolarGrid

N, K, VOXEL = 48, 12.0, 3.0


@pytest.fixture(scope="module")
def mol():
    """Atoms of σ = 0.12 within radius 0.35 of the centre: band-limited at a 32-pixel box
    (exp(-(σπ·16)²/2) < 2e-8) and inside the box (exp(-0.65²/(2σ²)) < 5e-7 at its edge)."""
    rng = np.random.default_rng(7)
    c = rng.normal(size=(12, 3))
    c *= 0.35 * rng.random((12, 1)) ** (1 / 3) / np.linalg.norm(c, axis=1, keepdims=True)
    return GaussianMolecule(c, np.full(12, 0.12), rng.uniform(0.5, 1.5, 12))


@pytest.fixture(scope="module")
def made(mol, tmp_path_factory):
    d = tmp_path_factory.mktemp("templates")
    write_mrc(d / "map.mrc", mol.volume(N), VOXEL)
    assert main(["templates", str(d / "map.mrc"), "--K", str(K), "--out",
                 str(d / "t.mrcs"), "--no-progress"]) == 0
    return d


@pytest.mark.parametrize("box", [None, 32])
def test_templates_are_the_projections_at_the_star_poses(mol, made, box, tmp_path):
    out = made / "t.mrcs" if box is None else tmp_path / "t32.mrcs"
    if box is not None:
        assert main(["templates", str(made / "map.mrc"), "--K", str(K), "--box", str(box),
                     "--out", str(out), "--no-progress"]) == 0
    n_box = box or N
    imgs, pixel = read_mrc(out, dtype=np.float64)
    table = read_star(out.with_suffix(".star"), require_ctf=False)
    assert len(imgs) == len(table) == len(shell_directions(K))
    assert pixel == pytest.approx(VOXEL * N / n_box) and table.pixel_size[0] == pytest.approx(pixel)
    assert list(table.image_name[:2]) == [f"000001@{out.name}", f"000002@{out.name}"]
    R = directions_from_star(out.with_suffix(".star"))
    np.testing.assert_allclose(R, shell_directions(K).rotations(), atol=1e-8)
    for i in (0, len(R) // 2, len(R) - 1):
        ref = mol.projection(n_box, R[i])
        # band limit and box edge < 1e-6 (fixture), NUFFT 1e-7, float32 storage 6e-8
        np.testing.assert_allclose(imgs[i], ref, rtol=0, atol=2e-6 * ref.max())


def test_align_images_results_map_back_to_poses(mol, made, tmp_path):
    """Images are the closed-form projections at template poses turned by on-grid in-plane
    angles: align-images must find those templates and angles, and the STAR's angles turn
    them into the true RELION poses (docs/poses.md)."""
    rng = np.random.default_rng(1)
    R_t = shell_directions(K).rotations()
    Q = PolarGrid(K=K).Q
    t = rng.choice(len(R_t), 5, replace=False)
    gamma = 2 * np.pi * rng.integers(0, Q, 5) / Q
    c, s = np.cos(-gamma), np.sin(-gamma)
    Rz = np.zeros((5, 3, 3))
    Rz[:, 0, 0], Rz[:, 0, 1], Rz[:, 1, 0], Rz[:, 1, 1], Rz[:, 2, 2] = c, -s, s, c, 1
    R_true = R_t[t] @ Rz
    write_mrc(tmp_path / "imgs.mrcs", np.array([mol.projection(N, R) for R in R_true]), VOXEL)
    out = tmp_path / "r.npz"
    assert main(["align-images", str(tmp_path / "imgs.mrcs"), str(made / "t.mrcs"), "--K",
                 str(K), "--normalize-targets", "--no-progress", "--out", str(out)]) == 0
    r = np.load(out)
    assert np.array_equal(r["best_target"], t)
    poses = compose_poses(directions_from_star(made / "t.star"), r["best_target"], r["angle"])
    from radsvd.data.rotations import rotation_to_euler

    rot, tilt, psi = rotation_to_euler(R_true)
    err = angular_errors(poses.rot, poses.tilt, poses.psi, rot, tilt, psi)
    assert err.max() < 1e-5    # on-grid truth: exact; arccos(1 - 1e-15) is 3e-6 degrees
    assert np.allclose(euler_to_rotation(poses.rot, poses.tilt, poses.psi), R_true, atol=1e-8)


def test_templates_refuses_bad_input(made, tmp_path, capsys):
    m = str(made / "map.mrc")
    for args, msg in ((["--K", "100"], "Nyquist"), (["--K", "8", "--box", "64"], "--box"),
                      (["--K", "8", "--box", "4"], "--box")):
        assert main(["templates", m, *args, "--out", str(tmp_path / "x.mrcs")]) == 2
        assert msg in capsys.readouterr().err
    assert main(["templates", m, "--K", "8", "--out", str(tmp_path / "x.mrc")]) == 2
    assert ".mrcs" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
