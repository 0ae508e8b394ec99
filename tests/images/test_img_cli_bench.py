import json

import mrcfile
import numpy as np
import pytest

import img_helpers as hb
from radsvd import PolarGrid
from radsvd.cli import main


def write_mrc(path, data):
    with mrcfile.new(str(path), overwrite=True) as m:
        m.set_data(np.asarray(data, dtype=np.float32))
        m.set_image_stack()


@pytest.fixture(scope="module")
def stacks(tmp_path_factory):
    d = tmp_path_factory.mktemp("mrc")
    rng = np.random.default_rng(9)
    N = 32
    blobs = [hb.random_blobs(rng, 4, rmax=0.45) for _ in range(3)]
    gam = np.array([1.0, 5.5, 2.5, 0.3])
    tgt = np.array([2, 0, 1, 2])
    # equal norms, so that by Cauchy–Schwarz the true target has the largest inner product
    norm = [np.linalg.norm(hb.image(b, N)) for b in blobs]
    write_mrc(d / "targets.mrcs", [hb.image(b, N) / n for b, n in zip(blobs, norm)])
    write_mrc(d / "images.mrcs", [hb.image(hb.rotate_blobs(blobs[t], g), N) / norm[t]
                                  for t, g in zip(tgt, gam)])
    return d, gam, tgt


def angle_err(a, b):
    return np.abs(np.angle(np.exp(1j * (np.asarray(a) - b))))


def test_cli_full_and_ranks(stacks, capsys):
    d, gam, tgt = stacks
    K = 16.0
    dg = 2 * np.pi / PolarGrid(K=K).Q
    out = d / "full.npz"
    assert main(["align-images", str(d / "images.mrcs"), str(d / "targets.mrcs"), "--K", str(K),
                 "--out", str(out), "--no-progress", "--refine"]) == 0
    r = np.load(out)
    assert np.array_equal(r["best_target"], tgt)
    assert np.all(angle_err(r["angle"], gam) < 0.05 * dg)
    assert "counter-clockwise" in str(r["info_convention"])
    for method in ("radial-svd", "frequency-marching", "energy-pca"):
        o = d / f"r-{method}.npz"
        assert main(["align-images", str(d / "images.mrcs"), str(d / "targets.mrcs"), "--K",
                     str(K), "--rank", "8", "--method", method, "--all-pairs",
                     "--out", str(o), "--no-progress"]) == 0
        z = np.load(o)
        assert z["angles"].shape == (4, 3) and z["scores"].shape == (4, 3)
        assert int(z["info_rank"]) == 8
    assert not list(d.glob(".*radsvd-tmp*"))


@pytest.mark.parametrize("args, match", [
    (["--rank", "0"], "out of range"),
    (["--rank", "99"], "out of range"),
    (["--rank", "x"], "integer"),
    (["--K", "60"], "Nyquist"),
])
def test_cli_bad_options(stacks, capsys, args, match):
    d, _, _ = stacks
    rc = main(["align-images", str(d / "images.mrcs"), str(d / "targets.mrcs"),
               "--out", str(d / "x.npz"), "--no-progress", "--K", "16"] + args)
    assert rc == 2
    assert match in capsys.readouterr().err


