"""Whole-command benchmark (``radsvd bench --e2e``): the commands as users run them.

``align-images`` and ``align-volumes`` run as fresh processes (``python -m radsvd ...``) from
float32 MRC files to the result file; the wall time from launch to exit is the record's
``seconds``.  Each command reports where the time went through :mod:`radsvd._profile`
(``*_seconds`` fields): ``startup`` (interpreter, imports, numba's cache), ``reading``,
``transform`` (finufft and the Fourier–Bessel / spherical-harmonic steps), ``precomputation``
(the radial or degree SVD), ``alignment`` (for images: with the images' transforms, streamed
tile by tile; their thread-seconds are ``transform_thread_seconds``; for maps, ``reading`` is
the target's and the other maps are read in the tasks that transform them), ``writing``, and
``other`` (exit, the rest); ``cpu_seconds``: the process's user + system CPU time.
``e2e.help`` times ``radsvd --help`` against ``python -c pass``.  The compressed records
also give ``speedup_vs_full`` (whole commands), ``method_speedup_vs_full`` (precomputation +
alignment, the phases the rank changes) and ``bound_speedup_vs_full`` (Amdahl: the whole
command's speedup if those phases of the compressed command took no time).

Sizes (full): 1024 images × 993 targets of 64² pixels at K = 48 (the paper's 2D scale), and
24 maps of 65³ voxels against one target at K = 48.  Rounds are interleaved over the commands
and the fastest of each is kept.  ``baseline``: the source tree of another radsvd version
(e.g. a ``git worktree`` of an older commit), run the same way with ``PYTHONPATH`` pointing
at it, interleaved with this one: ``e2e.<command>.baseline`` records and
``speedup_vs_baseline`` in the main ones (same run, same machine).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

PHASES = ("startup", "reading", "transform", "precomputation", "alignment", "writing")


SIZES = dict(N_A=1024, N_B=993, N=64, K=48.0, n_maps=24, N3=65, K3=48.0)
QUICK_SIZES = dict(N_A=96, N_B=64, N=32, K=16.0, n_maps=3, N3=33, K3=16.0)


def write_inputs(d: str, sizes: dict) -> dict:
    """Float32 MRC inputs in directory ``d``: image and target stacks, a target map and
    rotated noisy copies of it, of ``sizes`` (keys as :data:`SIZES`)."""
    import mrcfile

    from radsvd.bench.images import synthetic_images
    from radsvd.data.molecules import synthetic_molecule
    from radsvd.data.rotations import random_rotations

    def write(name, data, stack):
        with mrcfile.new(os.path.join(d, name), overwrite=True) as m:
            m.set_data(np.ascontiguousarray(data, dtype=np.float32))
            m.set_image_stack() if stack else m.set_volume()
            m.voxel_size = 2.0

    N = sizes["N"]
    write("targets.mrcs", synthetic_images(sizes["N_B"], N, seed=1, noise=0.0), True)
    write("images.mrcs", synthetic_images(sizes["N_A"], N, seed=2), True)
    mol = synthetic_molecule("trpv1-like")
    rng = np.random.default_rng(0)
    N3 = sizes["N3"]
    target = mol.volume(N3)
    sd = 0.5 * target.std()
    write("target.mrc", target + sd * rng.standard_normal(target.shape), False)
    for i, R in enumerate(random_rotations(sizes["n_maps"], rng=1)):
        v = mol.rotated(R).volume(N3)
        write(f"map{i:03d}.mrc", v + sd * rng.standard_normal(v.shape), False)
    return sizes


def commands(d: str, sizes: dict) -> dict:
    """Name → argv (after ``python -m radsvd``) of the benchmarked commands."""
    img = [os.path.join(d, "images.mrcs"), os.path.join(d, "targets.mrcs"),
           "--K", str(sizes["K"]), "--no-progress"]
    maps = sorted(f for f in os.listdir(d) if f.startswith("map"))
    vol = ([os.path.join(d, "target.mrc")] + [os.path.join(d, f) for f in maps]
           + ["--K", str(sizes["K3"]), "--no-progress"])
    rank2 = 6 if sizes["K"] >= 48 else 4
    rank3 = 8 if sizes["K3"] >= 48 else 4
    return {
        "align_images.full": ["align-images", *img, "--rank", "full",
                              "--out", os.path.join(d, "a_full.npz")],
        f"align_images.rank{rank2}": ["align-images", *img, "--rank", str(rank2),
                                      "--out", os.path.join(d, "a_rank.npz")],
        "align_volumes.full": ["align-volumes", *vol, "--rank", "full",
                               "--out", os.path.join(d, "v_full.npz")],
        f"align_volumes.rank{rank3}": ["align-volumes", *vol, "--rank", str(rank3),
                                       "--out", os.path.join(d, "v_rank.npz")],
    }


def run_command(argv, source: str | None = None, profile: str | None = None,
                cwd: str | None = None) -> dict:
    """Run ``python -m radsvd *argv`` in a fresh process; wall seconds and, with
    ``profile`` (a file path), the command's phases.  ``source``: a radsvd source tree put
    first on PYTHONPATH (another version); ``cwd``: the working directory (``-m`` puts it
    first on sys.path: keep it out of source trees)."""
    env = dict(os.environ)
    if source is not None:
        env["PYTHONPATH"] = os.pathsep.join([source] + [p for p in [env.get("PYTHONPATH")]
                                                        if p])
    if profile is not None:
        env["RADSVD_PROFILE"] = profile
        if os.path.exists(profile):
            os.unlink(profile)
    if "--out" in argv:   # each run writes a fresh result (the commands refuse to overwrite)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(cwd or "", argv[argv.index("--out") + 1]))
    cpu0 = _children_cpu()
    t0 = time.time()
    env["RADSVD_PROFILE_T0"] = repr(t0)
    proc = subprocess.run([sys.executable, "-m", "radsvd", *argv], env=env, cwd=cwd,
                          capture_output=True, text=True)
    wall = time.time() - t0
    cpu = _children_cpu() - cpu0
    if proc.returncode != 0:
        raise RuntimeError(f"radsvd {' '.join(argv[:1])} failed ({proc.returncode}): "
                           f"{proc.stderr.strip()[-2000:]}")
    out = dict(seconds=wall, cpu_seconds=cpu)
    if profile is not None and os.path.exists(profile):
        with open(profile) as f:
            prof = json.load(f)
        phases = prof.get("phases", {})
        for p in PHASES:
            out[f"{p}_seconds"] = float(phases.get(p, 0.0))
        out["other_seconds"] = wall - sum(out[f"{p}_seconds"] for p in PHASES)
        for k, v in prof.get("counters", {}).items():
            out[k] = float(v)
    return out


def _method_share(full: dict, rank: dict) -> dict:
    """What the compressed method can change in a whole command (from the phases, when
    profiled): ``method_speedup_vs_full``, the speedup of the phases the rank changes
    (precomputation + alignment), and ``bound_speedup_vs_full``, Amdahl's bound on the
    whole command's speedup: the full command's time over its time without those phases,
    i.e. the speedup if the compressed precomputation and alignment took no time at all."""
    keys = ("precomputation_seconds", "alignment_seconds")
    if not all(k in full and k in rank for k in keys):
        return {}
    f = sum(full[k] for k in keys)
    c = sum(rank[k] for k in keys)
    out = dict(bound_speedup_vs_full=full["seconds"] / max(full["seconds"] - f, 1e-9))
    if c > 0:
        out["method_speedup_vs_full"] = f / c
    return out


def _children_cpu() -> float:
    """User + system CPU seconds of the finished child processes (less sensitive than wall
    time to other jobs on a shared machine)."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _python_startup() -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - t


