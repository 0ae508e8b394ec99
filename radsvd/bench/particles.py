"""Particle-set benchmark (``radsvd bench --only particles``): ``align-particles`` as users run
it, each command a fresh process (wall time from launch to exit; peak RSS from the kernel's
accounting of that process, ``wait4``).

- ``particles.memory.nN``: peak RSS at N = 2,000 and 16,000 float32 particles of 128²
  (aligned at 64, K = 48, rank 6, rotations only, the default ``--memory``); the 16,000 rows
  cycle over the 2,000 simulated images (the reads are the same).  ``particles.memory.growth``:
  the ratio and the RSS extrapolated linearly to 10⁶ particles.
- ``particles.e2e.rank6`` / ``particles.e2e.full``: the whole command on simulated particles
  with CTF (5 micrographs, 5 defocus groups), box 128 aligned at 64, 993 templates (K = 48),
  49 shifts (radius 4 px), shift-svd at rank 6 and ``--rank full``, interleaved in one run;
  ``particles_per_s`` of the alignment loop and of the whole command, the projected hours
  for 10⁶ particles on this machine and on a 64-core node (shards scale linearly: assumed).
  Default N = 300, the fastest of 2 interleaved rounds; the issue's size:
  ``RADSVD_BENCH_PARTICLES_N=10000 radsvd bench --only particles``.
- ``particles.stream``: the rank-6 command in two chunks against one chunk (the in-memory
  path), same N, same run: ``ratio`` = streamed / in-memory throughput of the alignment loop.
  Each chunk costs its CTF groups' targets and up to 2(S − 1) filler images per group
  (:func:`radsvd.images.particles.align_chunk`), so the ratio grows with particles per group
  and chunk: at the default ``--memory`` a chunk of 128² particles holds ≈ 1,900.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

SIZES = dict(N0=128, box=64, K=48.0, n_memory=(2000, 16000), n_e2e=300, shift_px=4.0,
             micrographs=5, p0=2.0, rounds=2)
QUICK_SIZES = dict(N0=64, box=32, K=16.0, n_memory=(100, 800), n_e2e=40, shift_px=2.0,
                   micrographs=3, p0=4.0, rounds=1)
_SUMMARY = re.compile(r"align-particles: (\d+) particles in ([\d.]+) s, ([\d.]+|inf) particles/s")


def _simulate(d: str, n: int, sz: dict) -> dict:
    from radsvd.data.molecules import synthetic_molecule
    from radsvd.data.simulate import Microscope, simulate_particles, write_particles

    mol = synthetic_molecule("trpv1-like")
    imgs, table = simulate_particles(mol, n, sz["N0"], sz["p0"], snr=0.5, seed=5,
                                     max_shift=sz["shift_px"] * sz["p0"],
                                     microscope=Microscope(n_micrographs=sz["micrographs"]))
    paths = write_particles(d, np.asarray(imgs, np.float32), table,
                            volume=mol.volume(sz["N0"]))
    return {k: str(v) for k, v in paths.items()}


def _cycled_star(src: str, dst: str, n: int) -> str:
    """A STAR of ``n`` rows cycling over the particles of ``src``."""
    from radsvd.data.star import read_star, write_star

    t = read_star(src)
    t = t.iloc[np.arange(n) % len(t)].reset_index(drop=True)
    write_star(dst, t)
    return dst


def run_measured(argv, cwd: str) -> dict:
    """``python -m radsvd *argv``: wall seconds, peak RSS (GiB) and the summary line's
    particles/s of the alignment loop."""
    t0 = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "radsvd", *argv], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.time() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"radsvd {argv[0]} failed ({proc.returncode}): {err[-2000:]}")
    m = _SUMMARY.search(err)
    out = dict(seconds=wall, peak_rss_gib=usage.ru_maxrss * 1024 / 2 ** 30)
    if m:
        out.update(aligned=int(m.group(1)), loop_seconds=float(m.group(2)),
                   loop_particles_per_s=float(m.group(3)))
    return out


def measure(quick: bool = False, log=None) -> list:
    sz = QUICK_SIZES if quick else SIZES
    n_e2e = int(os.environ.get("RADSVD_BENCH_PARTICLES_N", sz["n_e2e"]))
    log = log or (lambda msg: print(msg, file=sys.stderr))
    records = []
    with tempfile.TemporaryDirectory(prefix="radsvd-bench-particles-") as d:
        t0 = time.perf_counter()
        n_sim = max(sz["n_memory"][0], n_e2e)
        paths = _simulate(d, n_sim, sz)
        records.append(dict(name="particles.setup", seconds=time.perf_counter() - t0,
                            params=dict(n=n_sim, N0=sz["N0"])))
        star, mrc = paths["star"], paths["map"]
        common = ["--box", str(sz["box"]), "--K", str(sz["K"]), "--no-progress"]
        rss = {}
        for n in sz["n_memory"]:
            s = _cycled_star(star, os.path.join(d, f"cycled{n}.star"), n)
            log(f"bench: particles memory, {n} particles")
            r = run_measured(["align-particles", s, mrc, *common, "--rank", "6",
                              "--method", "shift-svd", "--out", f"m{n}.star"], d)
            rss[n] = r["peak_rss_gib"]
            records.append(dict(name=f"particles.memory.n{n}", seconds=0.0,
                                peak_rss_gib=r["peak_rss_gib"], wall_seconds=r["seconds"],
                                params=dict(n=n, N0=sz["N0"], box=sz["box"], K=sz["K"],
                                            dtype="float32", memory="default")))
        n1, n2 = sz["n_memory"]
        slope = (rss[n2] - rss[n1]) / (n2 - n1)
        records.append(dict(name="particles.memory.growth", seconds=0.0,
                            ratio=rss[n2] / rss[n1], gib_per_1e5=slope * 1e5,
                            extrapolated_1e6_gib=rss[n1] + slope * (1e6 - n1),
                            params=dict(n=[n1, n2])))
        s = _cycled_star(star, os.path.join(d, "e2e.star"), n_e2e)
        p_box = sz["p0"] * sz["N0"] / sz["box"]
        shifts = ["--max-shift", str(sz["shift_px"] * p_box), "--method", "shift-svd"]
        runs = {}
        for rnd in range(sz["rounds"]):   # interleaved rounds, the fastest of each kept
            for name, extra in (("rank6", ["--rank", "6"]), ("full", ["--rank", "full"]),
                                ("stream", ["--rank", "6", "--chunk",
                                            str(max(1, n_e2e // 2))])):
                log(f"bench: particles whole command, {name}, {n_e2e} particles, round "
                    f"{rnd + 1}")
                r = run_measured(["align-particles", s, mrc, *common, *shifts, *extra,
                                  "--out", f"{name}.star"], d)
                if name not in runs or r["seconds"] < runs[name]["seconds"]:
                    runs[name] = dict(r, loop_particles_per_s=max(
                        r["loop_particles_per_s"],
                        runs.get(name, {}).get("loop_particles_per_s", 0.0)))
        params = dict(n=n_e2e, N0=sz["N0"], box=sz["box"], K=sz["K"], shifts=49 if not quick
                      else None, ctf_micrographs=sz["micrographs"], rounds=sz["rounds"])
        for name in ("rank6", "full"):
            r = runs[name]
            rate = n_e2e / r["seconds"]
            rec = dict(name=f"particles.e2e.{name}", seconds=r["seconds"], particles_per_s=rate,
                       loop_particles_per_s=r["loop_particles_per_s"],
                       hours_1e6_this_machine=1e6 / rate / 3600,
                       hours_1e6_64_cores=1e6 / rate / 3600 * (os.cpu_count() or 1) / 64,
                       peak_rss_gib=r["peak_rss_gib"], params=params)
            if name == "rank6":
                rec["speedup_vs_full"] = runs["full"]["seconds"] / r["seconds"]
            records.append(rec)
        records.append(dict(name="particles.stream", seconds=runs["stream"]["seconds"],
                            ratio=runs["stream"]["loop_particles_per_s"]
                            / runs["rank6"]["loop_particles_per_s"],
                            whole_command_ratio=runs["rank6"]["seconds"]
                            / runs["stream"]["seconds"],
                            chunk=max(1, n_e2e // 2), params=params))
    return records
