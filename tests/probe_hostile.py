"""Hostile probe campaign: drive the radsvd CLI and API with bad files, bad arguments, odd
places and faults, each in a fresh process, and classify what happens.

    python tests/probe_hostile.py [--only SUBSTRING] [--json report.json]

Verdicts: ``clear error`` (bad input refused: exit 2, one line ``radsvd CMD: error: …`` or an
InputError-like exception from the API), ``correct`` (valid or tolerable input handled as
documented, warnings included), ``traceback``, ``silent wrong`` (bad input accepted, or a
wrong result), ``hang`` (no end within the deadline), ``data loss`` (a file that existed
before was damaged, or a half-written file was left).  The goal is zero in the last four.
Not collected by pytest (the name does not start with ``test_``); tests/test_hostile.py
holds the regression tests of what the campaign found.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DEADLINE = 120.0   # seconds: a probe still running after this is a hang
BAD = ("traceback", "silent wrong", "hang", "data loss")


def mrc_bytes(data, mode=2, ispg=0, map_id=b"MAP ", stamp=b"\x44\x44\x00\x00", order="<",
              nsymbt=0, axes=(1, 2, 3), voxel=1.5, dims=None, extra=b"", cell=None):
    """MRC bytes from the MRC2014 layout (independent of radsvd and mrcfile)."""
    data = np.asarray(data)
    nz, ny, nx = data.shape if dims is None else dims[::-1]
    h = bytearray(1024)
    struct.pack_into(order + "4i", h, 0, nx, ny, nz, mode)
    struct.pack_into(order + "3i", h, 28, nx, ny, nz)
    c = cell if cell is not None else (nx * voxel, ny * voxel, nz * voxel)
    struct.pack_into(order + "3f", h, 40, *c)
    struct.pack_into(order + "3f", h, 52, 90.0, 90.0, 90.0)
    struct.pack_into(order + "3i", h, 64, *axes)
    struct.pack_into(order + "2i", h, 88, ispg, nsymbt)
    h[208:212] = map_id
    h[212:216] = stamp
    body = data.astype(data.dtype.newbyteorder(order)).tobytes() if data.size else b""
    return bytes(h) + b"\0" * max(nsymbt, 0) + body + extra


@dataclass
class Probe:
    name: str
    args: list                 # radsvd CLI arguments, or ["-c", code] for an API probe
    expect: str                # "error", "ok" or "warn"
    setup: object = None       # f(workdir) before the run
    check: object = None       # f(workdir, proc) -> None or (verdict, reason) after the run
    signal_after: float | None = None   # send SIGTERM/SIGKILL after this many seconds
    sig: int = signal.SIGTERM
    env: dict = field(default_factory=dict)
    prefix: list = field(default_factory=list)   # e.g. setpriv to run unprivileged
    mutates: bool = False      # the probe itself changes its input files (no data-loss check)


API_HEAD = """
import sys, numpy as np
from pathlib import Path
from radsvd._validate import InputError
try:
{body}
except (InputError, FileNotFoundError, PermissionError, IsADirectoryError,
        NotADirectoryError, FileExistsError) as exc:
    print("CLEAR-ERROR:", type(exc).__name__, exc, file=sys.stderr)
    sys.exit(2)
