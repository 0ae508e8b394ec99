"""Pose accuracy benchmark (issue 22, docs/poses.md): global rank 6, global full and rank 6 +
local refinement on simulated particles with CTF and shifts, at three SNRs.

    python -m radsvd.bench.poses --out results/poses/ [--n 200]

Particles: ``radsvd simulate`` of the ribosome-like preset, box 64 at 5.1 Å (Nyquist 10.2 Å,
as in the issue's trial), three micrographs, origins uniform in a disc of 3 px, seed 101
(the tests use other seeds and molecules).  Each configuration runs ``radsvd align-particles``
as a fresh process (``--ignore-origins``, shifts searched to 4 px), timed from launch to exit;
the three configurations of one SNR run back to back (paired, on a shared machine); then
``radsvd reconstruct`` from the poses and the FSC against the map.  Writes ``poses.json`` and
prints the markdown table.

``--likelihoods``: then the error of the rank-H log-likelihoods (radial-svd and shift-svd)
against the full ones on the first 16 particles at SNR 0.1 (``likelihoods.json``, a table).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CONFIGS = (("global rank 6", ["--rank", "6"]), ("global full", ["--rank", "full"]),
           ("rank 6 + refine", ["--rank", "6", "--refine"]))
SNRS = (("clean", "0"), ("SNR 0.1", "0.1"), ("SNR 0.05", "0.05"))
PIXEL, BOX, SHIFT_PX = 5.1, 64, 3


def _run(args) -> float:
    env = dict(os.environ)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "radsvd", *args], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - t0


def _errors(est_star, true_star):
    from radsvd.data.star import read_star
    from radsvd.data.poses import angular_errors

    est = read_star(est_star, require_ctf=False)
    tru = read_star(true_star, require_ctf=False).iloc[: len(est)]
    ang = angular_errors(est.rot, est.tilt, est.psi, tru.rot, tru.tilt, tru.psi)
    sh = np.hypot(est.shift_x.to_numpy() - tru.shift_x.to_numpy(),
                  est.shift_y.to_numpy() - tru.shift_y.to_numpy()) / PIXEL
    return ang, sh


def run(out: Path, n: int = 200, seed: int = 101) -> list:
    from radsvd.data.mrc import read_mrc
    from radsvd.volumes.fsc import fsc

    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for label, snr in SNRS:
        d = out / label.replace(" ", "_").replace(".", "")
        _run(["simulate", "--molecule", "ribosome-like", "--n", str(n), "--box", str(BOX),
              "--pixel-size", str(PIXEL), "--snr", snr, "--max-shift", str(SHIFT_PX * PIXEL),
              "--n-micrographs", "3", "--seed", str(seed), "--out", str(d)])
        truth, _ = read_mrc(d / "map.mrc")
        for name, extra in CONFIGS:
            star = d / f"{name.replace(' ', '_').replace('+', 'plus')}.star"
            secs = _run(["align-particles", str(d / "particles.star"), str(d / "map.mrc"),
                         "--max-shift", str((SHIFT_PX + 1) * PIXEL), "--ignore-origins",
                         "--no-progress", "--out", str(star), *extra]
                        + (["--no-fix-edges"] if snr == "0" else []))
            ang, sh = _errors(star, d / "particles.star")
            mrc = star.with_suffix(".mrc")
            _run(["reconstruct", str(star), "--data-dir", str(d), "--out", str(mrc),
                  "--no-progress"])
            rec, p = read_mrc(mrc)
            row = dict(snr=label, config=name, n=n, seconds=round(secs, 2),
                       angle_median=float(np.median(ang)), angle_p90=float(np.percentile(ang, 90)),
                       shift_median=float(np.median(sh)), shift_p90=float(np.percentile(sh, 90)),
                       fsc05_A=float(fsc(rec, truth, p).resolution(0.5)))
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    (out / "poses.json").write_text(json.dumps(rows, indent=1))
    return rows


def likelihood_errors(folder: Path, n: int = 16, ranks=(1, 2, 4, 6, 8, 12, 16)) -> list:
    """Errors of rank-H log-likelihoods against full (module doc) on ``folder``'s particles."""
    from radsvd.images.likelihood import particle_likelihoods
    from radsvd.images.particles import prepare_particles

    prob = prepare_particles(folder / "particles.star", folder / "map.mrc",
                             ignore_origins=True, n=n)
    full = particle_likelihoods(prob, None, max_px=SHIFT_PX + 1, step_px=1.0)
    rows = []
    for H in ranks:
        for method in ("radial-svd", "shift-svd"):
            L = particle_likelihoods(prob, H, method, max_px=SHIFT_PX + 1, step_px=1.0)
            em, ei = np.abs(L.maximum - full.maximum), np.abs(L.integrated - full.integrated)
            rows.append(dict(H=H, method=method, max_err_maximum=float(em.max()),
                             median_err_maximum=float(np.median(em)),
                             max_err_integrated=float(ei.max()),
                             median_err_integrated=float(np.median(ei)),
                             same_best=float(np.mean(np.argmax(L.integrated, 1)
                                                     == np.argmax(full.integrated, 1))),
                             spread=float(np.median(full.integrated.std(1)))))
    return rows


def likelihood_table(rows) -> str:
    lines = ["| H | max abs err, maximum | median abs err, maximum | max abs err, integrated "
             "| median abs err, integrated | same best template |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['H']} ({r['method']}) | {r['max_err_maximum']:.3g} | "
                     f"{r['median_err_maximum']:.3g} | {r['max_err_integrated']:.3g} | "
                     f"{r['median_err_integrated']:.3g} | {r['same_best']:.2f} |")
    return "\n".join(lines)


def table(rows) -> str:
    lines = ["| data | configuration | median angle | p90 angle | median shift | p90 shift "
             "| FSC 0.5 | whole command |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['snr']} | {r['config']} | {r['angle_median']:.2f}° | "
                     f"{r['angle_p90']:.2f}° | {r['shift_median']:.2f} px | "
                     f"{r['shift_p90']:.2f} px | {r['fsc05_A']:.1f} Å | {r['seconds']:.1f} s |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m radsvd.bench.poses", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="working folder (simulations, poses, json)")
    ap.add_argument("--n", type=int, default=200, help="particles per SNR (default 200)")
    ap.add_argument("--seed", type=int, default=101)
    ap.add_argument("--likelihoods", action="store_true",
                    help="also the rank-H log-likelihood errors against full")
    a = ap.parse_args(argv)
    print(table(run(Path(a.out), a.n, a.seed)))
    if a.likelihoods:
        rows = likelihood_errors(Path(a.out) / "SNR_01")
        (Path(a.out) / "likelihoods.json").write_text(json.dumps(rows, indent=1))
        print(likelihood_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
