"""Bad input gets clear errors; the align-volumes command end to end."""

import numpy as np
import pytest

from radsvd import InputError
from radsvd.cli import main
from radsvd.data.mrc import write_mrc
from radsvd.data.molecules import GaussianMolecule
from radsvd.volumes import (ShellGrid, align_volume_maps, landscapes, prepare, rotation_matrix,
                            to_shells, volume_svd)


@pytest.fixture(scope="module")
def small():
    grid = ShellGrid(K=4, R=4, L=4)
    rng = np.random.default_rng(0)
    vol = rng.standard_normal((2, 12, 12, 12))
    return grid, to_shells(vol, grid), vol


def test_non_cubic_and_nan_volumes(small):
    grid, _, vol = small
    with pytest.raises(InputError, match="cubic"):
        to_shells(np.zeros((12, 12, 10)), grid)
    bad = vol.copy()
    bad[1, 3, 4, 5] = np.nan
    with pytest.raises(InputError, match="NaN"):
        to_shells(bad, grid)
    with pytest.raises(InputError, match="NaN"):
        align_volume_maps(bad, vol[0], K=4)


def test_empty_maps_bad_voxel_sizes_and_nyquist(small):
    # boxes and voxel sizes may differ (tests/volumes/test_vol_fit.py); these may not
    _, _, vol = small
    with pytest.raises(InputError, match="no energy"):
        align_volume_maps(np.zeros((1, 14, 14, 14)), vol[0], K=4)
    with pytest.raises(InputError, match="voxel size"):
        align_volume_maps(vol, vol[0], K=4, voxel_sizes=(1.2, [1.2, -1.3]))
    with pytest.raises(InputError, match="Nyquist"):
        align_volume_maps(vol, vol[0], K=30)
    with pytest.raises(InputError, match="Nyquist"):      # a coarser map limits K
        align_volume_maps(vol, vol[0], K=15, voxel_sizes=(1.0, [2.0, 2.0]))


def test_ranks_out_of_range(small):
    grid, c, vol = small
    basis = volume_svd(c[0], grid)
    for ranks in [(0, 2), (grid.R + 1, 2), (2, grid.L + 2), (2, 0)]:
        with pytest.raises(InputError, match="out of range"):
            prepare(grid, c[0], basis, rank=ranks)
    for bad in ("three", (1, 2, 3), True):
        with pytest.raises(InputError, match="rank must be"):
            prepare(grid, c[0], basis, rank=bad)
    with pytest.raises(InputError, match="basis"):
        prepare(grid, c[0], None, rank=(2, 2))
    with pytest.raises(InputError, match="out of range"):
        align_volume_maps(vol, vol[0], K=4, rank=0)
    with pytest.raises(InputError, match="rank"):
        align_volume_maps(vol, vol[0], K=4, rank="six")


def test_bad_coefficients_and_grid_parameters(small):
    grid, c, _ = small
    with pytest.raises(InputError, match="shape"):
        landscapes(c[:, :, :-1], c[0], grid)
    with pytest.raises(InputError, match="single target"):
        prepare(grid, c)
    bad = c.copy()
    bad[0, 0, 0] = np.inf
    with pytest.raises(InputError, match="NaN or inf"):
        landscapes(bad, c[0], grid)
    with pytest.raises(InputError, match="M must be"):
        prepare(grid, c[0], M=2 * grid.L)
    with pytest.raises(InputError, match="n_beta"):
        prepare(grid, c[0], n_beta=0)
    with pytest.raises(InputError, match="L must be"):
        ShellGrid(K=4, L=0)


def _maps(tmp_path, N=24):
    rng = np.random.default_rng(3)
    mol = GaussianMolecule(centers=rng.uniform(-0.35, 0.35, (10, 3)),
                           sigmas=rng.uniform(0.07, 0.1, 10), weights=rng.uniform(0.5, 1.5, 10))
    R = rotation_matrix([0.4, 1.1, -2.0])
    paths = [tmp_path / "target.mrc", tmp_path / "v1.mrc", tmp_path / "v2.mrc"]
    write_mrc(paths[0], mol.volume(N), voxel_size=2.0)
    write_mrc(paths[1], mol.rotated(R).volume(N), voxel_size=2.0)
    write_mrc(paths[2], mol.volume(N), voxel_size=2.0)
    return paths, R


def test_cli_align_volumes(tmp_path, capsys):
    (tgt, v1, v2), R = _maps(tmp_path)
    out = tmp_path / "res.npz"
    rc = main(["align-volumes", str(tgt), str(v1), str(v2), "--rank", "4", "--K", "8",
               "--refine", "--no-progress", "--out", str(out)])
    assert rc == 0
    d = np.load(out)
    assert d["euler"].shape == (2, 3) and d["score"].shape == (2,)
    # euler is the rotation that carries each VOLUME onto the target: Rᵀ for v1, I for v2
    np.testing.assert_allclose(rotation_matrix(d["euler"][0]), R.T, atol=1e-3)
    np.testing.assert_allclose(d["matrix"][1], np.eye(3), atol=1e-3)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert "ZYZ" in str(d["info_convention"]) and "R = Rz(alpha)" in str(d["info_convention"])
    err = capsys.readouterr().err
    assert f"aligned 2 volumes to {tgt}" in err and f"-> {out}" in err
    # auto: single for a compressed search, double when rank 4 fell back to full
    compressed = str(d["info_rank_used"]) != "full"
    assert str(d["info_precision"]) == ("single" if compressed else "double")
    assert main(["align-volumes", str(tgt), str(v1), "--rank", "4", "--K", "8", "--precision",
                 "double", "--no-progress", "--out", str(out), "--force"]) == 0
    assert str(np.load(out)["info_precision"]) == "double"


def test_cli_errors(tmp_path, capsys):
    (tgt, v1, _), _ = _maps(tmp_path)
    write_mrc(tmp_path / "odd.mrc", np.zeros((20, 20, 20), np.float32), voxel_size=2.0)
    write_mrc(tmp_path / "px.mrc", np.ones((24, 24, 24), np.float32), voxel_size=1.0)
    out = str(tmp_path / "r.npz")
    # other boxes and voxel sizes are fine (test_vol_fit.py); an empty map is not
    assert main(["align-volumes", str(tgt), str(tmp_path / "odd.mrc"), "--out", out,
                 "--K", "8"]) == 2
    assert "odd.mrc: every value of the map is 0" in capsys.readouterr().err
    assert main(["align-volumes", str(tgt), str(v1), "--out", out, "--K", "8",
                 "--voxel-size", "1,2,3"]) == 2
    assert "--voxel-size" in capsys.readouterr().err
    assert main(["align-volumes", str(tgt), str(v1), str(v1), "--out-map",
                 str(tmp_path / "a.mrc"), "--K", "8"]) == 2
    assert "{name}" in capsys.readouterr().err
    assert main(["align-volumes", str(tgt), str(v1), "--K", "8"]) == 2
    assert "--out" in capsys.readouterr().err
    assert main(["align-volumes", str(tgt), str(v1), "--rank", "x", "--out", out]) == 2
    assert "--rank" in capsys.readouterr().err
    assert main(["align-volumes", str(tgt), str(tmp_path / "missing.mrc"), "--out", out]) == 2
