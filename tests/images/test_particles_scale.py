"""align-particles at scale (issue 21): chunks, checkpoints and resume after SIGKILL, shards
and merge-poses, bad input refused before any work, bad particles skipped."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from radsvd.cli import main
from radsvd.data.mrc import write_mrc
from radsvd.data.star import read_star, write_star
from radsvd.data.molecules import synthetic_molecule
from radsvd.data.simulate import Microscope, simulate_particles, write_particles
from radsvd.images.particles import align_particles

N, P, K = 40, 7.2, 16.0
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """30 noisy particles with CTF (3 micrographs) and origins; particle 4 has a hot pixel,
    so the edge-artefact step draws noise for it."""
    d = tmp_path_factory.mktemp("scale")
    mol = synthetic_molecule("trpv1-like")
    imgs, table = simulate_particles(mol, 30, N, P, snr=1.0, seed=3, max_shift=2 * P,
                                     microscope=Microscope(n_micrographs=3))
    imgs = np.array(imgs, np.float32)
    imgs[4, 5, 7] = 1e4
    paths = write_particles(d, imgs, table, volume=mol.volume(N))
    return d, paths


ARGS = ["--K", str(K), "--max-shift", str(2 * P), "--rank", "4", "--method", "shift-svd",
        "--refine", "--no-progress"]


def _cli(paths, out, *extra):
    return main(["align-particles", str(paths["star"]), str(paths["map"]), *ARGS,
                 "--out", str(out), *extra])


def _body(path) -> list:
    """A STAR file's lines but the writer's creation-time comment."""
    return [line for line in Path(path).read_text().splitlines()
            if not line.startswith("# Created by")]


def _same_npz(a, b):
    za, zb = np.load(a), np.load(b)
    assert sorted(za.files) == sorted(zb.files)
    for k in za.files:
        assert np.array_equal(za[k], zb[k]), k


def test_same_poses_for_any_chunk_size(sim):
    """Chunks of 30 (one), 7 and 1 particle(s) give identical arrays (bit for bit)."""
    d, paths = sim
    runs = [align_particles(paths["star"], paths["map"], K=K, rank=4, method="shift-svd",
                            max_shift_A=2 * P, refine=True, chunk=c) for c in (30, 7, 1)]
    for r in runs[1:]:
        for key in ("best_target", "angle", "score", "shift", "ctf_group", "rows"):
            assert np.array_equal(getattr(r, key), getattr(runs[0], key)), key
        assert r.poses.equals(runs[0].poses)
    assert runs[0].info["n_ctf_groups"] >= 2 and len(runs[0].rows) == 30


def test_shards_and_merge_equal_the_unsharded_run(sim, tmp_path, capsys):
    d, paths = sim
    assert _cli(paths, tmp_path / "all.star", "--chunk", "8") == 0
    assert not (tmp_path / "all.star.checkpoint").exists()
    shards = []
    for i in (1, 2, 3, 4):
        shards.append(tmp_path / f"s{i}.star")
        assert _cli(paths, shards[-1], "--shard", f"{i}/4", "--chunk", "3") == 0
        assert len(read_star(shards[-1])) in (7, 8)
    assert main(["merge-poses", *map(str, shards[::-1]), "--out",
                 str(tmp_path / "merged.star")]) == 0
    assert _body(tmp_path / "merged.star") == _body(tmp_path / "all.star")
    _same_npz(tmp_path / "merged.npz", tmp_path / "all.npz")
    capsys.readouterr()
    # missing, repeated, mismatched
    assert main(["merge-poses", *map(str, shards[:3]), "--out", str(tmp_path / "m.star")]) == 2
    assert "missing shard(s) 4/4" in capsys.readouterr().err
    assert main(["merge-poses", *map(str, shards), str(shards[0]),
                 "--out", str(tmp_path / "m.star")]) == 2
    assert "shard 1/4 given twice" in capsys.readouterr().err
    assert _cli(paths, tmp_path / "k.star", "--shard", "4/4", "--K", "14") == 0
    assert main(["merge-poses", *map(str, shards[:3]), str(tmp_path / "k.star"),
                 "--out", str(tmp_path / "m.star")]) == 2
    assert "--K (16.0 then, 14.0 now)" in capsys.readouterr().err
    assert _cli(paths, tmp_path / "t.star", "--shard", "2/3") == 0
    assert main(["merge-poses", *map(str, shards[:3]), str(tmp_path / "t.star"),
                 "--out", str(tmp_path / "m.star")]) == 2
    assert "different splits" in capsys.readouterr().err
    assert not (tmp_path / "m.star").exists()


def _run_cli(paths, out, *extra):
    """align-particles in a process of its own, on one thread (the templates' NUFFT does not
    yet give the same bits for any thread count: issue 27, engine)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), RADSVD_TRACEBACK="0")
    cmd = [sys.executable, "-m", "radsvd", "--threads", "1", "align-particles",
           str(paths["star"]), str(paths["map"]), *ARGS, "--out", str(out), *extra]
    return subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)


