"""asv suite smoke (CI): the suite imports and validates (``asv check``), and a few cheap
benchmarks run through ``asv run --python=same --quick`` on a temporary machine and results
directory (HOME points to a temporary directory: no prompt, nothing written outside it)."""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ASV = str(BIN / "asv") if (BIN / "asv").exists() else shutil.which("asv")

pytestmark = pytest.mark.skipif(ASV is None, reason="asv is not installed (pip install -e '.[bench]')")

# cheap parameter sets of three benchmark classes (2D and 3D); asv names parameterised
# benchmarks "Class.method(p1, p2)"
SELECTED = {
    "bench_volumes.Wigner.time_wigner_table": "(24)",
    "bench_volumes.Wigner.track_wigner_table_bytes": "(24)",
    "bench_volumes.VolumeLandscapes.time_align_volumes": "(16, 'full')",
    "bench_images.PolarTransform.time_to_polar": "(16)",
}


@pytest.fixture(scope="module")
def asv_dir(tmp_path_factory):
    """A copy of benchmarks/asv.conf.json with every path pointing to a temporary directory."""
    d = tmp_path_factory.mktemp("asv")
    conf = json.loads((REPO / "benchmarks" / "asv.conf.json").read_text())
    conf.update(repo=str(REPO), benchmark_dir=str(REPO / "benchmarks" / "benchmarks"),
                env_dir=str(d / "env"), results_dir=str(d / "results"),
                html_dir=str(d / "html"))
    (d / "asv.conf.json").write_text(json.dumps(conf))
    env = {**os.environ, "HOME": str(d), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    res = subprocess.run([ASV, "machine", "--yes", "--machine", "ci-smoke", "--config",
                          str(d / "asv.conf.json")], capture_output=True, text=True, env=env,
                         timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "ci-smoke" in json.loads((d / ".asv-machine.json").read_text())
    return d, env


def asv(asv_dir, *args, timeout=180):
    d, env = asv_dir
    return subprocess.run([ASV, *args, "--config", str(d / "asv.conf.json")], cwd=d,
                          capture_output=True, text=True, env=env, timeout=timeout)


def test_asv_check(asv_dir):
    res = asv(asv_dir, "check", "--python=same")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "No problems found" in out, out


def test_asv_quick_run_of_selected_benchmarks(asv_dir):
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                          text=True)
    if head.returncode != 0:
        pytest.skip("not a git checkout: asv needs a commit hash to store results")
    regex = [a for name, p in SELECTED.items()
             for a in ("-b", "^" + (name + p).replace("(", r"\(").replace(")", r"\)") + "$")]
    res = asv(asv_dir, "run", "--python=same", "--quick", "--show-stderr", "--machine",
              "ci-smoke", "--set-commit-hash", head.stdout.strip(), *regex)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    files = [p for p in (asv_dir[0] / "results" / "ci-smoke").glob("*.json")
             if p.name != "machine.json"]
    assert len(files) == 1, out
    doc = json.loads(files[0].read_text())
    cols = doc["result_columns"]
    for name, p in SELECTED.items():
        assert name in doc["results"], (name, out)
        res_ = dict(zip(cols, doc["results"][name]))
        values = res_["result"]
        params = res_["params"]
        # the selected parameter set ran (finite, positive); the others were filtered out
        # (stored as NaN/None)
        ran = [i for i, v in enumerate(values) if v is not None and math.isfinite(v)]
        assert len(ran) == 1, (name, values)
        assert values[ran[0]] > 0, (name, values)
        combo = list(itertools.product(*params))[ran[0]]       # asv stores params as reprs
        assert "(" + ", ".join(combo) + ")" == p, (name, combo)
