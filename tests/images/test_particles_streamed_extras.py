"""Issue 22's extras on the streamed align-particles of issue 21: log-likelihoods streamed
per chunk (same arrays for any chunk size, shard and resume), the contrast check made once
on the whole STAR (the same choice in every shard, recorded in the checkpoint)."""

import json

import numpy as np
import pytest

from radsvd.cli import main
from radsvd.data.molecules import synthetic_molecule
from radsvd.data.simulate import Microscope, simulate_particles, write_particles
from radsvd.images.particles import align_particles

N, P, K = 32, 8.0, 12.0
OPTS = dict(K=K, rank=4, max_shift_A=P, precision="double")


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """20 noisy particles with CTF and shifts, and the same particles inverted."""
    d = tmp_path_factory.mktemp("extras")
    mol = synthetic_molecule("trpv1-like")
    imgs, table = simulate_particles(mol, 20, N, P, snr=1.0, seed=5, max_shift=P,
                                     microscope=Microscope(n_micrographs=2))
    given = write_particles(d / "given", imgs, table, volume=mol.volume(N))
    inverted = write_particles(d / "inverted", -imgs, table, volume=mol.volume(N))
    return given, inverted


def test_likelihoods_streamed_are_the_same_for_any_chunk_and_shard(sim, tmp_path):
    """One chunk, chunks of 3 and two shards give the same (N, T) arrays bit for bit; the
    best template by maximum likelihood is the search's (ℓ increases with X > 0)."""
    paths, _ = sim
    one = align_particles(paths["star"], paths["map"], **OPTS, chunk=20,
                          likelihoods=tmp_path / "one.npz")
    align_particles(paths["star"], paths["map"], **OPTS, chunk=3,
                    likelihoods=tmp_path / "three.npz", checkpoint=tmp_path / "ck")
    shards = [align_particles(paths["star"], paths["map"], **OPTS, chunk=4, shard=(i, 2),
                              likelihoods=tmp_path / f"s{i}.npz") for i in (1, 2)]
    a, b = np.load(tmp_path / "one.npz"), np.load(tmp_path / "three.npz")
    T = len(one.template_rotations)
    assert a["maximum"].shape == a["integrated"].shape == (20, T)
    for key in ("maximum", "integrated", "sigma", "rows"):
        assert np.array_equal(a[key], b[key]), key
        joined = np.concatenate([np.load(tmp_path / f"s{i}.npz")[key] for i in (1, 2)])
        assert np.array_equal(a[key], joined), key
    assert np.array_equal(a["rows"], one.rows)
    assert np.array_equal(np.argmax(a["maximum"], axis=1), one.best_target)
    assert np.all(a["integrated"] <= a["maximum"])
    assert len(shards[0].rows) + len(shards[1].rows) == 20
    assert not list(tmp_path.glob(".radsvd-likelihoods-*"))   # scratch folders removed


def test_contrast_checked_once_on_the_whole_star(sim, tmp_path):
    """Inverted particles are found inverted by every shard from the same evidence (the
    subsample of the whole STAR), and the poses equal those of the particles as given (the
    preprocessing without the edge step is odd in the image: no noise is drawn)."""
    given, inverted = sim
    ref = align_particles(given["star"], given["map"], **OPTS, fix_edges=False)
    assert ref.info["invert"] is False and ref.info["contrast_sample"] == 20
    shards = [align_particles(inverted["star"], inverted["map"], **OPTS, shard=(i, 3),
                              fix_edges=False) for i in (1, 2, 3)]
    for s in shards:
        assert s.info["invert"] is True
        for key in ("contrast_given", "contrast_inverted"):
            assert s.info[key] == shards[0].info[key]
    # the check's GEMMs are single precision (eps 6e-8) and the inverted copies sit in the
    # other half of its batch, so the two agree to float32 rounding, not bit for bit
    assert shards[0].info["contrast_inverted"] == pytest.approx(ref.info["contrast_given"],
                                                                rel=1e-6)
    assert np.array_equal(np.concatenate([s.best_target for s in shards]), ref.best_target)
    with pytest.warns(UserWarning, match="--no-invert disagrees"):
        forced = align_particles(inverted["star"], inverted["map"], **OPTS, invert=False)
    assert forced.info["invert"] is False


def test_resume_follows_the_recorded_contrast_and_likelihoods(sim, tmp_path, monkeypatch):
    """A run stopped after its first chunks resumes with the contrast recorded in the
    checkpoint (the check is not repeated) and the chunks' likelihoods, and writes what an
    uninterrupted run writes."""
    import radsvd.images.particles as particles

    _, paths = sim
    whole = tmp_path / "whole.npz"
    align_particles(paths["star"], paths["map"], **OPTS, chunk=20, likelihoods=whole)
    ck = tmp_path / "ck"
    calls = []

    def stop(prob, search, rows, images, results):
        calls.append(len(rows))
        if len(calls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        align_particles(paths["star"], paths["map"], **OPTS, chunk=5, checkpoint=ck,
                        likelihoods=tmp_path / "lik.npz", post_chunk=stop)
    decision = json.loads((ck / "decision-contrast.json").read_text())
    assert decision["invert"] is True and decision["n"] == 20
    assert len(list(ck.glob("likelihoods-*.npz"))) == len(list(ck.glob("chunk-*.npz"))) == 1
    assert not (tmp_path / "lik.npz").exists()

    def no_check(*args, **kwargs):
        raise AssertionError("the contrast check ran again on resume")

    monkeypatch.setattr(particles, "check_contrast", no_check)
    res = align_particles(paths["star"], paths["map"], **OPTS, chunk=7, checkpoint=ck,
                          likelihoods=tmp_path / "lik.npz")
    assert res.run["resumed_at"] == 5 and res.info["invert"] is True
    a, b = np.load(whole), np.load(tmp_path / "lik.npz")
    for key in ("maximum", "integrated", "sigma", "rows"):
        assert np.array_equal(a[key], b[key]), key


def test_cli_likelihoods_with_shard_and_bad_options(sim, tmp_path, capsys):
    paths, _ = sim
    base = ["align-particles", str(paths["star"]), str(paths["map"]), "--K", str(K),
            "--rank", "4", "--max-shift", str(P), "--no-progress"]
    out = tmp_path / "s.star"
    assert main(base + ["--out", str(out), "--shard", "2/2", "--likelihoods",
                        str(tmp_path / "l2.npz")]) == 0
    err = capsys.readouterr().err
    assert "contrast: as given" in err and "log-likelihoods (10," in err
    z = np.load(tmp_path / "l2.npz")
    assert np.array_equal(z["rows"], np.arange(10, 20))
    assert not (tmp_path / "s.star.checkpoint").exists()
    for bad in (["--likelihoods", str(tmp_path / "l.txt")],
                ["--likelihoods", str(out.with_suffix(".npz"))],
                ["--likelihoods", str(tmp_path / "l.npz"), "--noise-sigma", "0"],
                ["--refine", "--refine-candidates", "0"]):
        assert main(base + ["--out", str(out), *bad]) == 2, bad