def measure(quick: bool = False, baseline: str | None = None, rounds: int | None = None,
            log=None, sizes: dict | None = None, warmup: bool = True) -> list[dict]:
    """The records (see the module docstring).  ``sizes`` (default :data:`SIZES`, or
    :data:`QUICK_SIZES` when quick), ``rounds`` (default 3, quick 1) and ``warmup`` (one
    untimed run of every command first, so that numba's cache is written) are for tests."""
    rounds = (1 if quick else 3) if rounds is None else int(rounds)
    sizes = dict(QUICK_SIZES if quick else SIZES) if sizes is None else dict(sizes)
    with tempfile.TemporaryDirectory(prefix="radsvd-e2e-") as d:
        t = time.perf_counter()
        write_inputs(d, sizes)
        t_setup = time.perf_counter() - t
        cmds = commands(d, sizes)
        prof = os.path.join(d, "profile.json")
        versions = [("", None)] + ([("baseline", os.path.abspath(baseline))]
                                   if baseline else [])
        # warm-up: numba's cache written or loaded once per version before timing
        for _, src in versions if warmup else ():
            for argv in cmds.values():
                run_command(argv, src, cwd=d)
        best: dict = {}
        help_s, py_s = np.inf, np.inf
        for r in range(rounds):
            for name, argv in cmds.items():
                for tag, src in versions:
                    key = (name, tag)
                    res = run_command(argv, src, None if src else prof, cwd=d)
                    if log:
                        log(f"bench e2e: round {r + 1}: {name} {tag or 'this'} "
                            f"{res['seconds']:.2f} s")
                    if key not in best or res["seconds"] < best[key]["seconds"]:
                        best[key] = res
            help_s = min(help_s, run_command(["--help"], cwd=d)["seconds"])
            py_s = min(py_s, _python_startup())
        # the results of the last round: compressed against full
        img_full, img_rank = (np.load(cmds[n][cmds[n].index("--out") + 1])["best_target"]
                              for n in list(cmds)[:2])
        same_images = float(np.mean(img_full == img_rank))
    params = dict(sizes, rounds=rounds, input="float32 MRC", launch="python -m radsvd")
    recs = []
    for name in cmds:
        r = dict(best[(name, "")])
        rec = dict(name=f"e2e.{name}", **r)
        full = best.get((name.split(".")[0] + ".full", ""))
        if not name.endswith(".full") and full is not None:
            rec["speedup_vs_full"] = full["seconds"] / r["seconds"]
            rec["cpu_speedup_vs_full"] = full["cpu_seconds"] / r["cpu_seconds"]
            rec.update(_method_share(full, r))
        if name.startswith("align_images.rank"):
            rec["same_best_target_as_full"] = same_images
        if baseline:
            old = best[(name, "baseline")]
            rec["speedup_vs_baseline"] = old["seconds"] / r["seconds"]
            rec["cpu_speedup_vs_baseline"] = old["cpu_seconds"] / r["cpu_seconds"]
        rec["params"] = dict(params, command=name.split(".")[0].replace("_", "-"),
                             rank=name.split(".")[1])
        recs.append(rec)
        if baseline:
            recs.append(dict(name=f"e2e.{name}.baseline", **best[(name, "baseline")],
                             params=dict(rec["params"], source=os.path.abspath(baseline))))
    recs.append(dict(name="e2e.help", seconds=help_s, python_seconds=py_s,
                     beyond_python_seconds=help_s - py_s,
                     params=dict(command="radsvd --help", rounds=rounds)))
    recs.append(dict(name="e2e.setup", seconds=t_setup,
                     params=dict(params, what="writing the MRC inputs (not judged)")))
    return recs
