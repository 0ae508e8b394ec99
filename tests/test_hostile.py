"""Hostile input and faults (issue 17): every case ends in a clear one-line error (exit 2) or a
stated warning; never a traceback, a hang, a silent wrong result or lost data."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from radsvd._validate import InputError, InputWarning
from radsvd.cli import main
from radsvd.data.mrc import mrc_header, write_mrc
from radsvd.data.stacks import load_particles
from radsvd.data.star import read_star

ROOT = Path(__file__).resolve().parents[1]


def _run(args, **kw):
    """``python -m radsvd ARGS`` in a fresh process (stdout, stderr captured)."""
    return subprocess.run([sys.executable, "-m", "radsvd", *args], capture_output=True,
                          text=True, timeout=120, **kw)


def _one_line_error(capsys, command, *needles):
    err = capsys.readouterr().err
    assert err.startswith(f"radsvd {command}: error:"), err
    assert "Traceback" not in err and err.count("\n") == 1, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    rng = np.random.default_rng(0)
    write_mrc(d / "images.mrcs", rng.standard_normal((3, 16, 16)).astype(np.float32), 2.0)
    write_mrc(d / "targets.mrcs", rng.standard_normal((2, 16, 16)).astype(np.float32), 2.0)
    write_mrc(d / "map.mrc", rng.standard_normal((12, 12, 12)).astype(np.float32), 2.0)
    return d


# -- K: validated before any grid is built (a grid for K = 1e6 took hours) ----------------------

@pytest.mark.timeout(60)
@pytest.mark.parametrize("K, needle", [("1e6", "Nyquist"), ("inf", "positive finite"),
                                       ("nan", "positive finite"), ("-5", "positive finite"),
                                       ("0", "positive finite"), ("40", "Nyquist")])
def test_bad_K_is_refused_fast(files, tmp_path, capsys, K, needle):
    d = files
    t0 = time.perf_counter()
    assert main(["align-images", str(d / "images.mrcs"), str(d / "targets.mrcs"), "--K", K,
                 "--out", str(tmp_path / "o.npz"), "--no-progress"]) == 2
    _one_line_error(capsys, "align-images", "--K", needle)
    assert main(["align-volumes", str(d / "map.mrc"), str(d / "map.mrc"), "--K", K,
                 "--out", str(tmp_path / "v.npz"), "--no-progress"]) == 2
    _one_line_error(capsys, "align-volumes", "--K", needle)
    assert time.perf_counter() - t0 < 30
    assert not list(tmp_path.iterdir())


def test_grid_parameters_are_input_errors():
    from radsvd.grids import PolarGrid, radial_quadrature
    from radsvd.volumes.shells import ShellGrid

    for bad in ("a", None, True, float("inf"), -5, 1e6):
        for make in (lambda K: PolarGrid(K=K), lambda K: ShellGrid(K=K),
                     lambda K: radial_quadrature(K, 4)):
            with pytest.raises(InputError, match="K"):
                make(bad)
    with pytest.raises(InputError, match="R must be a positive integer"):
        PolarGrid(K=8, R="x")
    with pytest.raises(InputError, match="Q must be a positive even"):
        PolarGrid(K=8, Q=7)
    t0 = time.perf_counter()           # absurd counts: refused, not hours of quadrature
    for make in (lambda: PolarGrid(K=8, R=10**9), lambda: PolarGrid(K=8, Q=10**12),
                 lambda: ShellGrid(K=4, R=10**9), lambda: ShellGrid(K=4, L=10**7),
                 lambda: ShellGrid(K=4, R=16000, L=16000)):   # 300 TB of sphere samples
        with pytest.raises(InputError, match="beyond|in \\[1, |more than this machine's"):
            make()
    assert time.perf_counter() - t0 < 5


# -- output places: checked before the work ----------------------------------------------------

def test_output_places_are_checked_first(files, tmp_path, capsys):
    d = files
    a = ["align-images", str(d / "images.mrcs"), str(d / "targets.mrcs"), "--K", "8",
         "--no-progress", "--out"]
    v = ["align-volumes", str(d / "map.mrc"), str(d / "map.mrc"), "--K", "4", "--no-progress",
         "--out"]
    folder = tmp_path / "a_folder.npz"
    folder.mkdir()
    plain = tmp_path / "plain.txt"
    plain.write_text("keep me")
    for args, cmd in ((a, "align-images"), (v, "align-volumes")):
        assert main(args + [str(folder)]) == 2
        _one_line_error(capsys, cmd, "is a folder")
        assert main(args + [str(plain / "o.npz")]) == 2
        _one_line_error(capsys, cmd, "is a file, not a folder")
    # a missing input is reported, but only after the output place passed its check
    assert main(["align-images", str(d / "nope.mrcs"), str(d / "targets.mrcs"), "--out",
                 str(folder)]) == 2
    _one_line_error(capsys, "align-images", "is a folder")
    assert main(["simulate", "--n", "2", "--box", "16", "--out", str(plain)]) == 2
    _one_line_error(capsys, "simulate", "existing file, not a folder")
    assert plain.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_folder.npz", "plain.txt"]


def _unprivileged():
    """Command prefix that runs as an unprivileged user (root ignores file modes)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot test permissions")
    prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    probe = subprocess.run(prefix + [sys.executable, "-c", "import radsvd.cli"],
                           capture_output=True, cwd="/", timeout=120)
    if probe.returncode:
        pytest.skip("the unprivileged user cannot import radsvd from this checkout")
    return prefix