"""


def api(body: str) -> list:
    return ["-c", API_HEAD.format(body="\n".join("    " + line for line in body.splitlines()))]


# ------------------------------------------------------------------------------------ fixtures

def build_fixtures(d: Path) -> None:
    from radsvd.data.mrc import write_mrc

    rng = np.random.default_rng(0)
    write_mrc(d / "images.mrcs", rng.standard_normal((4, 16, 16)).astype(np.float32), 2.0)
    write_mrc(d / "targets.mrcs", rng.standard_normal((3, 16, 16)).astype(np.float32), 2.0)
    write_mrc(d / "map.mrc", rng.standard_normal((12, 12, 12)).astype(np.float32), 2.0)
    write_mrc(d / "map2.mrc", rng.standard_normal((12, 12, 12)).astype(np.float32), 2.0)
    subprocess.run([sys.executable, "-m", "radsvd", "simulate", "--n", "6", "--box", "16",
                    "--pixel-size", "8", "--out", str(d / "sim")], check=True,
                   capture_output=True)
    subprocess.run([sys.executable, "-m", "radsvd", "simulate", "--n", "8", "--box", "32",
                    "--pixel-size", "4", "--seed", "1", "--out", str(d / "psim")], check=True,
                   capture_output=True)


def write(name, data):
    def setup(w):
        p = w / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data if isinstance(data, bytes) else data.encode())
    return setup


def fixtures_copy(*names):
    def setup(w):
        for n in names:
            src = FIX / n
            (shutil.copytree if src.is_dir() else shutil.copy)(src, w / n)
    return setup


def chain(*setups):
    def setup(w):
        for s in setups:
            s(w)
    return setup


def unchanged(name, content=None):
    """Check: the file that existed before is byte-identical afterwards."""
    def check(w, proc):
        p = w / name
        if content is not None and (not p.exists() or p.read_bytes() != content):
            return "data loss", f"{name} changed or vanished"
        return None
    return check


def same_as_fixture(name, fixture):
    """Check: ``name`` is still byte-identical to the fixture file it was copied from."""
    def check(w, proc):
        p = w / name
        if not p.exists() or p.read_bytes() != (FIX / fixture).read_bytes():
            return "data loss", f"{name} changed or vanished"
        return None
    return check


def no_leftovers(w, proc):
    left = [p.name for p in w.rglob(".*radsvd-tmp*")] + [p.name for p in w.rglob("*.part")]
    return ("data loss", f"temporary files left: {left}") if left else None


def stdout_has(*needles):
    def check(w, proc):
        missing = [n for n in needles if n not in proc.stdout]
        return ("silent wrong", f"stdout lacks {missing}") if missing else None
    return check


def checks(*fs):
    def check(w, proc):
        for f in fs:
            r = f(w, proc)
            if r:
                return r
        return None
    return check


def err_has(*needles, absent=("Traceback", "np.int64", "np.float64", "<star>")):
    """Check: stderr names every needle (file, label, row) and none of the misleading bits."""
    def check(w, proc):
        missing = [n for n in needles if n not in proc.stderr]
        found = [a for a in absent if a in proc.stderr]
        if missing or found:
            return "silent wrong", f"stderr lacks {missing} or has {found}: {proc.stderr[-200:]}"
        return None
    return check


OPTICS = ["rlnOpticsGroup", "rlnOpticsGroupName", "rlnVoltage", "rlnSphericalAberration",
          "rlnAmplitudeContrast", "rlnImagePixelSize", "rlnImageSize",
          "rlnImageDimensionality"]
PARTS = ["rlnImageName", "rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle", "rlnOpticsGroup",
         "rlnOriginXAngst", "rlnOriginYAngst"]


def psim_star(name, edit=None, style="3.1"):
    """Setup: psim/ (8 particles, box 32, 4 Å) with a hand-written STAR file ``name`` built from
    the simulation's values (independent of radsvd's writer), after ``edit(optics_labels,
    optics_rows, particle_labels, particle_rows)`` changed its lists in place."""
    def setup(w):
        shutil.copytree(FIX / "psim", w / "psim", dirs_exist_ok=True)
        text = (FIX / "psim/particles.star").read_text().splitlines()
        rows = [r.split() for r in text if "@particles.mrcs" in r]
        head = [r.strip().split()[0][1:] for r in text if r.startswith("_rln")]
        plab = head[len(OPTICS):]
        pick = [plab.index(c) for c in PARTS]
        prow = [[r[i] for i in pick] for r in rows]
        olab, orow = list(OPTICS), [["1", "og1", "300", "2.7", "0.1", "4", "32", "2"]]
        labels = list(PARTS)
        if edit:
            edit(olab, orow, labels, prow)
        lines = []
        if style == "3.1":
            lines += ["# version 30001", "data_optics", "loop_", *[f"_{c}" for c in olab],
                      *["\t".join(r) for r in orow], "", "data_particles"]
        else:
            lines += ["data_"]
        lines += ["loop_", *[f"_{c}" for c in labels], *["\t".join(r) for r in prow], ""]
        (w / "psim" / name).write_text("\n".join(lines))
    return setup


def col(labels, rows, label, value, row=None):
    """Set column ``label`` (appended if new) to ``value`` in every row (or only ``row``)."""
    if label not in labels:
        labels.append(label)
        for r in rows:
            r.append(str(value))
    j = labels.index(label)
    for i, r in enumerate(rows):
        if row is None or i == row:
            r[j] = str(value)


def dup(labels, rows, label):
    """Repeat column ``label`` (a second, different value)."""
    j = labels.index(label)
    labels.append(label)
    for r in rows:
        r.append(r[j] + "1" if r[j][-1].isdigit() else r[j])


# ------------------------------------------------------------------------------------- probes

def probes() -> list:
    z = np.zeros((2, 8, 8), np.float32)
    r = np.random.default_rng(1).standard_normal((3, 8, 8)).astype(np.float32)
    cube = np.random.default_rng(2).standard_normal((8, 8, 8)).astype(np.float32)
    P = []

    def info(name, data, expect, check=None):
        P.append(Probe(f"info {name}", ["info", "F.mrc"], expect, write("F.mrc", data), check))

    # --- MRC headers and data, through `radsvd info` ------------------------------------------
    info("empty file", b"", "error")
    info("1023 bytes", b"\0" * 1023, "error")
    info("random bytes", np.random.default_rng(3).bytes(4096), "error")
    info("nx = 0", mrc_bytes(z, dims=(0, 8, 2)), "error")
    info("ny < 0", mrc_bytes(z, dims=(8, -8, 2)), "error")
    info("nz = 0", mrc_bytes(z, dims=(8, 8, 0)), "error")
    info("nz < 0", mrc_bytes(z, dims=(8, 8, -2)), "error")
    info("nz = 2^31-1", mrc_bytes(z, dims=(8, 8, 2**31 - 1)), "error")
    info("nx*ny*nz overflow int32", mrc_bytes(z, dims=(65536, 65536, 2)), "error")
    for mode in (3, 4, 101, -1, 7, 99):
        info(f"mode {mode}", mrc_bytes(z, mode=mode), "error")
    info("mode 0 int8", mrc_bytes(np.ones((2, 8, 8), np.int8), mode=0), "ok",
         stdout_has("mean: 1.0"))
    info("mode 1 int16", mrc_bytes(np.full((2, 8, 8), -3, np.int16), mode=1), "ok",
         stdout_has("mean: -3.0"))
    info("mode 6 uint16", mrc_bytes(np.full((2, 8, 8), 60000, np.uint16), mode=6), "ok",
         stdout_has("mean: 60000.0"))
    info("mode 12 float16", mrc_bytes(np.full((2, 8, 8), 0.5, np.float16), mode=12), "ok",
         stdout_has("mean: 0.5"))
    info("nsymbt 2 GiB", mrc_bytes(z, nsymbt=0)[:92] + struct.pack("<i", 2**31 - 1)
         + mrc_bytes(z)[96:], "error")
    info("nsymbt < 0", mrc_bytes(z)[:92] + struct.pack("<i", -4) + mrc_bytes(z)[96:], "error")
    info("nsymbt = rest of file", mrc_bytes(z)[:92] + struct.pack("<i", 512)
         + mrc_bytes(z)[96:], "error")
    info("truncated 1 byte", mrc_bytes(r)[:-1], "error")
    info("trailing bytes", mrc_bytes(r, extra=b"\0" * 10), "warn")
    info("no MAP id, blank stamp (RELION 3.1)", mrc_bytes(r, map_id=bytes(4), stamp=bytes(4)),
         "warn", stdout_has("type: stack", "images: 3"))
    info("big-endian stamped", mrc_bytes(r, order=">", stamp=b"\x11\x11\0\0"), "ok",
         stdout_has(f"mean: {float(r.astype(np.float64).mean())}"))
    info("big-endian blank stamp", mrc_bytes(r, order=">", stamp=bytes(4)), "warn",
         stdout_has(f"mean: {float(r.astype(np.float64).mean())}"))
    info("garbage stamp", mrc_bytes(r, stamp=b"\xab\xcd\xef\x01"), "warn")
    info("NaN data", mrc_bytes(np.full((2, 8, 8), np.nan, np.float32)), "error")
    info("inf data", mrc_bytes(np.full((2, 8, 8), np.inf, np.float32)), "error")
    info("invalid axis order", mrc_bytes(r, axes=(1, 1, 1)), "warn")
    info("permuted axes map", mrc_bytes(cube, axes=(3, 1, 2), ispg=1), "warn",
         stdout_has("type: map"))
    info("space group 401", mrc_bytes(r, ispg=401), "error")
    info("negative space group", mrc_bytes(cube, ispg=-7), "warn")
    info("NaN cell", mrc_bytes(r, cell=(float("nan"),) * 3), "warn", stdout_has("voxel_size: 0"))
    info("negative cell", mrc_bytes(r, cell=(-5.0, -5.0, -5.0)), "warn")
    P.append(Probe("info 7-image stack named .mrc (ispg 1)", ["info", "s.mrc"], "warn",
                   write("s.mrc", mrc_bytes(np.ones((7, 16, 16), np.float32), ispg=1)),
                   stdout_has("type: stack", "images: 7", "box: 16")))
    P.append(Probe("info cubic .mrcs is a stack", ["info", "s.mrcs"], "ok",
                   write("s.mrcs", mrc_bytes(cube, ispg=1)), stdout_has("type: stack")))
    P.append(Probe("info .map with space group 0 is a map", ["info", "m.map"], "ok",
                   write("m.map", mrc_bytes(cube, ispg=0)), stdout_has("type: map")))
    gz = gzip.compress(mrc_bytes(cube, ispg=1))
    P.append(Probe("info .map.gz", ["info", "m.map.gz"], "ok", write("m.map.gz", gz),
                   stdout_has("compressed: True", "box: 8")))
    P.append(Probe("info gzip truncated", ["info", "m.map.gz"], "error",
                   write("m.map.gz", gz[: len(gz) // 2])))
    P.append(Probe("info gzip garbled", ["info", "m.map.gz"], "error",
                   write("m.map.gz", gz[:40] + bytes(200) + gz[240:])))
    P.append(Probe("info gzip claiming a 32 GB map", ["info", "m.map.gz"], "error",
                   write("m.map.gz", gzip.compress(mrc_bytes(cube, dims=(2000,) * 3)[:1024]))))
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    bomb = comp.compress(mrc_bytes(cube, ispg=1)) + b"".join(
        comp.compress(bytes(1 << 20)) for _ in range(1024)) + comp.flush()
    P.append(Probe("info gzip bomb (1 GiB of zeros after a small map), peak RSS", api(
        "import resource\nfrom radsvd.data.info import describe\n"
        "print(describe('b.map.gz'))\n"
        "rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "assert rss < 600_000, f'peak RSS {rss} kB'"), "warn", write("b.map.gz", bomb)))
    P.append(Probe("info extended-header bomb, peak RSS", api(
        "import resource\nfrom radsvd.data.info import describe\n"
        "try:\n    describe('b.mrc')\nexcept InputError as e:\n    print(e)\n"
        "rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "assert rss < 600_000, f'peak RSS {rss} kB'\nraise InputError('refused')"), "error",
        write("b.mrc", mrc_bytes(z)[:92] + struct.pack("<i", 2**31 - 1) + mrc_bytes(z)[96:])))
    P.append(Probe("info MRC without MAP id and without extension",
                   ["info", "F"], "warn", write("F", mrc_bytes(r, map_id=bytes(4),
                                                               stamp=bytes(4))),
                   stdout_has("type: stack")))
    P.append(Probe("info gzip file named .mrc", ["info", "m.mrc"], "ok", write("m.mrc", gz),
                   stdout_has("compressed: True")))
    P.append(Probe("info missing file", ["info", "nope.mrc"], "error"))
    P.append(Probe("info a folder", ["info", "."], "error"))
    P.append(Probe("info /dev/null", ["info", "/dev/null"], "error"))
    P.append(Probe("info /dev/zero named .mrc", ["info", "z.mrc"], "error",
                   lambda w: os.symlink("/dev/zero", w / "z.mrc")))
    P.append(Probe("info a FIFO named .mrc", ["info", "f.mrc"], "error",
                   lambda w: os.mkfifo(w / "f.mrc")))
    P.append(Probe("info a FIFO named .star", ["info", "f.star"], "error",
                   lambda w: os.mkfifo(w / "f.star")))
    P.append(Probe("info dangling symlink", ["info", "l.mrc"], "error",
                   lambda w: os.symlink(w / "gone.mrc", w / "l.mrc")))
    P.append(Probe("info sparse 4 GB map header-consistent", ["info", "big.map"], "ok",
                   _sparse_map, stdout_has("box: 1024")))

    # --- STAR files ---------------------------------------------------------------------------
    def star(name, text, expect, check=None, extra=None):
        P.append(Probe(f"info STAR {name}", ["info", "p.star"], expect,
                       chain(write("p.star", text), *(extra or [])), check))

    star("empty file", "", "error")
    star("data_ only", "data_\n", "error")
    star("empty loop", "data_particles\nloop_\n_rlnImageName #1\n_rlnDefocusU #2\n", "ok",
         stdout_has("particles: 0"))
    star("binary garbage", np.random.default_rng(5).bytes(3000).decode("latin-1"), "error")
    star("non-numeric defocus", "data_\nloop_\n_rlnImageName\n_rlnDefocusU\n_rlnDefocusV\n"
         "1@s.mrcs 1e4 9e3\n2@s.mrcs oops 9e3\n", "error",
         err_has("p.star", "rlnDefocusU in particle row 2 is 'oops', not a number"))
    star("index 0", "data_\nloop_\n_rlnImageName\n_rlnDefocusU\n0@s.mrcs 1e4\n", "error")
    star("index -3", "data_\nloop_\n_rlnImageName\n_rlnDefocusU\n-3@s.mrcs 1e4\n", "error")
    star("index x", "data_\nloop_\n_rlnImageName\n_rlnDefocusU\nx@s.mrcs 1e4\n", "error")
    star("stray column", "data_\nloop_\n_rlnImageName\n_rlnDefocusU\n1@s.mrcs 1e4\n"
         "2@s.mrcs 1e4 junk\n", "warn")
    star("unknown optics group", "data_optics\nloop_\n_rlnOpticsGroup\n_rlnVoltage\n1 300\n"
         "data_particles\nloop_\n_rlnImageName\n_rlnOpticsGroup\n1@s.mrcs 4\n", "error")
    star("optics without group column", "data_optics\nloop_\n_rlnVoltage\n300\n"
         "data_particles\nloop_\n_rlnImageName\n1@s.mrcs\n", "error")
    star("absolute stack path", "data_\nloop_\n_rlnImageName\n_rlnDefocusU\n"
         "1@/nonexistent/s.mrcs 1e4\n", "ok", stdout_has("stacks: 1"))
    star("no particle table", "data_\nloop_\n_rlnMicrographName\nm.mrc\n", "error")
    star("broken first stack", "data_\nloop_\n_rlnImageName\n_rlnDefocusU\n1@s.mrcs 1e4\n",
         "ok", stdout_has("first stack unreadable"), [write("s.mrcs", b"\0" * 100)])
    star("utf-16", "data_\nloop_\n_rlnImageName\n1@s.mrcs\n".encode("utf-16").decode("latin-1"),
         "error")
    star("huge single line", "data_\nloop_\n_rlnImageName\n" + "x" * 5_000_000 + "\n", "ok")

    # --- load_particles (API) -----------------------------------------------------------------
    P.append(Probe("load_particles index beyond stack", api(
        "from radsvd.data.star import read_star, write_star\nfrom radsvd.data.stacks import load_particles\n"
        "t = read_star('sim/particles.star')\n"
        "t.loc[0, 'image_name'] = '000099@particles.mrcs'\n"
        "write_star('sim/p2.star', t)\n"
        "load_particles('sim/p2.star')"), "error", fixtures_copy("sim")))
    P.append(Probe("load_particles stack missing", api(
        "from radsvd.data.stacks import load_particles\nimport os\n"
        "os.remove('sim/particles.mrcs')\nload_particles('sim/particles.star')"), "error",
        fixtures_copy("sim"), mutates=True))
    P.append(Probe("load_particles stack replaced by another run", api(
        "from radsvd.data.stacks import load_particles\nimport shutil\n"
        "shutil.copy('other/particles.mrcs', 'sim/particles.mrcs')\n"
        "load_particles('sim/particles.star')"), "error",
        chain(fixtures_copy("sim"), lambda w: shutil.copytree(FIX / "sim", w / "other"),
              lambda w: subprocess.run([sys.executable, "-m", "radsvd", "simulate", "--n", "6",
                                        "--box", "16", "--pixel-size", "8", "--seed", "9",
                                        "--force", "--out", str(w / "other")], check=True,
                                       capture_output=True)), mutates=True))
    P.append(Probe("load_particles n=0", api(
        "from radsvd.data.stacks import load_particles\nload_particles('sim/particles.star', n=0)"),
        "error", fixtures_copy("sim")))

    # --- align-images arguments and inputs ----------------------------------------------------
    A = ["align-images", "images.mrcs", "targets.mrcs", "--no-progress"]
    base = fixtures_copy("images.mrcs", "targets.mrcs")

    def align(name, extra, expect, setup=None, check=None, args=None):
        P.append(Probe(f"align-images {name}", (args or A) + extra, expect,
                       chain(base, *([setup] if setup else [])), check))

    ok_out = checks(no_leftovers, lambda w, p: None if (w / "o.npz").exists()
                    else ("silent wrong", "no output"))
    align("baseline", ["--K", "8", "--out", "o.npz"], "ok", check=ok_out)
    for K in ("1e6", "inf", "-inf", "nan", "-5", "0", "26", "abc", "1e308"):
        align(f"--K {K}", ["--K", K, "--out", "o.npz"], "error", check=no_leftovers)
    # the quadrature weights underflow to 0: every target is zero within K
    align("--K 1e-300", ["--K", "1e-300", "--out", "o.npz"], "error", check=no_leftovers)
    for rank in ("0", "-1", "10", "1.5", "abc", "nan", "1e3"):
        align(f"--rank {rank}", ["--K", "8", "--rank", rank, "--out", "o.npz"], "error")
    align("--rank 3 energy-pca", ["--K", "8", "--rank", "3", "--method", "energy-pca",
                                   "--out", "o.npz"], "ok", check=ok_out)
    align("--out without .npz", ["--K", "8", "--out", "o.txt"], "error")
    align("--out a folder", ["--K", "8", "--out", "d.npz"], "error",
          lambda w: (w / "d.npz").mkdir())
    align("--out under a file", ["--K", "8", "--out", "f/o.npz"], "error",
          write("f", "keep"), unchanged("f", b"keep"))
    align("--out in a new folder", ["--K", "8", "--out", "new/deeper/o.npz"], "ok",
          check=lambda w, p: None if (w / "new/deeper/o.npz").exists()
          else ("silent wrong", "no output"))
    align("--out a symlink to a victim", ["--K", "8", "--out", "l.npz"], "ok",
          chain(write("victim", "precious"), lambda w: os.symlink(w / "victim", w / "l.npz")),
          unchanged("victim", b"precious"))
    align("--out /dev/full", ["--K", "8", "--out", "/dev/full"], "error")
    align("--out an existing read-only file", ["--K", "8", "--out", "o.npz"], "ok",
          chain(write("o.npz", "old"), lambda w: os.chmod(w / "o.npz", 0o444)), ok_out)
    align("images NaN", ["--K", "8", "--out", "o.npz"], "error",
          write("images.mrcs", mrc_bytes(np.full((2, 16, 16), np.nan, np.float32))),
          no_leftovers)
    align("targets all zero", ["--K", "8", "--out", "o.npz"], "error",
          write("targets.mrcs", mrc_bytes(np.zeros((2, 16, 16), np.float32))))
    align("one zero target of three", ["--K", "8", "--out", "o.npz"], "error",
          write("targets.mrcs", mrc_bytes(np.concatenate(
              [np.random.default_rng(7).standard_normal((2, 16, 16)),
               np.zeros((1, 16, 16))]).astype(np.float32))))
    align("images box 16 vs targets 12", ["--K", "8", "--out", "o.npz"], "error",
          write("targets.mrcs", mrc_bytes(np.ones((2, 12, 12), np.float32))))
    align("non-square images", ["--K", "8", "--out", "o.npz"], "error",
          chain(write("images.mrcs", mrc_bytes(np.ones((2, 16, 12), np.float32))),
                write("targets.mrcs", mrc_bytes(np.ones((2, 16, 12), np.float32)))))
    align("complex images", ["--K", "8", "--out", "o.npz"], "error",
          write("images.mrcs", mrc_bytes(np.ones((2, 16, 16), np.complex64), mode=4)))
    align("truncated images", ["--K", "8", "--out", "o.npz"], "error",
          write("images.mrcs", mrc_bytes(np.ones((2, 16, 16), np.float32))[:-8]))
    align("gzipped stacks", ["--K", "8", "--out", "o.npz"], "ok",
          lambda w: [(w / f"{n}.gz").write_bytes(gzip.compress((w / n).read_bytes()))
                     for n in ("images.mrcs", "targets.mrcs")], ok_out,
          args=["align-images", "images.mrcs.gz", "targets.mrcs.gz", "--no-progress"])
    align("RELION 3.1 header stacks", ["--K", "8", "--out", "o.npz"], "warn",
          write("images.mrcs", mrc_bytes(np.random.default_rng(8).standard_normal(
              (2, 16, 16)).astype(np.float32), map_id=bytes(4), stamp=bytes(4))), ok_out)
    align("int16 stacks", ["--K", "8", "--out", "o.npz"], "ok",
          write("images.mrcs", mrc_bytes((np.random.default_rng(8).standard_normal(
              (2, 16, 16)) * 100).astype(np.int16), mode=1)), ok_out)
    align("--threads 0", ["--K", "8", "--out", "o.npz"], "error",
          args=["--threads", "0"] + A)
    align("--threads -3", ["--K", "8", "--out", "o.npz"], "error",
          args=["--threads", "-3"] + A)
    align("--threads 999", ["--K", "8", "--out", "o.npz"], "ok", check=ok_out,
          args=["--threads", "999"] + A)
    P.append(Probe("align-images SIGTERM mid-run leaves nothing",
                   A + ["--K", "40", "--out", "o.npz"], "killed",
                   chain(base, write("images.mrcs", mrc_bytes(np.random.default_rng(1)
                         .standard_normal((3000, 64, 64)).astype(np.float32))),
                         write("targets.mrcs", mrc_bytes(np.random.default_rng(2)
                               .standard_normal((300, 64, 64)).astype(np.float32)))),
                   no_leftovers, signal_after=6.0))

    # --- align-volumes ------------------------------------------------------------------------
    V = ["align-volumes", "map.mrc", "map2.mrc", "--no-progress"]
    vbase = fixtures_copy("map.mrc", "map2.mrc")

    def vol(name, extra, expect, setup=None, check=None, args=None):
        P.append(Probe(f"align-volumes {name}", (args or V) + extra, expect,
                       chain(vbase, *([setup] if setup else [])), check))

    vol("baseline", ["--K", "4", "--out", "v.npz"], "ok",
        check=lambda w, p: None if (w / "v.npz").exists() else ("silent wrong", "no output"))
    for K in ("1e6", "inf", "nan", "-5", "19"):
        vol(f"--K {K}", ["--K", K, "--out", "v.npz"], "error")
    for rank in ("0", "99", "x"):
        vol(f"--rank {rank}", ["--K", "4", "--rank", rank, "--out", "v.npz"], "error")
    vol("zero target", ["--K", "4", "--out", "v.npz"], "error",
        write("map.mrc", mrc_bytes(np.zeros((12, 12, 12), np.float32), ispg=1)))
    vol("stack as target", ["--K", "4", "--out", "v.npz"], "error",
        write("s.mrcs", mrc_bytes(np.ones((12, 12, 12), np.float32))),
        args=["align-volumes", "s.mrcs", "map2.mrc", "--no-progress"])
    vol("non-cubic map", ["--K", "4", "--out", "v.npz"], "error",
        write("map2.mrc", mrc_bytes(np.ones((12, 12, 10), np.float32), ispg=1)))
    # other boxes and voxel sizes are fitted (issue 23), not refused
    vol("other box", ["--K", "4", "--out", "v.npz"], "ok",
        write("map2.mrc", mrc_bytes(np.random.default_rng(4).standard_normal((14, 14, 14))
                                    .astype(np.float32), ispg=1)))
    vol("other voxel size", ["--K", "4", "--out", "v.npz"], "ok",
        write("map2.mrc", mrc_bytes(np.random.default_rng(3).standard_normal((12, 12, 12))
                                    .astype(np.float32), ispg=1, voxel=3.0)))
    vol("complex map", ["--K", "4", "--out", "v.npz"], "error",
        write("map2.mrc", mrc_bytes(np.ones((12, 12, 12), np.complex64), mode=4, ispg=1)))
    vol("NaN map", ["--K", "4", "--out", "v.npz"], "error",
        write("map2.mrc", mrc_bytes(np.full((12, 12, 12), np.nan, np.float32), ispg=1)))
    vol("--out a folder", ["--K", "4", "--out", "d"], "error", lambda w: (w / "d").mkdir())
    vol("gzipped map", ["--K", "4", "--out", "v.npz"], "ok",
        lambda w: (w / "map2.mrc.gz").write_bytes(gzip.compress((w / "map2.mrc").read_bytes())),
        args=["align-volumes", "map.mrc", "map2.mrc.gz", "--no-progress"])

    # --- simulate -----------------------------------------------------------------------------
    S = ["simulate", "--n", "4", "--box", "16", "--pixel-size", "8"]

    def sim(name, extra, expect, setup=None, check=None):
        P.append(Probe(f"simulate {name}", S + extra, expect, setup, check))

    sim_ok = checks(no_leftovers, lambda w, p: None if (w / "s/particles.star").exists()
                    else ("silent wrong", "no STAR file"))
    sim("baseline", ["--out", "s"], "ok", check=sim_ok)
    for flag, val in (("--n", "0"), ("--n", "-1"), ("--box", "4"), ("--box", "0"),
                      ("--pixel-size", "0"), ("--pixel-size", "-1"), ("--pixel-size", "nan"),
                      ("--snr", "-1"), ("--snr", "nan"), ("--max-shift", "-1"),
                      ("--max-shift", "nan"), ("--astigmatism", "-1"),
                      ("--astigmatism", "inf"), ("--per-micrograph", "0"),
                      ("--n-micrographs", "0"), ("--molecule", "nope"), ("--style", "2"),
                      ("--n", "1e3"), ("--seed", "-1")):
        sim(f"{flag} {val}", [flag, val, "--out", "s"], "error",
            check=lambda w, p: ("data loss", "output written") if (w / "s/particles.star")
            .exists() else None)
    sim("--defocus 25000 8000", ["--defocus", "25000", "8000", "--out", "s"], "error")
    sim("--defocus nan 1", ["--defocus", "nan", "1", "--out", "s"], "error")
    sim("--out an existing file", ["--out", "f"], "error", write("f", "keep"),
        unchanged("f", b"keep"))
    sim("--out under a file", ["--out", "f/s"], "error", write("f", "keep"),
        unchanged("f", b"keep"))
    sim("--n 1e9 (terabytes)", ["--n", "1000000000", "--out", "s"], "error")
    sim("--box 100000 (40 GB per image stack)", ["--n", "2", "--box", "100000", "--out", "s"],
        "error")
    sim("--snr inf", ["--snr", "inf", "--out", "s"], "ok", check=sim_ok)
    sim("into a folder with an old pair", ["--seed", "3", "--out", "s"], "error",
        lambda w: shutil.copytree(FIX / "sim", w / "s"),
        same_as_fixture("s/particles.star", "sim/particles.star"))
    sim("into a folder with an old pair, --force", ["--seed", "3", "--force", "--out", "s"],
        "ok", lambda w: shutil.copytree(FIX / "sim", w / "s"), sim_ok)
    sim("--max-shift beyond half the box", ["--box", "32", "--max-shift", "1000", "--out", "s"],
        "error", check=lambda w, p: ("data loss", "output written") if (w / "s").exists()
        else None)
    P.append(Probe("simulate SIGKILL mid-write, then rerun", S + ["--n", "20000", "--box", "64",
                                                                  "--force", "--out", "s"],
                   "killed",
                   lambda w: shutil.copytree(FIX / "sim", w / "s"), _pair_consistent,
                   signal_after=8.0, sig=signal.SIGKILL))

    # --- align-particles: the particle path (issue 27) ------------------------------------------
    def part(name, star, expect, setup=None, check=None, extra=(), mp="psim/map.mrc",
             out="o.star"):
        P.append(Probe(f"align-particles {name}",
                       ["align-particles", star, mp, "--K", "6", "--no-progress",
                        "--out", out, *extra], expect,
                       setup or fixtures_copy("psim"), check))

    pstar = "psim/particles.star"
    def keep(name):
        return same_as_fixture(name, name)
    part("baseline", pstar, "ok", check=lambda w, p: None if (w / "o.star").exists()
         else ("silent wrong", "no output"))
    # data loss: the output is an input, however spelled
    part("--out = the input STAR", pstar, "error", check=checks(
        keep("psim/particles.star"), err_has("--out", "input STAR file")), out=pstar)
    part("--out = the input STAR spelled ./psim/../psim/", pstar, "error",
         check=keep("psim/particles.star"), out="./psim/../psim/particles.star")
    part("--out a symlink to the input STAR", pstar, "error",
         chain(fixtures_copy("psim"), lambda w: os.symlink(w / pstar, w / "l.star")),
         keep("psim/particles.star"), out="l.star")
    part("--out a hard link to the input STAR", pstar, "error",
         chain(fixtures_copy("psim"), lambda w: os.link(w / pstar, w / "h.star")),
         keep("psim/particles.star"), out="h.star")
    part("--out .npz beside = a stack named .npz", "psim/x.star", "error",
         chain(psim_star("x.star", lambda ol, orow, pl, pr: [
             r.__setitem__(0, r[0].replace("particles.mrcs", "n.npz")) for r in pr]),
             lambda w: shutil.copy(w / "psim/particles.mrcs", w / "psim/n.npz")),
         err_has("input stack"), out="psim/n.star")
    part("on its own output after the stack was replaced", "psim/poses.star", "error",
         chain(fixtures_copy("psim"), lambda w: subprocess.run(
             [sys.executable, "-m", "radsvd", "align-particles", pstar, "psim/map.mrc", "--K",
              "6", "--no-progress", "--out", "psim/poses.star"], cwd=w, check=True,
             capture_output=True), lambda w: subprocess.run(
             [sys.executable, "-m", "radsvd", "simulate", "--n", "8", "--box", "32",
              "--pixel-size", "4", "--seed", "9", "--force", "--out", "psim"], cwd=w,
             check=True, capture_output=True)), err_has("do not belong together"))
    # tracebacks before: repeated labels, repeated optics groups
    for label in ("rlnOriginXAngst", "rlnDefocusU", "rlnImageName"):
        part(f"{label} twice in the particles loop", "psim/x.star", "error",
             psim_star("x.star", lambda ol, orow, pl, pr, label=label: dup(pl, pr, label)),
             err_has("psim/x.star", f"_{label} appears twice"))
    part("rlnVoltage twice in the optics loop", "psim/x.star", "error",
         psim_star("x.star", lambda ol, orow, pl, pr: dup(ol, orow, "rlnVoltage")),
         err_has("psim/x.star", "_rlnVoltage appears twice", "data_optics"))
    part("two optics rows with one rlnOpticsGroup", "psim/x.star", "error",
         psim_star("x.star", lambda ol, orow, pl, pr: orow.append(list(orow[0]))),
         err_has("psim/x.star", "rlnOpticsGroup 1 is defined twice", "optics rows 1 and 2"))
    # silent wrong before: a 3D map as images, mixed optics, bad pixel sizes, pixel origins
    part("rlnImageName pointing at a 3D map", "psim/x.star", "error",
         psim_star("x.star", lambda ol, orow, pl, pr: [
             r.__setitem__(0, r[0].replace("particles.mrcs", "map.mrc")) for r in pr]),
         err_has("psim/x.star", "particle row 1", "3D map"))
    two = ["2", "og2", "300", "2.7", "0.1", "3.3", "32", "2"]
    for order in ("group 2 last", "group 2 first"):
        part(f"optics groups of 4 and 3.3 Å, {order}", "psim/x.star", "error",
             psim_star("x.star", lambda ol, orow, pl, pr, order=order: (
                 orow.append(list(two)), col(pl, pr, "rlnOpticsGroup", 2,
                                             row=7 if order == "group 2 last" else 0))),
             err_has("psim/x.star", "different pixel sizes", "3.3"))
    part("optics groups of box 32 and 40", "psim/x.star", "error",
         psim_star("x.star", lambda ol, orow, pl, pr: (
             orow.append(["2", "og2", "300", "2.7", "0.1", "4", "40", "2"]),
             col(pl, pr, "rlnOpticsGroup", 2, row=5))),
         err_has("psim/x.star", "different boxes"))

    def relion30(mags):
        def edit(ol, orow, pl, pr):
            for c, v in (("rlnVoltage", 300), ("rlnSphericalAberration", 2.7),
                         ("rlnAmplitudeContrast", 0.1), ("rlnDetectorPixelSize", 4.0),
                         ("rlnPhaseShift", 0)):
                col(pl, pr, c, v)
            col(pl, pr, "rlnMagnification", mags[0])
            col(pl, pr, "rlnMagnification", mags[1], row=3)
        return edit
    part("RELION 3.0 with two magnifications", "psim/x.star", "error",
         psim_star("x.star", relion30((10000, 12000)), style="3.0"),
         err_has("psim/x.star", "different pixel sizes", "row 4"))
    part("RELION 3.0 with one magnification", "psim/x.star", "ok",
         psim_star("x.star", relion30((10000, 10000)), style="3.0"))
    for value in ("abc", "nan", "0", "-4"):
        part(f"optics pixel size {value}", "psim/x.star", "error",
             psim_star("x.star", lambda ol, orow, pl, pr, v=value: col(
                 ol, orow, "rlnImagePixelSize", v)),
             err_has("psim/x.star", "rlnImagePixelSize", "optics row 1", absent=(
                 "Traceback", "warning", "non-finite values")))

    def pixel_origins(ol, orow, pl, pr):
        for ax in ("X", "Y"):
            j = pl.index(f"rlnOrigin{ax}Angst")
            pl[j] = f"rlnOrigin{ax}"
            for r in pr:
                r[j] = "2"
    part("RELION 3.1 with origins in pixels only", "psim/x.star", "ok",
         psim_star("x.star", pixel_origins), lambda w, p: None if (
             "_rlnOriginX " not in (w / "o.star").read_text().replace("\t", " ") + " " and
             "_rlnOriginX #" not in (w / "o.star").read_text()) else (
             "silent wrong", "stale pixel origins in the output"))
    P.append(Probe("API read_star converts 3.1 pixel origins with each group's pixel size",
                   api("from radsvd.data.star import read_star\n"
                       "t = read_star('psim/x.star')\n"
                       "assert np.allclose(t.shift_x, np.where(t.optics_group == 2, 6.6, 8.0)),"
                       " t.shift_x.tolist()"), "ok",
                   psim_star("x.star", lambda ol, orow, pl, pr: (
                       pixel_origins(ol, orow, pl, pr), orow.append(list(two)),
                       col(pl, pr, "rlnOpticsGroup", 2, row=2)))))
    # physical ranges
    for label, value in (("rlnDefocusU", "-12000"), ("rlnDefocusV", "1e9")):
        part(f"{label} {value}", "psim/x.star", "error",
             psim_star("x.star", lambda ol, orow, pl, pr, c=label, v=value: col(
                 pl, pr, c, v, row=2)),
             err_has("psim/x.star", label, "particle row 3", "physical range"))
    for label, value in (("rlnVoltage", "0"), ("rlnSphericalAberration", "100"),
                         ("rlnAmplitudeContrast", "1.5")):
        part(f"{label} {value}", "psim/x.star", "error",
             psim_star("x.star", lambda ol, orow, pl, pr, c=label, v=value: col(
                 ol, orow, c, v)), err_has("psim/x.star", label, "optics row 1"))
    # misleading messages before
    for value in ("nan", "abc"):
        part(f"rlnDefocusU {value} in row 5", "psim/x.star", "error",
             psim_star("x.star", lambda ol, orow, pl, pr, v=value: col(
                 pl, pr, "rlnDefocusU", v, row=4)),
             err_has("psim/x.star", "rlnDefocusU", "particle row 5", absent=(
                 "Traceback", "missing", "--voltage")))
    part("--voltage nan (STAR without voltage)", "psim/x.star", "error",
         psim_star("x.star", lambda ol, orow, pl, pr: (
             orow[0].pop(ol.index("rlnVoltage")), ol.remove("rlnVoltage"))),
         err_has("--voltage", "nan", absent=("missing",)), extra=("--voltage", "nan"))
    part("--voltage 300 fills a STAR without voltage", "psim/x.star", "ok",
         psim_star("x.star", lambda ol, orow, pl, pr: (
             orow[0].pop(ol.index("rlnVoltage")), ol.remove("rlnVoltage"))),
         extra=("--voltage", "300"))
    part("gzipped STAR", "psim/p.star.gz", "ok", chain(fixtures_copy("psim"), lambda w: (
        w / "psim/p.star.gz").write_bytes(gzip.compress((w / pstar).read_bytes()))))
    P.append(Probe("info gzipped STAR", ["info", "p.star.gz"], "ok", lambda w: (
        w / "p.star.gz").write_bytes(gzip.compress((FIX / pstar).read_bytes())),
        stdout_has("type: star", "particles: 8")))
    part("particles in optics group 7 only 1 defined", "psim/x.star", "error",
         psim_star("x.star", lambda ol, orow, pl, pr: col(pl, pr, "rlnOpticsGroup", 7)),
         err_has("psim/x.star", "particle row 1", "is 7"))
    part("rlnOpticsGroup nan", "psim/x.star", "error",
         psim_star("x.star", lambda ol, orow, pl, pr: col(pl, pr, "rlnOpticsGroup", "nan",
                                                          row=1)),
         err_has("psim/x.star", "rlnOpticsGroup", "particle row 2"))
    part("no particle table", "psim/x.star", "error",
         write("psim/x.star", "data_\nloop_\n_rlnMicrographName\nm.mrc\n"),
         err_has("psim/x.star", "no particle table"))
    part("all-zero map", pstar, "error", chain(fixtures_copy("psim"), write(
        "zero.mrc", mrc_bytes(np.zeros((32, 32, 32), np.float32), ispg=1, voxel=4.0))),
        err_has("zero.mrc", "every value of the map is 0", absent=("warning", "Traceback")),
        mp="zero.mrc")
    part("--K 0.001", pstar, "error", check=err_has("grows with K"), extra=("--K", "0.001"))
    for option in ("--shift-step", "--sigma"):
        part(f"{option} -2 Å", pstar, "error", check=err_has(option, "(Å), got -2"),
             extra=(option, "-2", "--max-shift", "8", "--method", "gaussian-shift-svd"))
    part("a blank particle", pstar, "error", chain(fixtures_copy("psim"), lambda w: (
        w / "psim/particles.mrcs").write_bytes(_blank_third(w / "psim/particles.mrcs"))),
        err_has("particle row 3", "000003@particles.mrcs", "constant"))
    part("quoted stack name with a space", "psim/x.star", "ok", chain(
        psim_star("x.star", lambda ol, orow, pl, pr: [
            r.__setitem__(0, "'" + r[0].replace("particles.mrcs", "my stack.mrcs") + "'")
            for r in pr]),
        lambda w: shutil.copy(w / "psim/particles.mrcs", w / "psim/my stack.mrcs")))
    P.append(Probe("info one 8³ volume marked space group 401", ["info", "v.mrc"], "warn",
                   write("v.mrc", mrc_bytes(cube, ispg=401)),
                   stdout_has("type: map", "box: 8")))

    # --- API ------------------------------------------------------------------------------------
    for expr in ("PolarGrid(K='a')", "PolarGrid(K=8, R=0)", "PolarGrid(K=8, R=2.5)",
                 "PolarGrid(K=8, Q=7)", "PolarGrid(K=8, Q='x')", "PolarGrid(K=[8])",
                 "ShellGrid(K=4, L=0)", "ShellGrid(K=4, R=-1)", "ShellGrid(K=float('nan'))",
                 "PolarGrid(K=8, Q=10**12)", "ShellGrid(K=4, L=10**7)",
                 "PolarGrid(K=8, R=10**9)"):
        P.append(Probe(f"API {expr}", api(
            "from radsvd.grids import PolarGrid\nfrom radsvd.volumes import ShellGrid\n"
            f"g = {expr}\nprint(g.R)"), "error"))
    P.append(Probe("API ShellGrid(K=4, L=10**4) then to_shells", api(
        "from radsvd.volumes import ShellGrid, to_shells\n"
        "to_shells(np.ones((12, 12, 12)), ShellGrid(K=4, L=10**4))"), "error"))
    P.append(Probe("API read_mrc on folder", api(
        "from radsvd.data.mrc import read_mrc\nread_mrc('.')"), "error"))
    P.append(Probe("API write_mrc 4D", api(
        "from radsvd.data.mrc import write_mrc\nwrite_mrc('x.mrc', np.zeros((2, 2, 2, 2)))"),
        "error", check=no_leftovers))
    P.append(Probe("API write_mrc complex", api(
        "from radsvd.data.mrc import write_mrc\nwrite_mrc('x.mrc', np.zeros((2, 2, 2), complex))"),
        "error", check=no_leftovers))
    P.append(Probe("API save_npz under a file", api(
        "from radsvd._files import save_npz\nsave_npz('f/x.npz', a=np.arange(3))"), "error",
        write("f", "keep"), unchanged("f", b"keep")))
    P.append(Probe("API align_images zero targets", api(
        "from radsvd.grids import PolarGrid\nfrom radsvd.images import align_images\n"
        "g = PolarGrid(K=8)\nfb = np.ones((2, g.R, g.n_freq), complex)\n"
        "align_images(fb, np.zeros_like(fb), g)"), "error"))
    P.append(Probe("API align_images refine all-pairs in [0, 2π)", api(
        "from radsvd.grids import PolarGrid\nfrom radsvd.images import align_images\n"
        "g = PolarGrid(K=8)\nr = np.random.default_rng(4)\n"
        "fb = r.standard_normal((40, g.R, g.n_freq)) + 1j * r.standard_normal((40, g.R, "
        "g.n_freq))\nfb[:, :, 0] = fb[:, :, 0].real\n"
        "a = align_images(fb, fb, g, refine=True, all_pairs=True).angles\n"
        "assert (a >= 0).all() and (a < 2 * np.pi).all(), a.max()"), "ok"))
    P.append(Probe("API simulate_particles bad microscope", api(
        "from radsvd.data.simulate import Microscope\nMicroscope(defocus_range=(3e4, 1e4))"),
        "error"))
    P.append(Probe("API set_threads('x')", api(
        "from radsvd._jit import set_threads\nset_threads('x')"), "error"))
    return P


def _blank_third(path: Path) -> bytes:
    """The stack's bytes with its third image set to 0 (a blank particle)."""
    raw = bytearray(path.read_bytes())
    nx, ny = struct.unpack_from("<2i", raw, 0)
    start = 1024 + struct.unpack_from("<i", raw, 92)[0] + 2 * nx * ny * 4
    raw[start:start + nx * ny * 4] = bytes(nx * ny * 4)
    return bytes(raw)


