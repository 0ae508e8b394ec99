"""Volume fitting, radsvd against EMalign 1.0.5 on the same pairs (issue 23): angle error,
shift error and seconds per pair, side by side.

Pairs: closed-form Gaussian pseudo-molecules of radsvd (``ribosome-like`` on a 64³ box,
``trpv1-like`` on a 20³ box), float32 maps at 3 Å per voxel, the copy rotated by a random
rotation (seeded, uniform on SO(3)), optionally moved by a random shift of at most 3 voxels
(uniform in the ball) and given independent white noise on both maps at SNR 0.5 (noise
variance = the clean map's variance over the box / 0.5).  radsvd runs in this process
(``align_volume_maps``, defaults: K from the box, translation within 4 voxels, both hands,
joint refinement; full rank and rank 8) after one warm-up call; EMalign runs in its own
virtual environment (it needs numpy < 2.3) as a subprocess on the same maps, with its
defaults, timed inside that process (even boxes: 1.0.5 fails on odd ones, a shape
mismatch of 65³ against 65·65·64 in its final correlation).  EMalign's rotation is compared
after the one change of convention (transpose and/or reversed axis order) that fits its
clean pairs best; a pair it reports mirrored has the wrong hand (no pair is mirrored).

    python benchmarks/volume_peers.py --pairs 5 --emalign-python venv-emalign/bin/python \
        --json results/volume_peers.json --markdown results/volume_peers.md

EMalign: ``python -m venv venv-emalign && venv-emalign/bin/pip install
"numpy<2.3" emalign==1.0.5`` (a benchmark-only dependency, never imported by radsvd).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

import radsvd  # noqa: F401  (sets the thread environment before numpy's BLAS starts)
from radsvd.data.molecules import GaussianMolecule, synthetic_molecule
from radsvd.volumes import align_volume_maps

CASES = {  # name: (molecule, box, shift in voxels (max), SNR or None)
    "ribosome64.clean": ("ribosome-like", 64, 0.0, None),
    "ribosome64.noisy": ("ribosome-like", 64, 0.0, 0.5),
    "ribosome64.shift": ("ribosome-like", 64, 3.0, None),
    "ribosome64.shift_noisy": ("ribosome-like", 64, 3.0, 0.5),
    "small20.shift": ("trpv1-like", 20, 3.0, None),
}
VOXEL = 3.0

EMALIGN_DRIVER = r"""
import json, sys, time, warnings, numpy as np
warnings.simplefilter("ignore")
from src.align_volumes_3d import align_volumes
class Opt:
    no_refine = False
d = np.load(sys.argv[1])
out = []
opt = Opt()
N = d["vols"].shape[1]
opt.downsample = 64            # its default
for i in range(d["vols"].shape[0]):
    t0 = time.perf_counter()
    R, dx, reflect, _, corr = align_volumes(d["target"][i].astype(np.float64),
                                            d["vols"][i].astype(np.float64), verbose=0,
                                            opt=opt)
    out.append(dict(R=np.asarray(R).tolist(), dx=np.asarray(dx).ravel().tolist(),
                    reflect=int(reflect), corr=float(corr),
                    seconds=time.perf_counter() - t0))
