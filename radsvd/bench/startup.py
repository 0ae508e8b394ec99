"""First run against later runs (``radsvd bench --only startup``): every command, cold and warm.

Each command runs as a fresh process (``python -m radsvd ...``) twice with its own numba
cache folder (``NUMBA_CACHE_DIR``): first empty (**cold**: a fresh installation, or the
``__pycache__/*.nbi``/``*.nbc`` files cleared; numba reads only that folder when it is set),
then holding what the first run wrote (**warm**: every later run).  Records
``startup.<command>``: ``seconds`` = the warm run, ``cold_seconds``, ``compile_seconds`` =
cold − warm (numba's compilation and cache writing), ``cold_over_warm``, and ``cpu_seconds``
/ ``cold_cpu_seconds`` (user + system).  Inputs: the quick sizes of :mod:`radsvd.bench.e2e`
(so the warm runs are start-up dominated), a 12-particle simulation for ``align-particles``.
``warmup`` and ``bench --quick`` are included (``quick``: without them, the slowest).
Not in the default areas: a cold run compiles every kernel again (minutes on 2 cores).
"""

from __future__ import annotations

import os
import tempfile

from radsvd.bench.e2e import QUICK_SIZES, commands, run_command, write_inputs


def _commands(d: str) -> dict:
    e2e = commands(d, QUICK_SIZES)
    sim = os.path.join(d, "sim")
    out = {
        "simulate": ["simulate", "--n", "12", "--box", "32", "--out", sim],
        "info": ["info", os.path.join(sim, "particles.star")],
        "templates": ["templates", os.path.join(sim, "map.mrc"), "--K", "8", "--no-progress",
                      "--out", os.path.join(d, "templates.mrcs")],
    }
    for name, argv in e2e.items():
        out[name.replace("_", "-").replace(".rank", " --rank ").replace(".full", " --rank full")
            .replace("--rank ", "--rank=")] = argv
    out["align-particles"] = ["align-particles", os.path.join(sim, "particles.star"),
                              os.path.join(sim, "map.mrc"), "--K", "8", "--max-shift", "4",
                              "--no-progress", "--out", os.path.join(d, "poses.star")]
    out["plot"] = ["plot", os.path.join(d, "poses.npz"), "--out",
                   os.path.join(d, "poses.png")]
    out["warmup"] = ["warmup"]
    out["bench --quick"] = ["bench", "--quick"]
    return out


def measure(quick: bool = False, log=None) -> list[dict]:
    records = []
    with tempfile.TemporaryDirectory(prefix="radsvd-startup-") as d:
        write_inputs(d, QUICK_SIZES)
        cmds = _commands(d)
        if quick:
            cmds = {k: v for k, v in cmds.items() if k not in ("warmup", "bench --quick")}
        for name, argv in cmds.items():
            runs = []
            with tempfile.TemporaryDirectory(prefix="radsvd-numba-cache-") as cache:
                for _ in ("cold", "warm"):
                    _clean(argv)
                    runs.append(_with_cache(cache, argv, d))
            cold, warm = runs
            if log:
                log(f"bench startup: {name}: cold {cold['seconds']:.1f} s, "
                    f"warm {warm['seconds']:.1f} s")
            records.append(dict(
                name="startup." + name.replace(" --rank=full", ".full")
                .replace(" --rank=", ".rank").replace(" --", "."),
                seconds=warm["seconds"], cold_seconds=cold["seconds"],
                compile_seconds=cold["seconds"] - warm["seconds"],
                cold_over_warm=cold["seconds"] / warm["seconds"],
                cpu_seconds=warm["cpu_seconds"], cold_cpu_seconds=cold["cpu_seconds"],
                params=dict(command="radsvd " + " ".join(
                    a if not a.startswith(d) else "…" + a[len(d):] for a in argv),
                    sizes="quick e2e sizes", cache="own NUMBA_CACHE_DIR, empty when cold",
                    launch="python -m radsvd")))
    return records


def _clean(argv) -> None:
    """Remove the outputs of a previous run (the commands refuse to overwrite them)."""
    import shutil

    if "--out" not in argv:
        return
    out = argv[argv.index("--out") + 1]
    stem, ext = os.path.splitext(out)
    beside = {".mrcs": [stem + ".star"], ".star": [stem + ".npz"]}.get(ext, [])
    for p in [out, *beside]:
        if os.path.isdir(p):
            shutil.rmtree(p)
        elif os.path.exists(p):
            os.unlink(p)


def _with_cache(cache: str, argv, cwd: str) -> dict:
    old = os.environ.get("NUMBA_CACHE_DIR")
    os.environ["NUMBA_CACHE_DIR"] = cache
    try:
        return run_command(argv, cwd=cwd)
    finally:
        if old is None:
            del os.environ["NUMBA_CACHE_DIR"]
        else:
            os.environ["NUMBA_CACHE_DIR"] = old