def _sparse_map(w: Path) -> None:
    """A 1024³ float32 map (4 GiB) stored sparsely: consistent, so `info` must read it."""
    p = w / "big.map"
    with open(p, "wb") as f:
        f.write(mrc_bytes(np.zeros((0, 0, 0), np.float32), ispg=1, dims=(1024,) * 3)[:1024])
        f.truncate(1024 + 4 * 1024 ** 3)


def _pair_consistent(w: Path, proc) -> tuple | None:
    """After a kill: the old pair loads, or the new pair loads, or a mismatched pair is
    refused; never a silently mismatched pair, never leftovers after the next write."""
    code = ("from radsvd.data.stacks import load_particles\n"
            "try:\n    load_particles('s/particles.star')\n    print('LOADS')\n"
            "except ValueError as e:\n    print('REFUSED', e)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=w, capture_output=True, text=True,
                       timeout=DEADLINE)
    if "LOADS" not in r.stdout and "do not belong together" not in r.stdout:
        return "silent wrong", f"after the kill: {r.stdout.strip()} {r.stderr[-300:]}"
    old = time.time() - 3600           # as if the rerun came an hour later
    for p in (w / "s").iterdir():
        if "radsvd-tmp" in p.name:
            os.utime(p, (old, old))
    rerun = subprocess.run([sys.executable, "-m", "radsvd", "simulate", "--n", "4", "--box",
                            "16", "--force", "--out", "s"], cwd=w, capture_output=True, text=True,
                           timeout=DEADLINE)
    if rerun.returncode:
        return "traceback", rerun.stderr[-300:]
    left = [p.name for p in (w / "s").iterdir() if "radsvd-tmp" in p.name]
    if left:
        return "data loss", f"stale temporary files after a rerun: {left}"
    return None