json.dump(out, open(sys.argv[2], "w"))
"""


def random_rotation(rng) -> np.ndarray:
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def make_pairs(case: str, n: int, seed: int = 0):
    """(targets, volumes, rotations, shifts in voxels) of ``n`` pairs of ``case``."""
    name, N, max_shift, snr = CASES[case]
    mol = synthetic_molecule(name)
    rng = np.random.default_rng(seed)
    clean = mol.volume(N)
    tg, vols, rots, shifts = [], [], [], []
    for _ in range(n):
        R = random_rotation(rng)
        d = rng.normal(size=3)
        s = d / np.linalg.norm(d) * max_shift * rng.uniform() ** (1 / 3)
        moved = GaussianMolecule(mol.centers @ R.T + s * 2.0 / N, mol.sigmas, mol.weights)
        v, t = moved.volume(N), clean.copy()
        if snr is not None:
            sd = np.sqrt(clean.var() / snr)
            v = v + rng.normal(scale=sd, size=v.shape)
            t = t + rng.normal(scale=sd, size=t.shape)
        tg.append(t.astype(np.float32))
        vols.append(v.astype(np.float32))
        rots.append(R)
        shifts.append(s)
    return np.array(tg), np.array(vols), np.array(rots), np.array(shifts)


def angle_deg(R1, R2) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(R1.T @ R2) - 1) / 2, -1, 1))))


def run_radsvd(tg, vols, rots, shifts, rank):
    N = tg.shape[1]
    rows = []
    for t, v, R, s in zip(tg, vols, rots, shifts):
        t0 = time.perf_counter()
        res = align_volume_maps(v, t, rank=rank, voxel_sizes=(VOXEL, [VOXEL]),
                                max_shift=4.0 * VOXEL)
        sec = time.perf_counter() - t0
        tv_true = -R.T @ s                        # voxels: y = Rᵀ (x - s)
        rows.append(dict(angle=angle_deg(res.matrix[0], R.T),
                         shift=float(np.linalg.norm(res.shift[0] / VOXEL - tv_true)),
                         mirrored=bool(res.mirrored[0]), score=float(res.score[0]),
                         rank_used=str(res.info["rank_used"]), seconds=sec, N=N))
    return rows


def run_emalign(python, tg, vols, workdir):
    pairs = os.path.join(workdir, "pairs.npz")
    out = os.path.join(workdir, "emalign.json")
    driver = os.path.join(workdir, "driver.py")
    np.savez(pairs, target=tg, vols=vols)
    with open(driver, "w") as f:
        f.write(EMALIGN_DRIVER)
    env = dict(os.environ, PYTHONPATH="", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS",
                                                                         "2"))
    subprocess.run([python, driver, pairs, out], check=True, env=env, cwd=workdir,
                   stdout=subprocess.DEVNULL)
    with open(out) as f:
        return json.load(f)


CONVENTIONS = {  # EMalign's R → the rotation moving the map onto the target, (x, y, z)
    "R": lambda R, P: R, "R^T": lambda R, P: R.T,
    "P R P": lambda R, P: P @ R @ P, "P R^T P": lambda R, P: P @ R.T @ P}


def emalign_errors(results, rots, convention):
    P = np.eye(3)[::-1]
    f = CONVENTIONS[convention]
    return [angle_deg(f(np.asarray(r["R"]), P), R.T) for r, R in zip(results, rots)]


def summary(values):
    v = np.asarray(values, float)
    return dict(median=float(np.median(v)), max=float(np.max(v)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--emalign-python", default=None,
                   help="python of a venv with emalign 1.0.5 (omit to skip EMalign)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--markdown", default=None)
    args = ap.parse_args(argv)
    cases = args.cases.split(",")
    # warm-up: numba compilation and the first plans, outside every timing
    tg, vols, rots, shifts = make_pairs("small20.shift", 1, seed=99)
    run_radsvd(tg, vols, rots, shifts, None)
    run_radsvd(tg, vols, rots, shifts, 8)
    report, em_raw = {}, {}
    for case in cases:
        tg, vols, rots, shifts = make_pairs(case, args.pairs)
        rec = {}
        for label, rank in (("radsvd full", None), ("radsvd rank 8", 8)):
            rows = run_radsvd(tg, vols, rots, shifts, rank)
            rec[label] = dict(angle=summary([r["angle"] for r in rows]),
                              shift=summary([r["shift"] for r in rows]),
                              seconds=float(np.median([r["seconds"] for r in rows])),
                              mirrored=sum(r["mirrored"] for r in rows),
                              rank_used=sorted({r["rank_used"] for r in rows}))
            print(case, label, rec[label], file=sys.stderr, flush=True)
        if args.emalign_python:
            with tempfile.TemporaryDirectory() as wd:
                em_raw[case] = (run_emalign(args.emalign_python, tg, vols, wd), rots)
        report[case] = rec
    if em_raw:
        clean = [c for c in em_raw if "noisy" not in c] or list(em_raw)
        convention = min(CONVENTIONS, key=lambda k: np.median(np.concatenate(
            [emalign_errors(*em_raw[c], k) for c in clean])))
        for case, (res, rots) in em_raw.items():
            report[case]["EMalign 1.0.5"] = dict(
                angle=summary(emalign_errors(res, rots, convention)),
                seconds=float(np.median([r["seconds"] for r in res])),
                mirrored=sum(r["reflect"] for r in res), convention=convention)
            print(case, "EMalign", report[case]["EMalign 1.0.5"], file=sys.stderr, flush=True)
    doc = dict(pairs=args.pairs, voxel_size=VOXEL, load=os.getloadavg(), cases=report)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
    lines = ["| case | method | angle error median / max (°) | shift error median / max "
             "(voxels) | s per pair (median) |", "| --- | --- | --- | --- | --- |"]
    for case, rec in report.items():
        for label, r in rec.items():
            sh = (f"{r['shift']['median']:.3f} / {r['shift']['max']:.3f}"
                  if "shift" in r else "")
            lines.append(f"| {case} | {label} | {r['angle']['median']:.3f} / "
                         f"{r['angle']['max']:.3f} | {sh} | {r['seconds']:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
