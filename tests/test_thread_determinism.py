"""Bitwise identity for any thread count (docs/design.md, Determinism; issue 27 item 5).

The same commands run in two fresh processes, one with NUMBA_NUM_THREADS=1 and one with 2 (as a
user's machine would set it), on a small simulated set with CTF and origins: every array of
every output .npz and every STAR value must be the same bits.  The paths are the ones the
hostile-input probe caught: ``--rank full --refine --max-shift``, ``--method shift-svd --rank 6
--max-shift --refine``, ``--rank full`` without refinement, and align-images with shifts and
all pairs.  (The cause was finufft's multi-threaded FFT, which rounds differently per thread
count: every finufft plan now runs on one thread, stacks are split over the pool.)
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from radsvd.data.molecules import synthetic_molecule
from radsvd.data.simulate import Microscope, simulate_particles, write_particles
from radsvd.data.mrc import write_mrc

N, P, K = 40, 6.4, 12.0

RUNS = {
    "full_refine": ["--rank", "full", "--refine", "--max-shift", str(3 * P)],
    "shift_svd": ["--method", "shift-svd", "--rank", "6", "--max-shift", str(2 * P),
                  "--refine"],
    "full": ["--rank", "full"],
}

SCRIPT = """
import sys
from radsvd.cli import main
d, star, mrc, imgs, tgts = sys.argv[1:6]
runs = {runs!r}
for name, extra in runs.items():
    assert main(["align-particles", star, mrc, "--K", "{K}", "--no-progress",
                 "--out", f"{{d}}/{{name}}.star", *extra]) == 0
assert main(["align-images", imgs, tgts, "--K", "{K}", "--rank", "full", "--all-pairs",
             "--refine", "--max-shift-px", "3", "--out", f"{{d}}/images.npz", "--no-progress"]) == 0
"""


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    d = tmp_path_factory.mktemp("threads")
    mol = synthetic_molecule("trpv1-like")
    imgs, table = simulate_particles(mol, 24, N, P, snr=0.5, seed=3, max_shift=2 * P,
                                     microscope=Microscope(n_micrographs=2))
    paths = write_particles(d, imgs, table, volume=mol.volume(N))
    write_mrc(d / "images.mrcs", imgs[:12].astype(np.float32), P)
    write_mrc(d / "targets.mrcs", imgs[12:].astype(np.float32), P)
    return d, paths


def _run(sim, threads: int, tmp_path):
    d, paths = sim
    out = tmp_path / f"t{threads}"
    out.mkdir()
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads))
    code = SCRIPT.format(runs=RUNS, K=K)
    subprocess.run([sys.executable, "-c", code, str(out), str(paths["star"]),
                    str(paths["map"]), str(d / "images.mrcs"), str(d / "targets.mrcs")],
                   env=env, check=True, capture_output=True, timeout=300)
    return out


def _star_values(path):
    """The STAR text without comment lines (they carry the time of writing)."""
    return [line for line in path.read_text().splitlines() if not line.startswith("#")]


def test_results_are_bitwise_independent_of_the_thread_count(sim, tmp_path):
    one, two = _run(sim, 1, tmp_path), _run(sim, 2, tmp_path)
    for name in [*RUNS, "images"]:
        a, b = np.load(one / f"{name}.npz"), np.load(two / f"{name}.npz")
        assert a.files == b.files
        for key in a.files:
            if key == "info_write_id":
                continue
            x, y = a[key], b[key]
            assert x.dtype == y.dtype and x.shape == y.shape, (name, key)
            assert x.tobytes() == y.tobytes(), f"{name}: {key} depends on the thread count"
        if name in RUNS:
            assert _star_values(one / f"{name}.star") == _star_values(two / f"{name}.star")