@pytest.fixture
def shared_dir():
    """A folder outside pytest's private (0700) tree, so another user can reach it."""
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="radsvd-hostile-"))
    os.chmod(d, 0o755)
    yield d
    for sub in d.rglob("*"):
        if sub.is_dir():
            os.chmod(sub, 0o755)
    shutil.rmtree(d)


def test_read_only_output_folder(files, shared_dir):
    prefix = _unprivileged()
    for name in ("images.mrcs", "targets.mrcs"):
        shutil.copy(files / name, shared_dir / name)
        os.chmod(shared_dir / name, 0o644)
    ro = shared_dir / "ro"
    ro.mkdir()
    os.chmod(ro, 0o555)
    env = dict(os.environ, RADSVD_NUMBA_CACHE="0")
    out = subprocess.run(prefix + [sys.executable, "-m", "radsvd", "align-images",
                                   str(shared_dir / "images.mrcs"),
                                   str(shared_dir / "targets.mrcs"),
                                   "--K", "8", "--out", str(ro / "o.npz")],
                         capture_output=True, text=True, cwd="/", timeout=120, env=env)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("radsvd align-images: error: --out: cannot write in"), \
        out.stderr
    assert "Traceback" not in out.stderr
    out = subprocess.run(prefix + [sys.executable, "-m", "radsvd", "simulate", "--n", "2",
                                   "--box", "16", "--out", str(ro / "sim")],
                         capture_output=True, text=True, cwd="/", timeout=120, env=env)
    assert out.returncode == 2 and "cannot write in" in out.stderr, out.stderr
    assert not list(ro.iterdir())


# -- simulate: argument checks and the stack + STAR pair written as a unit ----------------------

def test_simulate_reversed_defocus_and_bad_microscope(tmp_path, capsys):
    from radsvd.data.simulate import Microscope

    assert main(["simulate", "--n", "2", "--box", "16", "--defocus", "25000", "8000",
                 "--out", str(tmp_path / "s")]) == 2
    _one_line_error(capsys, "simulate", "reversed")
    for kw in ({"voltage": -300}, {"amplitude_contrast": 1.5}, {"astigmatism": float("nan")},
               {"defocus_range": (1.0,)}, {"particles_per_micrograph": 0}):
        with pytest.raises(InputError, match="Microscope"):
            Microscope(**kw)
    assert not (tmp_path / "s").exists()
    # terabytes of images: refused before allocating (numpy's lazy pages would run into the
    # kernel's out-of-memory killer instead)
    assert main(["simulate", "--n", "1000000000", "--box", "128", "--out",
                 str(tmp_path / "s")]) == 2
    _one_line_error(capsys, "simulate", "GiB, more than this machine's")


def _simulated(tmp_path, seed):
    from radsvd.data.molecules import synthetic_molecule
    from radsvd.data.simulate import simulate_particles

    return simulate_particles(synthetic_molecule("nanodisc-like"), 4, 16, 8.0, snr=1.0,
                              seed=seed)


