"""docs/performance.md generator (radsvd.bench.report): a small benchmark document rendered,
every number taken from it, every record shown, bad documents refused."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from radsvd._validate import InputError
from radsvd.bench.report import main, num, render

MACHINE = dict(platform="Linux-x86_64", python="3.11.7", numpy="2.4.6", numba="0.68.1",
               cpus=2, threads=2, cpu="Test CPU @ 2.0GHz", blas=["openblas 0.3.30 Haswell"])
IMG = dict(N_A=1024, N_B=993, K=48.0, R=49, Q=98, N=64, rounds=5)
VOL = dict(K=48.0, R=49, L=48, M=98, n_beta=98, n_volumes=96, block=8, rounds=3)


def small_doc():
    return {"schema": 1, "created": "2026-12-03T08:00:00Z", "quick": False,
            "machine": MACHINE, "records": [
                dict(name="images.numpy_baseline", seconds=1.1, pairs_per_s=924_000.0,
                     params=dict(IMG, tile=[64, 64])),
                dict(name="images.full", seconds=0.44, pairs_per_s=2_311_000.0,
                     ratio_vs_numpy=2.5, params=dict(IMG, precision="double")),
                dict(name="images.rank6", seconds=0.105, pairs_per_s=9_684_000.0,
                     speedup_vs_full=4.19, ideal_speedup=49 / 6, params=dict(IMG, H=6)),
                dict(name="images.rank6.accuracy", seconds=0.3, f_single=0.99712,
                     corr_single=0.96321, abs_diff_f=2e-11, abs_diff_corr=3e-11,
                     params=dict(IMG, N_A=256, H=6)),
                dict(name="images.streaming_memory.full", seconds=0.0, peak_bytes=148e6,
                     peak_bytes_small=140e6, extrapolated_gib_1e5=0.29,
                     params=dict(N_B=1024, N_A=[512, 2048])),
                dict(name="volumes.full", seconds=0.2006, per_pair_ms=2.09,
                     ratio_vs_numpy=97.6, precompute_seconds=0.00096, step1_seconds=0.0893,
                     step2_seconds=0.0941, step3_seconds=0.01536, step3_m2_fraction=0.031,
                     step3_m1_fraction=0.004, compressible_fraction=0.92, params=VOL),
                dict(name="volumes.numpy_baseline", seconds=19.6, per_pair_ms=204.0,
                     params=dict(VOL, measured_on=4)),
                dict(name="volumes.rank8", seconds=0.0758, per_pair_ms=0.79,
                     speedup_vs_full=2.63, speedup_vs_full_with_wigner=2.41, ideal_speedup=6.0,
                     precompute_seconds=0.00672, step0_seconds=0.01248, step1_seconds=0.024,
                     step1b_seconds=0.0, step2_seconds=0.01344, step3_seconds=0.0192,
                     step3_m2_fraction=0.039, step3_m1_fraction=0.007, correlation=0.9213,
                     f=1.0, same_best_as_full=1.0, params=dict(VOL, H_C=8, H_D=8)),
                dict(name="volumes.wigner", seconds=0.009, megabytes=32.1,
                     n_beta_distinct=50.0, params=VOL),
                dict(name="e2e.align_images", seconds=3.25, startup_seconds=0.41,
                     params=dict(n_images=1024)),
            ]}


def test_renders_every_record_with_its_numbers():
    page = render(small_doc(), note="loaded by other jobs")
    assert page.startswith("# Performance\n")
    # header: date, machine, software, the note
    assert "2026-12-03T08:00:00Z" in page and "Test CPU @ 2.0GHz, 2 CPUs" in page
    assert "numpy 2.4.6" in page and "openblas 0.3.30 Haswell" in page
    assert "Note: loaded by other jobs" in page
    # 2D table from the records, numbers formatted from the document
    assert "| full path (all R rings, float64) | 0.44 | 2.31e6 | 2.5× numpy |" in page
    assert "4.19× full (ideal R/H = 8.17)" in page
    assert "f = 0.9971 and correlation 0.9632" in page
    assert "148 MB at N_A = 2048" in page and "0.29 GiB" in page
    # 3D table: per-pair milliseconds from the step seconds (÷ 96 volumes)
    assert "| full path (float64) | 2.09 | 0.01 |  | 0.93 | 0.98 | 0.16 | 97.6× numpy |" in page
    assert ("| H = 8 (float32 steps 2–3), precomputation included | 0.79 | 0.07 | 0.13 | "
            "0.25 | 0.14 | 0.2 | 2.63× full (ideal K/H = 6) |") in page
    assert "2.41× at H = 8" in page and "32.1 MB" in page
    assert "full path 3.1% of the β slices" in page and "92% of the full path's time" in page
    # a record no section knows is listed with all its fields
    others = page.split("## Other records", 1)[1]
    assert "`e2e.align_images` | 3.25 | startup_seconds = 0.41 | n_images = 1024" in others
    assert "images.full" not in others and "volumes.rank8" not in others
    assert page.endswith("\n") and "## Regenerating this page" in page


E2E = dict(N_A=1024, N_B=993, N=64, K=48.0, n_maps=24, N3=65, K3=48.0, rounds=3)


def test_whole_commands_table():
    phases = dict(startup_seconds=0.5, reading_seconds=0.002, transform_seconds=0.55,
                  writing_seconds=0.002, cpu_seconds=2.1)
    doc = small_doc()
    doc["records"] += [
        dict(name="e2e.align_volumes.full", seconds=1.7, precomputation_seconds=0.0,
             alignment_seconds=0.5, **phases, params=E2E),
        dict(name="e2e.align_volumes.rank8", seconds=1.5, precomputation_seconds=0.004,
             alignment_seconds=0.33, speedup_vs_full=1.7 / 1.5, method_speedup_vs_full=1.5,
             bound_speedup_vs_full=1.7 / 1.2, speedup_vs_baseline=5.0, **phases, params=E2E),
        dict(name="e2e.align_volumes.rank8.baseline", seconds=7.5, params=E2E),
        dict(name="e2e.help", seconds=0.05, beyond_python_seconds=0.03, params={}),
    ]
    page = render(doc)
    table = page.split("## Whole commands", 1)[1].split("## Other records", 1)[0]
    assert ("| `align-volumes --rank 8` | 1.5 (2.1) | 0.5 | 0.002 | 0.55 | 0.004 | 0.33 | "
            "0.002 | 1.13× | 1.5× | 1.42× | 5× (7.5 s) |") in table
    assert "| `align-volumes --rank full` | 1.7 (2.1) |" in table
    assert "24 maps of 65³ voxels" in table and "0.03 s beyond `python -c pass`" in table
    others = page.split("## Other records", 1)[1]
    assert "e2e.align_volumes" not in others and "e2e.help" not in others


def test_absent_areas_are_left_out():
    doc = small_doc()
    doc["records"] = [r for r in doc["records"] if r["name"].startswith("images.")]
    page = render(doc)
    assert "## 2D: image alignment" in page and "## 3D" not in page
    assert "## Other records" not in page and "Note:" not in page


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(records=[]), "no records"),
    (lambda d: d.pop("records"), "not a radsvd benchmark document"),
    (lambda d: d["records"][0].update(seconds=-1.0), "no valid 'seconds'"),
    (lambda d: d["records"].append(dict(d["records"][0])), "duplicate record name"),
])
def test_bad_documents_are_refused(mutate, message):
    doc = small_doc()
    mutate(doc)
    with pytest.raises(InputError, match=message):
        render(doc)


def test_number_format():
    assert num(2_311_000.0) == "2.31e6" and num(0.44) == "0.44" and num(97.6) == "97.6"
    assert num(1234.0) == "1234" and num(21669.0) == "2.17e4" and num(2e-11) == "2.00e-11"
    assert num(3) == "3" and num(0.0) == "0"


def test_command_line(tmp_path, capsys):
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(small_doc()))
    out = tmp_path / "docs" / "performance.md"
    assert main([str(path), "--note", "a test", "-o", str(out)]) == 0
    assert out.read_text() == render(small_doc(), note="a test")
    assert main([str(path)]) == 0
    assert capsys.readouterr().out == render(small_doc())
    (tmp_path / "bad.json").write_text("{not json")
    res = subprocess.run([sys.executable, "-m", "radsvd.bench.report", str(tmp_path / "bad.json")],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "radsvd.bench.report: error:" in res.stderr and "not valid JSON" in res.stderr
