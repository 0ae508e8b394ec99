"""``radsvd warmup``: compile every numba kernel the commands use, once, into the cache."""

from __future__ import annotations

import sys
import time

# the commands on tiny inputs, covering the kernel signatures of their usual runs: float32
# stacks and maps (single-precision transforms), full and compressed ranks, shift searches,
# CTF groups, off-grid refinement
STEPS = (
    ("simulate", ["simulate", "--n", "12", "--box", "32", "--pixel-size", "4", "--snr", "1",
                  "--max-shift", "4", "--per-micrograph", "6", "--out", "sim"]),
    ("templates", ["templates", "sim/map.mrc", "--K", "8", "--out", "t.mrcs"]),
    ("align-images", ["align-images", "sim/particles.mrcs", "t.mrcs", "--K", "8",
                      "--normalize-targets", "--refine", "--out", "full.npz"]),
    ("align-images --rank", ["align-images", "sim/particles.mrcs", "t.mrcs", "--K", "8",
                             "--rank", "4", "--refine", "--all-pairs", "--out", "rank.npz"]),
    ("align-images --rank --max-shift-px", ["align-images", "sim/particles.mrcs", "t.mrcs",
                                            "--K", "8", "--rank", "4", "--method", "shift-svd",
                                            "--max-shift-px", "1", "--out", "shifts.npz"]),
    ("align-particles", ["align-particles", "sim/particles.star", "sim/map.mrc", "--K", "8",
                         "--rank", "4", "--max-shift", "4", "--refine", "--out", "p.star"]),
    ("align-volumes", ["align-volumes", "sim/map.mrc", "sim/map.mrc", "--K", "6",
                       "--refine", "--out", "v.npz"]),
    ("align-volumes --rank", ["align-volumes", "sim/map.mrc", "sim/map.mrc", "--K", "6",
                              "--rank", "4", "--refine", "--out", "vr.npz"]),
)


def register(sub) -> None:
    p = sub.add_parser(
        "warmup", help="compile the numba kernels once (a fresh installation spends 15-60 s "
                       "on this in its first commands otherwise)",
        description="Run every command once on tiny synthetic inputs in a temporary folder, "
                    "so that numba compiles the kernels they use and writes them to its "
                    "cache (NUMBA_CACHE_DIR, or __pycache__ beside the sources).  Later "
                    "commands load them (about 1 s).  Run it again after upgrading radsvd.")
    p.set_defaults(func=_warmup)


def _warmup(args) -> int:
    import contextlib
    import io
    import os
    import tempfile

    from radsvd._jit import COMPILE_NOTICE
    from radsvd.cli import main

    t_all = time.perf_counter()
    cwd = os.getcwd()
    COMPILE_NOTICE.quiet = True
    with tempfile.TemporaryDirectory(prefix="radsvd-warmup-") as d:
        try:
            os.chdir(d)
            for i, (name, argv) in enumerate(STEPS, 1):
                print(f"warmup {i}/{len(STEPS)}: {name} ...", file=sys.stderr, flush=True)
                t = time.perf_counter()
                before = COMPILE_NOTICE.seconds
                out = io.StringIO()
                extra = [] if name == "simulate" else ["--no-progress"]
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                    rc = main(argv + extra)
                if rc != 0:
                    print(out.getvalue(), file=sys.stderr)
                    return rc
                print(f"warmup {i}/{len(STEPS)}: {name} {time.perf_counter() - t:.1f} s "
                      f"({COMPILE_NOTICE.seconds - before:.1f} s compiling)", file=sys.stderr)
        finally:
            os.chdir(cwd)
    print(f"warmup: done in {time.perf_counter() - t_all:.0f} s", file=sys.stderr)
    return 0