def test_simulated_pair_is_written_as_a_unit(tmp_path, monkeypatch):
    import radsvd._files as files_module
    from radsvd.data.simulate import write_particles

    imgs, table = _simulated(tmp_path, 0)
    paths = write_particles(tmp_path, imgs, table)
    star_text = paths["star"].read_text()
    wid = read_star(paths["star"]).attrs["write_ids"]["particles.mrcs"]
    assert star_text.startswith(f"# radsvd-write-id {wid} particles.mrcs\n")
    assert mrc_header(paths["stack"]).labels == (f"radsvd-write-id {wid}",)
    np.testing.assert_array_equal(load_particles(paths["star"])[0], imgs)

    # a second run "killed" after renaming its stack but before renaming its STAR file
    real_replace = os.replace

    def replace(src, dst):
        if Path(dst) == paths["star"]:
            raise KeyboardInterrupt("killed")
        real_replace(src, dst)

    monkeypatch.setattr(files_module.os, "replace", replace)
    imgs2, table2 = _simulated(tmp_path, 1)
    with pytest.raises(KeyboardInterrupt):
        write_particles(tmp_path, imgs2, table2)
    monkeypatch.undo()
    assert paths["star"].read_text() == star_text        # the old STAR file, untouched
    np.testing.assert_array_equal(mrc_data_of(paths["stack"]), imgs2)   # the new stack
    with pytest.raises(InputError, match="do not belong together"):
        load_particles(paths["star"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["particles.mrcs", "particles.star"]


def mrc_data_of(path):
    from radsvd.data.mrc import read_stack

    return read_stack(path)


# -- info ---------------------------------------------------------------------------------------

def test_info_star_edge_cases(tmp_path, capsys):
    empty = tmp_path / "empty.star"
    empty.write_text("data_particles\n\nloop_\n_rlnImageName #1\n_rlnDefocusU #2\n")
    assert main(["info", str(empty)]) == 0
    assert "particles: 0" in capsys.readouterr().out
    words = tmp_path / "words.star"
    words.write_text("data_\nloop_\n_rlnImageName #1\n_rlnDefocusU #2\n_rlnDefocusV #3\n"
                     "1@s.mrcs 10000 9000\n2@s.mrcs oops 9100\n3@s.mrcs 12000 9200\n")
    assert main(["info", str(words)]) == 0
    out = capsys.readouterr().out
    assert "defocus_u: 1 of 3 value(s) are not numbers, first in particle row 2" in out
    long_name = tmp_path / "long.star"   # a 5 MB image name: no stack to open, no crash
    long_name.write_text("data_\nloop_\n_rlnImageName\n" + "x" * 5_000_000 + "\n")
    assert main(["info", str(long_name)]) == 0
    assert "first stack unreadable" in capsys.readouterr().out
    assert main(["info", str(tmp_path)]) == 2
    _one_line_error(capsys, "info", "a folder")
    junk = tmp_path / "junk.bin"
    junk.write_bytes(bytes(range(256)) * 8)
    assert main(["info", str(junk)]) == 2
    _one_line_error(capsys, "info", "neither an MRC file")


def test_info_into_a_closed_pipe(files):
    """``radsvd info … | head``: the reader went away; no BrokenPipe traceback."""
    proc = subprocess.Popen([sys.executable, "-m", "radsvd", "info", str(files / "map.mrc")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert "Traceback" not in err and "BrokenPipe" not in err, err


def test_thread_count_and_complex_maps(files, tmp_path, capsys):
    assert main(["--threads", "0", "info", str(files / "map.mrc")]) == 2
    _one_line_error(capsys, "info", "thread count must be >= 1")
    from radsvd._jit import set_threads

    for bad in ("x", float("nan"), 1.5, True):
        with pytest.raises(InputError, match="thread count must be an integer"):
            set_threads(bad)
    import mrcfile

    cpx = tmp_path / "complex.mrc"
    with mrcfile.new(str(cpx)) as m:
        m.set_data(np.ones((12, 12, 12), np.complex64))
    for args, cmd in ((["info", str(cpx)], "info"),
                      (["align-volumes", str(cpx), str(files / "map.mrc"), "--K", "4", "--out",
                        str(tmp_path / "o.npz")], "align-volumes"),
                      (["align-images", str(cpx), str(files / "targets.mrcs"), "--out",
                        str(tmp_path / "o.npz")], "align-images")):
        assert main(args) == 2
        _one_line_error(capsys, cmd, "mode 4 (complex64) is not supported")


def test_gzipped_stacks_are_read_everywhere(files, tmp_path, capsys):
    import gzip

    for name in ("images.mrcs", "targets.mrcs"):
        (tmp_path / f"{name}.gz").write_bytes(gzip.compress((files / name).read_bytes()))
    runs = {}
    for tag, d in (("plain", files), ("gzip", tmp_path)):
        sfx = "" if tag == "plain" else ".gz"
        out = tmp_path / f"{tag}.npz"
        assert main(["align-images", str(d / f"images.mrcs{sfx}"),
                     str(d / f"targets.mrcs{sfx}"), "--K", "8", "--no-progress",
                     "--out", str(out)]) == 0
        runs[tag] = np.load(out)
    for key in ("best_target", "angle", "score"):
        np.testing.assert_array_equal(runs["plain"][key], runs["gzip"][key])


# -- degenerate targets and the [0, 2π) convention ----------------------------------------------

def test_zero_and_symmetric_targets():
    from radsvd.grids import PolarGrid
    from radsvd.images import align_images
    from radsvd.volumes import ShellGrid, align_volumes

    grid = PolarGrid(K=8)
    rng = np.random.default_rng(1)
    shape = (3, grid.R, grid.n_freq)
    fb = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    fb[:, :, 0] = fb[:, :, 0].real
    targets = fb.copy()
    targets[1] = 0
    with pytest.raises(InputError, match=r"1 of 3 target\(s\) are zero .*index 1,"):
        align_images(fb, targets, grid)
    targets = fb.copy()
    targets[2, :, 1:] = 0                       # q = 0 only: rotationally symmetric
    with pytest.warns(InputWarning, match=r"rotationally symmetric .*index 2,"):
        res = align_images(fb, targets, grid)
    assert res.best_target.shape == (3,)
    sgrid = ShellGrid(K=3, R=3, L=3)
    vol = rng.standard_normal((1, sgrid.R, sgrid.n_lm)) + 0j
    with pytest.raises(InputError, match="are zero"):
        align_volumes(vol, np.zeros((sgrid.R, sgrid.n_lm), complex), sgrid)
    sym = np.where(sgrid.degrees == 0, 1.0, 0.0)[None, :] * np.ones((sgrid.R, 1)) + 0j
    with pytest.raises(InputError, match="rotationally symmetric"):
        align_volumes(vol, sym, sgrid)


def test_refined_angles_stay_below_two_pi():
    """Images equal to their targets: the refined optimum is γ = 0, approached from either
    side; −tiny mod 2π rounded to exactly 2π before."""
    from radsvd.grids import PolarGrid
    from radsvd.images import align_images

    grid = PolarGrid(K=8)
    rng = np.random.default_rng(4)
    shape = (40, grid.R, grid.n_freq)
    fb = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    fb[:, :, 0] = fb[:, :, 0].real
    for all_pairs in (False, True):
        res = align_images(fb, fb, grid, refine=True, all_pairs=all_pairs)
        angles = res.angles if all_pairs else res.angle
        assert np.all((angles >= 0) & (angles < 2 * np.pi))
        diag = np.diagonal(angles) if all_pairs else angles
        assert np.all(np.minimum(diag, 2 * np.pi - diag) < 1e-6)


# -- numba's compilation cache on a read-only installation --------------------------------------

def test_numba_cache_falls_back_without_a_writable_place(tmp_path):
    """A copy of the package where no ``__pycache__`` can be made (a file sits there) and a
    home/cache folder that is a file: numba finds no cache locator; radsvd must still import,
    compile and run, with one warning line."""
    pkg = tmp_path / "site" / "radsvd"
    shutil.copytree(ROOT / "radsvd", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    for d in [pkg, *[p for p in pkg.rglob("*") if p.is_dir()]]:
        (d / "__pycache__").write_text("not a folder")
    blocker = tmp_path / "home_is_a_file"
    blocker.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_CACHE", "RADSVD_"))}
    env.update(HOME=str(blocker), XDG_CACHE_HOME=str(blocker),
               PYTHONPATH=str(tmp_path / "site"), PYTHONDONTWRITEBYTECODE="1")
    code = ("import numpy as np, radsvd, radsvd.images._kernels as k\n"
            "assert radsvd.__file__.startswith(%r), radsvd.__file__\n"
            "bv = np.full(2, -np.inf); bt = np.zeros(2, np.int64); bj = np.zeros(2, np.int64)\n"
            "k._row_best(np.array([[1., 3.], [2., 0.]]), np.array([[4, 5], [6, 7]]), 0, bv, bt,"
            " bj)\n"
            "print(bt.tolist(), bj.tolist())\n" % str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[1, 0] [5, 6]"
    lines = [x for x in out.stderr.splitlines() if "numba" in x]
    assert len(lines) == 1 and lines[0].startswith("radsvd: warning: no writable folder")


# -- temporary files: removed on SIGTERM, recognised and removed after kill -9 ------------------

_WRITER = """
import sys, time
from radsvd._files import atomic_path
with atomic_path(sys.argv[1], ".npz") as tmp:
    tmp.write_bytes(b"x" * 100000)
    print(tmp, flush=True)
    time.sleep(120)
"""


def _start_writer(target):
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(target)],
                            stdout=subprocess.PIPE, text=True)
    tmp = Path(proc.stdout.readline().strip())
    assert tmp.exists() and tmp.name.startswith(f".{target.name}.radsvd-tmp-{proc.pid}-")
    return proc, tmp


def test_temporary_file_removed_on_sigterm(tmp_path):
    proc, tmp = _start_writer(tmp_path / "out.npz")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == -signal.SIGTERM       # ends as SIGTERM would
    assert not list(tmp_path.iterdir())


def test_stale_temporary_files_are_removed_by_the_next_write(tmp_path):
    from radsvd._files import STALE_AFTER, save_npz

    killed, stale = _start_writer(tmp_path / "a.npz")
    killed.kill()
    killed.wait(timeout=60)
    alive, live = _start_writer(tmp_path / "b.npz")
    try:
        assert stale.exists()                             # kill -9 leaves it behind
        old = time.time() - 2 * STALE_AFTER
        for p in (stale, live):
            os.utime(p, (old, old))
        save_npz(tmp_path / "c.npz", x=np.arange(3))
        assert not stale.exists()                         # dead writer: removed
        assert live.exists()                              # running writer: kept
    finally:
        alive.kill()
        alive.wait(timeout=60)


def test_info_on_a_large_map_summarises_spaced_sections(tmp_path):
    """A consistent 1024³ float32 map (4 GiB, sparse on disk): `info` summarises 16 evenly
    spaced sections (64 MiB) and says so, instead of reading 4 GiB (minutes under load)."""
    import struct

    from radsvd.data.info import describe

    path = tmp_path / "big.map"
    n = 1024
    header = bytearray(1024)
    struct.pack_into("<4i", header, 0, n, n, n, 2)
    struct.pack_into("<3i", header, 28, n, n, n)
    struct.pack_into("<3f", header, 40, 2.0 * n, 2.0 * n, 2.0 * n)
    struct.pack_into("<3i", header, 64, 1, 2, 3)
    struct.pack_into("<2i", header, 88, 1, 0)
    header[208:216] = b"MAP \x44\x44\x00\x00"
    with open(path, "wb") as f:
        f.write(header)
        f.write(np.ones((n, n), np.float32).tobytes())     # section 0: ones, the rest zeros
        f.truncate(1024 + 4 * n ** 3)
    t0 = time.perf_counter()
    d = describe(path)
    assert time.perf_counter() - t0 < 60
    assert d["type"] == "map" and d["box"] == n and d["stats_over_sections"] == 16
    assert d["mean"] == pytest.approx(1 / 16, rel=1e-12) and (d["min"], d["max"]) == (0.0, 1.0)
    assert d["std"] == pytest.approx(np.sqrt(1 / 16 * 15 / 16), rel=1e-12)