# --------------------------------------------------------------------------------------- runner

def run(probe: Probe, workdir: Path) -> tuple[str, str]:
    if probe.setup:
        probe.setup(workdir)
    before = {p: p.read_bytes() for p in workdir.rglob("*") if p.is_file()
              and not p.name.startswith(".") and p.stat().st_size < 1 << 24
              and not p.is_symlink()}
    if probe.args[0] == "-c":
        cmd = [sys.executable, *probe.args]
    else:
        cmd = [sys.executable, "-m", "radsvd", *probe.args]
    env = dict(os.environ, **probe.env)
    proc = subprocess.Popen(probe.prefix + cmd, cwd=workdir, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        if probe.signal_after is not None:
            try:
                out, err = proc.communicate(timeout=probe.signal_after)
            except subprocess.TimeoutExpired:
                proc.send_signal(probe.sig)
                out, err = proc.communicate(timeout=DEADLINE)
        else:
            out, err = proc.communicate(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return "hang", f"no end after {DEADLINE:.0f} s"
    res = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    if probe.check:
        found = probe.check(workdir, res)
        if found:
            return found
    for p, data in ({} if probe.mutates else before).items():   # inputs survive every probe
        if p.exists() and p.read_bytes() != data and probe.expect != "ok" \
                and "simulate" not in probe.name:
            return "data loss", f"{p.name} changed"
    if "Traceback" in err:
        return "traceback", err.strip().splitlines()[-1][:200]
    lines = [x for x in err.strip().splitlines() if x]
    if probe.expect == "killed":
        return "correct", f"exit {proc.returncode} after the signal"
    if probe.expect == "error":
        if proc.returncode == 2 and lines and ("error:" in lines[-1] or "CLEAR-ERROR" in
                                                lines[-1]):
            return "clear error", lines[-1][:200]
        if proc.returncode == 0:
            return "silent wrong", "bad input accepted (exit 0)"
        return "traceback", f"exit {proc.returncode}: {(lines or [''])[-1][:200]}"
    if proc.returncode != 0:
        return "silent wrong", f"refused valid input: exit {proc.returncode}: " \
                               f"{(lines or [''])[-1][:200]}"
    if probe.expect == "warn" and "warning" not in err.lower():
        return "silent wrong", "no warning"
    return "correct", (lines[-1][:200] if lines else "")


FIX: Path = Path()


def main(argv=None) -> int:
    global FIX
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="radsvd-probes-"))
    FIX = root / "fixtures"
    FIX.mkdir()
    build_fixtures(FIX)
    results = []
    try:
        for i, probe in enumerate(probes()):
            if args.only and args.only not in probe.name:
                continue
            w = root / f"p{i:03d}"
            w.mkdir()
            t0 = time.perf_counter()
            verdict, detail = run(probe, w)
            results.append(dict(name=probe.name, verdict=verdict, detail=detail,
                                seconds=round(time.perf_counter() - t0, 1)))
            mark = "!!" if verdict in BAD else "  "
            print(f"{mark} {verdict:12s} {probe.name:55s} {detail[:110]}", flush=True)
            shutil.rmtree(w, ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    counts = {}
    for r in results:
        counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
    print(f"\n{len(results)} probes: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if args.json:
        Path(args.json).write_text(json.dumps(dict(counts=counts, results=results), indent=1))
    return 1 if any(r["verdict"] in BAD for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