def test_resume_after_sigkill_writes_the_same_output(sim, tmp_path):
    """SIGKILL after the first checkpointed chunks; the rerun continues there and writes the
    STAR of an uninterrupted run, then removes the checkpoint."""
    d, paths = sim
    whole = _run_cli(paths, tmp_path / "whole.star", "--chunk", "30")
    assert whole.wait() == 0, whole.stderr.read()
    out = tmp_path / "poses.star"
    ckpt = tmp_path / "poses.star.checkpoint"
    proc = _run_cli(paths, out, "--chunk", "2")
    deadline = time.time() + 120
    while time.time() < deadline and len(list(ckpt.glob("chunk-*.npz"))) < 2:
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = sorted(ckpt.glob("chunk-*.npz"))
    assert 2 <= len(done) < 15 and not out.exists()
    proc = _run_cli(paths, out, "--chunk", "4")          # another chunk size: same result
    err = proc.communicate()[1]
    assert proc.returncode == 0, err
    assert "resuming from the checkpoint" in err and "from the checkpoint" in err.splitlines()[-1]
    assert _body(out) == _body(tmp_path / "whole.star")
    _same_npz(tmp_path / "poses.npz", tmp_path / "whole.npz")
    assert not ckpt.exists()


def test_checkpoint_of_other_options_is_refused(sim, tmp_path, capsys):
    d, paths = sim
    out = tmp_path / "p.star"
    proc = _run_cli(paths, out, "--chunk", "1")
    ckpt = tmp_path / "p.star.checkpoint"
    deadline = time.time() + 120
    while time.time() < deadline and not list(ckpt.glob("chunk-*.npz")):
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    capsys.readouterr()
    assert _cli(paths, out, "--rank", "full") == 2
    err = capsys.readouterr().err
    assert "made from other inputs or options: --rank (4 then, full now)" in err
    assert "--restart" in err and not out.exists()
    assert _cli(paths, out, "--rank", "full", "--restart") == 0
    assert not ckpt.exists() and len(read_star(out)) == 30


def test_full_disk_while_checkpointing_leaves_no_partial_file(sim, tmp_path, monkeypatch,
                                                              capsys):
    """The disk fills while the third chunk is written: the error says so, the folder holds
    the manifest and the two finished chunks only, and the rerun completes the same STAR."""
    import errno

    import radsvd._files as files

    d, paths = sim
    out = tmp_path / "p.star"
    real, calls = np.savez, []

    def savez_filling_the_disk(f, **arrays):
        calls.append(1)
        if len(calls) == 3:
            f.write(b"PK\x03\x04 half a chunk")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(f, **arrays)

    monkeypatch.setattr(files.np, "savez", savez_filling_the_disk)
    assert _cli(paths, out, "--chunk", "4") == 1
    assert "No space left on device" in capsys.readouterr().err
    monkeypatch.setattr(files.np, "savez", real)
    names = sorted(p.name for p in (tmp_path / "p.star.checkpoint").iterdir())
    assert names == ["chunk-000000000000-000000000004.npz",
                     "chunk-000000000004-000000000008.npz", "decision-contrast.json",
                     "manifest.json"]
    assert _cli(paths, out, "--chunk", "4") == 0
    assert _cli(paths, tmp_path / "ref.star", "--chunk", "30") == 0
    assert _body(out) == _body(tmp_path / "ref.star")


@pytest.mark.filterwarnings("ignore:Data array contains NaN")
def test_bad_particle_is_skipped_or_refused_with_strict(sim, tmp_path, capsys):
    """A blank and a NaN particle: reported with their STAR row and image name, left out of
    the output and counted; --strict makes the first an error."""
    d, paths = sim
    imgs = _stack(paths["stack"]).copy()
    imgs[2] = 0.5
    imgs[5, 3, 3] = np.nan
    table = read_star(paths["star"])
    write_mrc(tmp_path / "particles.mrcs", imgs, voxel_size=P, stack=True)
    write_star(tmp_path / "particles.star", table)
    bad = dict(star=tmp_path / "particles.star", map=paths["map"])
    assert _cli(bad, tmp_path / "o.star") == 0
    err = capsys.readouterr().err
    assert "particle row 3 (000003@particles.mrcs) has a blank (constant) image: skipped" in err
    assert "particle row 6 (000006@particles.mrcs) has NaN or inf pixels: skipped" in err
    assert "2 skipped" in err
    out = read_star(tmp_path / "o.star")
    assert len(out) == 28 and "000003@particles.mrcs" not in set(out.image_name)
    assert _cli(bad, tmp_path / "s.star", "--strict") == 2
    assert "particle row 3 (000003@particles.mrcs) has a blank" in capsys.readouterr().err
    assert not (tmp_path / "s.star").exists()


