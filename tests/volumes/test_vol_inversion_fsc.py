"""reconstruct (direct Fourier inversion from posed particles) and fsc: identities, the true
poses of clean simulated particles reaching Nyquist, streaming, and the CLI."""

import numpy as np
import pytest

import radsvd.images.reconstruct as inv
from radsvd.cli import main
from radsvd.data.mrc import read_mrc, write_mrc
from radsvd.data.star import read_star, write_star
from radsvd.data.molecules import synthetic_molecule
from radsvd.data.simulate import Microscope, simulate_particles, write_particles
from radsvd.volumes.fsc import fsc

N, P = 32, 4.0


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """300 clean particles with CTF (5 defocus values) and origins, simulated from the map
    itself (so the map is the truth), with their true poses in the STAR."""
    d = tmp_path_factory.mktemp("inversion")
    vol = synthetic_molecule("trpv1-like").volume(N)
    imgs, table = simulate_particles(vol, 300, N, P, snr=None, seed=11, max_shift=2 * P,
                                     microscope=Microscope(n_micrographs=5))
    return d, write_particles(d, imgs, table, volume=vol), vol


def test_fsc_identities_and_threshold_interpolation():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(16, 16, 16)), rng.normal(size=(16, 16, 16))
    assert np.allclose(fsc(a, a, 2.0).fsc, 1.0) and np.allclose(fsc(a, -a, 2.0).fsc, -1.0)
    c = fsc(a, b, 2.0)
    assert np.abs(c.fsc[2:]).max() < 0.5              # independent noise: ~1/sqrt(voxels)
    assert np.isclose(c.frequency[-1], 1 / 4.0)        # Nyquist shell: 1 / (2 p)
    c.fsc = np.array([1.0, 0.9, 0.7, 0.3, 0.1, 0.0, 0.0, 0.0])
    assert np.isclose(c.resolution(0.5), 1 / (c.frequency[2] + 0.5 * (c.frequency[3]
                                                                      - c.frequency[2])))
    assert c.resolution(0.05) < c.resolution(0.143) < c.resolution(0.5)   # Å: finer lower
    with pytest.raises(ValueError, match="one shape"):
        fsc(a, a[:8, :8, :8], 1.0)


def test_true_poses_reconstruct_to_nyquist_and_streaming_is_exact(sim, monkeypatch):
    """FSC against the map stays above 0.5 up to Nyquist (2p); chunks of 7 particles give
    the same map as chunks of 256 (the sums are linear), to rounding."""
    d, paths, vol = sim
    v, p = inv.reconstruct_star(paths["star"])
    assert p == P
    curve = fsc(v, vol, p)
    assert curve.resolution(0.5) <= 1.05 * 2 * P
    assert curve.fsc[:-1].min() > 0.9
    monkeypatch.setattr(inv, "CHUNK", 7)
    v7, _ = inv.reconstruct_star(paths["star"])
    assert np.abs(v7 - v).max() <= 1e-9 * np.abs(v).max()


def test_wrong_poses_lose_resolution(sim, tmp_path):
    """Poses off by a few degrees (N(0, 4°) on each Euler angle) cost resolution: a check
    that can fail."""
    d, paths, vol = sim
    t = read_star(paths["star"])
    rng = np.random.default_rng(1)
    for c in ("rot", "tilt", "psi"):
        t[c] = t[c] + rng.normal(0, 4.0, len(t))
    t.attrs["path"] = str(paths["star"])
    bad = d / "bad.star"
    write_star(bad, t)
    v, p = inv.reconstruct_star(bad)
    good, _ = inv.reconstruct_star(paths["star"])
    outer = slice(N // 4, None)
    assert fsc(v, vol, p).fsc[outer].mean() < fsc(good, vol, p).fsc[outer].mean() - 0.05


def test_cli_reconstruct_and_fsc(sim, tmp_path, capsys):
    d, paths, vol = sim
    out = tmp_path / "rec.mrc"
    assert main(["reconstruct", str(paths["star"]), "--out", str(out), "--n", "40",
                 "--no-progress"]) == 0
    v, p = read_mrc(out)
    assert v.shape == (N, N, N) and p == P
    write_mrc(tmp_path / "same.mrc", v.astype(np.float32), voxel_size=P)
    assert main(["fsc", str(out), str(tmp_path / "same.mrc"), "--plot", str(tmp_path / "f.png"),
                 "--csv", str(tmp_path / "f.csv")]) == 0
    text = capsys.readouterr().out
    assert "FSC 0.5: 8.00 Å" in text and "FSC 0.143: 8.00 Å" in text
    assert (tmp_path / "f.png").stat().st_size > 0
    rows = (tmp_path / "f.csv").read_text().splitlines()
    assert rows[0].startswith("frequency_per_A") and len(rows) == 1 + N // 2
    write_mrc(tmp_path / "small.mrc", np.zeros((8, 8, 8), np.float32), voxel_size=P)
    assert main(["fsc", str(out), str(tmp_path / "small.mrc")]) == 2
    assert main(["reconstruct", str(paths["star"]), "--out", str(tmp_path / "x.txt")]) == 2
