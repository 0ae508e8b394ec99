"""``radsvd bench --e2e``: whole commands in fresh processes, their phases, and the records
that ``--compare`` guards.  Tiny inputs, one round, no warm-up (a few seconds per command)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from radsvd.bench import compare as cmp
from radsvd.bench import e2e
from radsvd.bench import write_json
from radsvd.cli import main

TINY = dict(N_A=24, N_B=16, N=24, K=10.0, n_maps=2, N3=21, K3=8.0)


@pytest.fixture(scope="module")
def records():
    return e2e.measure(sizes=TINY, rounds=1, warmup=False)


def test_records_time_whole_commands_with_their_phases(records):
    by = {r["name"]: r for r in records}
    assert set(by) == {"e2e.align_images.full", "e2e.align_images.rank4",
                       "e2e.align_volumes.full", "e2e.align_volumes.rank4", "e2e.help",
                       "e2e.setup"}
    for name in ("e2e.align_images.full", "e2e.align_images.rank4",
                 "e2e.align_volumes.full", "e2e.align_volumes.rank4"):
        r = by[name]
        phases = [r[f"{p}_seconds"] for p in e2e.PHASES]
        # every phase was marked by the command itself, inside the wall time of the process
        assert all(p > 0 for p in phases), (name, phases)
        assert sum(phases) + r["other_seconds"] == pytest.approx(r["seconds"])
        assert sum(phases) < r["seconds"]
        assert r["params"]["N_A"] == TINY["N_A"] and r["params"]["input"] == "float32 MRC"
    # the images' streamed transforms are counted in thread-seconds
    assert by["e2e.align_images.full"]["transform_thread_seconds"] > 0
    assert by["e2e.align_images.rank4"]["speedup_vs_full"] > 0
    for command in ("align_images", "align_volumes"):
        full, rank = by[f"e2e.{command}.full"], by[f"e2e.{command}.rank4"]
        method = sum(full[f"{p}_seconds"] for p in ("precomputation", "alignment"))
        # Amdahl: the whole command could not beat full / (full - what the rank changes)
        assert rank["bound_speedup_vs_full"] == pytest.approx(
            full["seconds"] / (full["seconds"] - method))
        assert rank["bound_speedup_vs_full"] > 1 and rank["method_speedup_vs_full"] > 0
    assert 0 <= by["e2e.align_images.rank4"]["same_best_target_as_full"] <= 1
    assert by["e2e.help"]["seconds"] > by["e2e.help"]["beyond_python_seconds"]


def test_baseline_source_tree_runs_interleaved(tmp_path):
    """A baseline source tree is put first on PYTHONPATH: here a copy of this radsvd whose
    CLI announces itself, so the test sees that the baseline really ran."""
    import shutil

    import radsvd

    src = tmp_path / "other"
    # with __pycache__: numba's cache (stamped with the sources' mtimes, which copy2 keeps)
    shutil.copytree(os.path.dirname(radsvd.__file__), src / "radsvd")
    main_py = src / "radsvd" / "__main__.py"
    main_py.write_text("import sys\nprint('BASELINE', file=sys.stderr)\n" + main_py.read_text())
    env = dict(os.environ, PYTHONPATH=str(src))
    out = subprocess.run([sys.executable, "-m", "radsvd", "--version"], env=env,
                         cwd=tmp_path, capture_output=True, text=True)
    assert "BASELINE" in out.stderr
    recs = e2e.measure(sizes=TINY, rounds=1, warmup=False, baseline=str(src))
    by = {r["name"]: r for r in recs}
    assert by["e2e.align_images.full.baseline"]["seconds"] > 0
    assert by["e2e.align_volumes.rank4"]["speedup_vs_baseline"] > 0


def test_compare_guards_e2e_records(records, tmp_path, capsys):
    doc = dict(schema=1, created="x", quick=True, machine={}, records=records)
    old = tmp_path / "old.json"
    new = tmp_path / "new.json"
    write_json(doc, str(old))
    slow = json.loads(json.dumps(doc))
    for r in slow["records"]:
        r["seconds"] *= 2
    write_json(slow, str(new))
    assert main(["bench", "--compare", str(old), "--new", str(new)]) == 1
    out = capsys.readouterr().out
    assert "e2e.align_volumes.rank4" in out and "REGRESSION" in out
    assert cmp.areas_of(doc)[0] == "e2e"


def test_cli_options(tmp_path, capsys):
    assert main(["bench", "--e2e-baseline", str(tmp_path)]) == 2
    assert "needs --e2e" in capsys.readouterr().err
    assert main(["bench", "--e2e", "--e2e-baseline", str(tmp_path)]) == 2
    assert "not a radsvd source tree" in capsys.readouterr().err


def test_profile_phases_of_a_command(tmp_path):
    """RADSVD_PROFILE makes the command write its phases; without it nothing is written."""
    import mrcfile

    rng = np.random.default_rng(0)
    for name in ("a.mrcs", "b.mrcs"):
        with mrcfile.new(tmp_path / name) as m:
            m.set_data(rng.standard_normal((3, 16, 16)).astype(np.float32))
    argv = ["align-images", str(tmp_path / "a.mrcs"), str(tmp_path / "b.mrcs"), "--K", "8",
            "--out", str(tmp_path / "r.npz"), "--no-progress"]
    prof = tmp_path / "p.json"
    res = e2e.run_command(argv, profile=str(prof))
    assert set(e2e.PHASES) <= {k[:-len("_seconds")] for k in res if k.endswith("_seconds")}
    assert json.loads(prof.read_text())["phases"]["startup"] > 0
    prof.unlink()
    e2e.run_command(argv)
    assert not prof.exists()


def test_fields_documented_and_headline(records):
    """docs/bench.md documents every field; the headline states the whole-command ratio."""
    from radsvd.bench import headline

    from test_bench_headline import _undocumented

    assert not _undocumented({"records": records})
    rows = headline.rows({"records": records})
    assert any("whole `align-images --rank 4`" in r[0] for r in rows)