def _stack(path):
    from radsvd.data.mrc import read_stack

    return read_stack(path)


def _copy_set(paths, tmp_path, table_edit=None, stack_edit=None):
    table = read_star(paths["star"])
    imgs = _stack(paths["stack"])
    if stack_edit is not None:
        imgs = stack_edit(imgs)
    if table_edit is not None:
        table = table_edit(table)
    write_mrc(tmp_path / "particles.mrcs", imgs, voxel_size=P, stack=True)
    write_star(tmp_path / "particles.star", table)
    return dict(star=tmp_path / "particles.star", map=paths["map"])


def _two_stacks(table):
    table = table.copy()
    table.loc[10:, "image_name"] = [f"{i:06d}@other.mrcs" for i in range(1, 21)]
    table.loc[10:, "image_path"] = "other.mrcs"
    return table


@pytest.mark.parametrize("case, match", [
    ("missing", "1 of 2 image stack(s) are missing under"),
    ("empty", "holds no particles"),
    ("index", "particle row 30 (000031@particles.mrcs) asks for image 31 of"),
    ("boxes", "the particles' boxes differ (optics group 1: 40 px; optics group 2: 32 px)"),
    ("shard", "--shard 3/2 is out of range"),
    ("shards", "31 shards of 30 particle(s)"),
])
def test_bad_input_is_refused_before_any_work(sim, tmp_path, capsys, case, match):
    d, paths = sim
    extra = []
    if case == "missing":
        bad = _copy_set(paths, tmp_path, _two_stacks)
    elif case == "empty":
        bad = _copy_set(paths, tmp_path, lambda t: t.iloc[:0])
    elif case == "index":
        bad = _copy_set(paths, tmp_path, lambda t: t.assign(
            image_name=[f"{i + (i == 30):06d}@particles.mrcs" for i in range(1, 31)]))
    elif case == "boxes":
        def edit(t):
            t = _two_stacks(t).assign(optics_group=[1] * 10 + [2] * 20)
            return t.assign(pixel_size=P)
        bad = _copy_set(paths, tmp_path, edit)
        write_mrc(tmp_path / "other.mrcs", _stack(paths["stack"])[:20, 4:36, 4:36],
                  voxel_size=P, stack=True)
    else:
        bad = paths
        extra = ["--shard", "3/2" if case == "shard" else "31/31"]
    out = tmp_path / "o.star"
    t0 = time.perf_counter()
    code = _cli(bad, out, *extra)
    err = capsys.readouterr().err
    assert code == 2, err
    assert match in err and "Traceback" not in err
    assert time.perf_counter() - t0 < 5
    assert not out.exists() and not (tmp_path / "o.star.checkpoint").exists()


def test_progress_prints_plain_lines_when_stderr_is_not_a_terminal(capsys):
    """Batch logs get periodic lines with the count, rate and ETA (interval 0: every update)."""
    from radsvd.images.particles import Progress

    with Progress(100, initial=20, interval=0.0) as bar:
        bar.update(30)
        bar.update(50)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and lines[0].startswith("align-particles: 50/100 particles (50%), ")
    assert "particles/s, ETA " in lines[0] and lines[1].startswith("align-particles: 100/100")
    with Progress(10, enabled=False, interval=0.0) as bar:
        bar.update(10)
    assert capsys.readouterr().err == ""


def test_ctf_groups_from_distinct_ctfs_equal_the_groups_of_all_rows(sim):
    """The O(distinct CTFs) grouping gives the labels and sizes of the clustering of every
    row (repeated rows in another order included) and its group means to rounding."""
    from radsvd.grids import PolarGrid
    from radsvd.images.methods import ctf_groups
    from radsvd.images.particles import _ctf_groups, load_particle_table

    d, paths = sim
    t = load_particle_table(paths["star"])
    t = t.iloc[np.r_[np.arange(30), np.arange(30)[::-1], np.arange(7)]]
    grid = PolarGrid(K=K)
    for tol in (0.01, 0.05, 0.3):
        ref = ctf_groups(t, grid, N, tol)
        labels, rings, counts = _ctf_groups(t, grid, N, tol, block=4)
        assert np.array_equal(labels, ref.labels) and np.array_equal(counts, ref.counts)
        assert np.allclose(rings, ref.rings, rtol=0, atol=1e-14)