def test_cli_bad_files(stacks, tmp_path, capsys):
    d, _, _ = stacks
    bad = tmp_path / "bad.mrcs"
    bad.write_bytes(b"not an mrc file at all" * 100)
    rc = main(["align-images", str(bad), str(d / "targets.mrcs"), "--out", str(tmp_path / "o.npz"),
               "--K", "16"])
    assert rc == 2 and "not a readable MRC" in capsys.readouterr().err
    rc = main(["align-images", str(tmp_path / "missing.mrcs"), str(d / "targets.mrcs"),
               "--out", str(tmp_path / "o.npz"), "--K", "16"])
    assert rc == 2 and "no such file" in capsys.readouterr().err
    write_mrc(tmp_path / "other.mrcs", np.zeros((2, 40, 40)))
    rc = main(["align-images", str(tmp_path / "other.mrcs"), str(d / "targets.mrcs"),
               "--out", str(tmp_path / "o.npz"), "--K", "16"])
    assert rc == 2 and "differs" in capsys.readouterr().err
    nan = np.zeros((2, 32, 32))
    nan[1, 3, 4] = np.nan
    with pytest.warns(RuntimeWarning):  # mrcfile warns when writing NaN
        write_mrc(tmp_path / "nan.mrcs", nan)
    rc = main(["align-images", str(tmp_path / "nan.mrcs"), str(d / "targets.mrcs"),
               "--out", str(tmp_path / "o.npz"), "--K", "16", "--no-progress"])
    assert rc == 2 and "NaN" in capsys.readouterr().err
    rc = main(["align-images", str(d / "images.mrcs"), str(tmp_path / "nan.mrcs"),
               "--out", str(tmp_path / "o.npz"), "--K", "16", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "targets" in err and "NaN" in err
    write_mrc(tmp_path / "empty.mrcs", np.zeros((0, 32, 32)))
    rc = main(["align-images", str(tmp_path / "empty.mrcs"), str(d / "targets.mrcs"),
               "--out", str(tmp_path / "o.npz"), "--K", "16", "--no-progress"])
    assert rc == 2 and "empty" in capsys.readouterr().err
    assert not (tmp_path / "o.npz").exists()


def test_numpy_baseline_agrees_with_engine():
    from radsvd.bench.images import numpy_baseline, synthetic_images
    from radsvd.images import align_images, images_to_fb

    g = PolarGrid(K=12)
    fa = images_to_fb(synthetic_images(9, 24, seed=1), g)
    fb = images_to_fb(synthetic_images(11, 24, seed=2), g)
    sc, ix = numpy_baseline(fa, fb, g, tile=(4, 4))
    r = align_images(fa, fb, g, all_pairs=True)
    assert np.max(np.abs(sc - r.scores)) <= 1e-12 * np.max(np.abs(sc))
    assert np.array_equal(ix * g.dpsi, r.angles)


def test_bench_document_helpers(tmp_path):
    from radsvd.bench import format_table, machine_info, write_json

    doc = dict(schema=1, created="x", quick=True, machine=machine_info(),
               records=[dict(name="images.full", seconds=0.5, pairs_per_s=2e6, ratio=2.0,
                             params=dict(N_A=4))])
    write_json(doc, str(tmp_path / "b.json"))
    assert json.loads((tmp_path / "b.json").read_text())["records"][0]["name"] == "images.full"
    assert "images.full" in format_table(doc)


def test_cli_with_shifts(stacks, tmp_path):
    """Images = target rotated by γ, then moved by +δ pixels: the CLI reports shift = δ."""
    d, gam, tgt = stacks
    rng = np.random.default_rng(9)
    N = 32
    blobs = [hb.random_blobs(rng, 4, rmax=0.45) for _ in range(3)]   # the fixture's blobs
    norm = [np.linalg.norm(hb.image(b, N)) for b in blobs]
    delta = np.array([[1, -2], [0, 3], [-3, -1], [2, 2]])
    moved = []
    for t, g, (dx, dy) in zip(tgt, gam, delta):
        bl = [dict(b, cx=b["cx"] + dx * 2 / N, cy=b["cy"] + dy * 2 / N)
              for b in hb.rotate_blobs(blobs[t], g)]
        moved.append(hb.image(bl, N) / norm[t])
    write_mrc(tmp_path / "moved.mrcs", moved)
    dg = 2 * np.pi / PolarGrid(K=16).Q
    for extra in ([], ["--rank", "10", "--method", "shift-svd"]):
        out = tmp_path / "s.npz"
        assert main(["align-images", str(tmp_path / "moved.mrcs"), str(d / "targets.mrcs"),
                     "--K", "16", "--max-shift-px", "3", "--out", str(out), "--no-progress",
                     "--refine", "--all-pairs", "--force"] + extra) == 0
        r = np.load(out)
        assert np.array_equal(r["best_target"], tgt)
        assert np.abs(r["shift"] - delta).max() < 0.1
        assert np.all(angle_err(r["angle"], gam) < 0.5 * dg)
        assert r["shifts"].shape == (4, 3, 2)
        assert "translated by +shift" in str(r["info_convention"])


@pytest.mark.parametrize("args, match", [
    (["--max-shift-px", "-1"], "max_shift"), (["--max-shift-px", "nan"], "max_shift"),
    (["--max-shift-px", "2", "--shift-step-px", "3"], "larger than"),
    (["--max-shift-px", "17"], "half the box"), (["--method", "svd", "--rank", "2"], "unknown")])
def test_cli_bad_shift_options(stacks, capsys, args, match):
    d, _, _ = stacks
    rc = main(["align-images", str(d / "images.mrcs"), str(d / "targets.mrcs"),
               "--out", str(d / "x.npz"), "--no-progress", "--K", "16"] + args)
    assert rc == 2
    assert match in capsys.readouterr().err


def test_numpy_baseline_with_shifts_agrees_with_engine():
    from radsvd.bench.images import numpy_baseline_shifts, synthetic_images
    from radsvd.images import align_images, images_to_fb
    from radsvd.images.shifts import shift_grid

    g = PolarGrid(K=12)
    fa = images_to_fb(synthetic_images(5, 24, seed=1), g)
    fb = images_to_fb(synthetic_images(6, 24, seed=2), g)
    sh = shift_grid(2, 1)
    sc, s = numpy_baseline_shifts(fa, fb, g, sh, 24, tile=(2, 4))
    r = align_images(fa, fb, g, all_pairs=True, max_shift=2, box=24)
    assert np.max(np.abs(sc - r.scores)) <= 1e-12 * np.max(np.abs(sc))
    assert np.array_equal(sh[s], r.shifts)
    timer = {}
    align_images(fa, fb, g, max_shift=2, box=24, refine=True, timer=timer)
    assert {"targets", "images", "pairs", "refine", "total"} <= set(timer)
    assert all(v >= 0 for v in timer.values())
