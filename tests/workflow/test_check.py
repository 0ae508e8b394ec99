"""The reproducibility check (workflow/scripts/wf_check.py, wf_claims.py, wf_figdata.py;
docs/reproducibility.md): figure data written and read back with units and kinds, every kind
of comparison passing within its tolerance and failing beyond it, and the committed
reference set complete, small, self-consistent and holding the paper's claims.  Fast: no
workflow run (the tiny end-to-end test in test_workflow.py runs the pipeline twice)."""

from __future__ import annotations

import math
import re
import sys

import numpy as np
import pandas as pd
import pytest

from tests.workflow.test_workflow import REPO, SNAKEMAKE, dry_run, run_snakemake

sys.path.insert(0, str(REPO / "workflow" / "scripts"))
from wf_check import TOLERANCES, basis_rotation, check_figure  # noqa: E402
from wf_claims import paper_claims  # noqa: E402
from wf_figdata import (  # noqa: E402
    ACCURACY_COLUMNS,
    EIGENGAP_COLUMNS,
    read_figure_data,
    write_figure_data,
)

REFERENCE = REPO / "figures"
# figure key -> stem of the reference figures (the README's table links them)
REFERENCE_FIGURES = {
    "fig01": "fig01_images", "fig02": "fig02_two_rings_useful",
    "fig03": "fig03_two_rings_amplitude", "fig04": "fig04_spectrum_C",
    "fig05": "fig05_landscape_image_template", "fig06": "fig06_landscape_image_image",
    "fig07": "fig07_gallery", "fig08": "fig08_image_alignment", "fig09": "fig09_isosurfaces",
    "fig10": "fig10_volume_spectra", "fig11": "fig11_volume_alignment",
    "fig12": "fig12_datasets", "fig16": "fig16_shifts"}
# the figures of measured times: only their CSVs are committed (times stored, not compared)
TIMING_FIGURES = {"fig08_speedup": "fig08_speedup", "fig11_speedup": "fig11_speedup",
                  "fig13": "fig13_speedup_vs_K", "fig14": "fig14_method_comparison",
                  "fig15": "fig15_timings"}


def _accuracy_table(directory, stem="figX_accuracy", **changes):
    H = np.array([1, 2, 4, 8, 33])
    df = pd.DataFrame({"H": H, "frobenius_error": [0.9, 0.5, 0.1, 0.01, 1e-7],
                       "correlation": [0.5, 0.8, 0.97, 0.999, 1.0],
                       "backward_f": [0.7, 0.9, 0.98, 0.999, 1.0],
                       "speedup": [9.0, 6.0, 3.0, 1.8, 0.9]})
    for column, (row, delta) in changes.items():
        df.loc[row, column] += delta
    columns = {**ACCURACY_COLUMNS, "speedup": ("1", "timing", "measured speedup")}
    write_figure_data(directory / f"{stem}.png", df, columns, "a test table")
    return stem


def _check(run, ref, stem="figX_accuracy"):
    return check_figure("figX", stem, False, run, ref)


def test_figure_data_round_trip_keeps_units_kinds_and_float64(tmp_path):
    x = np.array([1 / 3, np.pi * 1e-12, 2.0 ** -40])
    df = pd.DataFrame({"i": [0, 1, 2], "v": x})
    path = write_figure_data(tmp_path / "f.png", df, {"i": ("1", "key", "index"),
                                                      "v": ("s", "timing", "a time")}, "what")
    assert path.name == "f.csv"
    back, meta = read_figure_data(path)
    assert meta["columns"] == {"i": ("1", "key", "index"), "v": ("s", "timing", "a time")}
    assert np.array_equal(back.v.to_numpy(), x)         # 17 digits: float64 exactly
    with pytest.raises(ValueError, match="unknown kinds"):
        write_figure_data(tmp_path / "g.png", df, {"i": ("1", "weird", "?")}, "what")


def test_identical_data_pass_and_timings_are_not_compared(tmp_path):
    (tmp_path / "run").mkdir(), (tmp_path / "ref").mkdir()
    _accuracy_table(tmp_path / "ref")
    _accuracy_table(tmp_path / "run", speedup=(0, 5.0))     # another machine's time
    res = _check(tmp_path / "run", tmp_path / "ref")
    assert res.passed, res.problems
    assert {c.column for c in res.columns} == {"frobenius_error", "correlation", "backward_f",
                                               "speedup"}
    assert res.worst.ratio == 0.0


@pytest.mark.parametrize("column, row, scale", [
    ("correlation", 2, TOLERANCES["correlation"]["abs"]),
    ("backward_f", 1, TOLERANCES["fraction"]["abs"]),
    # Frobenius errors: tolerance relative to the value (above the rounding floor)
    ("frobenius_error", 1, TOLERANCES["frobenius"]["rel"] * 0.5
     + TOLERANCES["frobenius"]["floor"]),
])
def test_a_perturbed_number_fails_beyond_its_tolerance_only(tmp_path, column, row, scale):
    (tmp_path / "ref").mkdir()
    _accuracy_table(tmp_path / "ref")
    for factor, passes in ((0.5, True), (3.0, False)):
        run = tmp_path / f"run{factor}"
        run.mkdir()
        _accuracy_table(run, **{column: (row, factor * scale)})
        res = _check(run, tmp_path / "ref")
        assert res.passed is passes, (factor, res.problems)
        if not passes:
            assert column in res.problems[0] and res.worst.column == column
            assert res.worst.ratio == pytest.approx(factor, rel=1e-3)


def test_a_time_that_is_missing_fails(tmp_path):
    (tmp_path / "run").mkdir(), (tmp_path / "ref").mkdir()
    _accuracy_table(tmp_path / "ref")
    _accuracy_table(tmp_path / "run", speedup=(3, math.nan))
    res = _check(tmp_path / "run", tmp_path / "ref")
    assert not res.passed and "speedup" in res.problems[0]


def test_rows_columns_and_tables_must_match_the_reference(tmp_path):
    ref, run = tmp_path / "ref", tmp_path / "run"
    ref.mkdir(), run.mkdir()
    _accuracy_table(ref)
    df, meta = read_figure_data(ref / "figX_accuracy.csv")
    write_figure_data(run / "figX_accuracy.png", df.iloc[:-1], meta["columns"], "short")
    res = _check(run, ref)
    assert not res.passed and "1 missing" in res.problems[0]
    cols = dict(meta["columns"], correlation=("1", "fraction", "kind changed"))
    write_figure_data(run / "figX_accuracy.png", df, cols, "kind changed")
    assert "kinds differ" in _check(run, ref).problems[0]
    _accuracy_table(run)
    write_figure_data(run / "figX_accuracy.png", df, meta["columns"], "extra", table="more")
    assert "tables" in _check(run, ref).problems[0]
    assert "no reference data" in check_figure("figX", "figX_accuracy", False, run,
                                               tmp_path / "empty").problems[0]


def test_signal_spectrum_angle_and_pose_error_kinds(tmp_path):
    ref, run = tmp_path / "ref", tmp_path / "run"
    ref.mkdir(), run.mkdir()
    cols = {"panel": ("-", "key", "panel"), "j": ("1", "key", "index"),
            "value": ("a.u.", "signal", "pixels"), "lam": ("1", "spectrum", "λ/λ1"),
            "argmax_deg": ("deg", "angle", "argmax"), "grid_step_deg": ("deg", "exact", "step"),
            "err_deg": ("deg", "pose_error", "median"), "grid_spacing_deg": ("deg", "exact", "s")}
    base = pd.DataFrame({"panel": ["a"] * 4 + ["b"] * 4, "j": list(range(4)) * 2,
                         "value": [1.0, -2.0, 0.5, 0.0, 1e3, 2e3, -5e2, 1.0],
                         "lam": [1.0, 1e-3, 1e-9, 1e-17] * 2,
                         "argmax_deg": [0.0, 10.0, 350.0, 20.0] * 2,
                         "grid_step_deg": [10.0] * 8, "err_deg": [3.0] * 8,
                         "grid_spacing_deg": [9.0] * 8})
    write_figure_data(ref / "s.png", base, cols, "ref", scale_by="panel")

    def check(**changes):
        df = base.copy()
        for column, (row, value) in changes.items():
            df.loc[row, column] = value
        write_figure_data(run / "s.png", df, cols, "run", scale_by="panel")
        return check_figure("s", "s", False, run, ref)

    assert check().passed
    sig = TOLERANCES["signal"]["scale"]
    # signal: relative to the panel's largest |value| (panel b is 1000× panel a)
    assert check(value=(7, 1.0 + 0.5 * sig * 2e3)).passed
    assert not check(value=(3, 0.0 + 2 * sig * 2.0)).passed
    # spectrum: rounding-level eigenvalues (1e-17) may move anywhere below the floor ...
    assert check(lam=(3, -5e-17)).passed
    # ... but λ_h/λ_1 = 1e-3 may not move by 1e-9
    assert not check(lam=(1, 1e-3 + 1e-9)).passed
    # angles: exact on so few values (share 1 %: no flip allowed); the wrap-around 0 ≡ 360
    assert check(argmax_deg=(0, 360.0)).passed
    assert not check(argmax_deg=(1, 20.0)).passed
    # pose errors: within one step of the search grid
    assert check(err_deg=(2, 3.0 + 9.0)).passed
    assert not check(err_deg=(2, 3.0 + 9.5)).passed


def test_frobenius_error_of_a_truncation_inside_a_rounding_level_eigengap(tmp_path):
    """Davis–Kahan: where λ_H − λ_{H+1} is rounding, the kept subspace (and the Frobenius
    error) is undetermined and tolerated up to 2 with a note; where the gap is wide the
    plain rounding tolerance of the products holds; no kernel (NaN) → plain tolerance."""
    ref, run = tmp_path / "ref", tmp_path / "run"
    ref.mkdir(), run.mkdir()
    cols = {**ACCURACY_COLUMNS, **EIGENGAP_COLUMNS}
    base = pd.DataFrame({"H": [1, 6, 12], "frobenius_error": [0.7, 0.04, 2e-3],
                         "correlation": [0.9, 0.999, 1.0], "backward_f": [0.99, 1.0, 1.0],
                         "lambda_H": [1.0, 2e-7, 2.6e-16],
                         "lambda_next": [0.1, 3.6e-9, 6.2e-17]})
    write_figure_data(ref / "s.png", base, cols, "ref")

    def check(df):
        write_figure_data(run / "s.png", df, cols, "run")
        return check_figure("s", "s", False, run, ref)

    moved = base.copy()
    moved.loc[2, "frobenius_error"] = 4.1e-3      # the gap is 2e-16 ≪ ‖δC‖/λ_1
    result = check(moved)
    assert result.passed
    assert "undetermined" in result.columns[0].note
    moved = base.copy()
    moved.loc[1, "frobenius_error"] += 1e-4       # gap 2e-7: sin θ ≤ 6e-4, tolerance 1.3e-3
    assert check(moved).passed
    moved.loc[1, "frobenius_error"] += 2e-3
    assert not check(moved).passed
    no_kernel = base.assign(lambda_H=np.nan, lambda_next=np.nan)
    write_figure_data(ref / "s.png", no_kernel, cols, "ref")
    moved = no_kernel.copy()
    moved.loc[2, "frobenius_error"] = 4.1e-3
    assert not check(moved).passed
    sin = basis_rotation([1.0, 2e-7, 2.6e-16, np.nan], [0.1, 3.6e-9, 6.2e-17, np.nan])
    dc = TOLERANCES["spectrum"]["floor"]
    assert sin[0] == pytest.approx(dc / (0.9 - dc)) and sin[2] == 1.0 and sin[3] == 0.0


def test_the_committed_reference_is_complete_small_and_described():
    readme = (REPO / "README.md").read_text()
    total = 0
    for stem in REFERENCE_FIGURES.values():
        png, csv = REFERENCE / f"{stem}.png", REFERENCE / f"{stem}.csv"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", stem
        assert f"(figures/{stem}.png)" in readme, f"README's figure table lacks {stem}"
        for path in REFERENCE.glob(f"{stem}*.csv"):
            df, meta = read_figure_data(path)
            assert len(df) > 0 and all(unit for unit, _, _ in meta["columns"].values())
            total += path.stat().st_size
        assert csv.exists(), stem
    for stem in TIMING_FIGURES.values():
        assert (REFERENCE / f"{stem}.csv").exists() and not (REFERENCE / f"{stem}.png").exists()
        total += sum(p.stat().st_size for p in REFERENCE.glob(f"{stem}*.csv"))
    assert total < 400_000, f"reference CSVs take {total} bytes"
    # nothing else in figures/: every file is a reference figure or figure data
    stems = tuple(f"{s}." for s in [*REFERENCE_FIGURES.values(), *TIMING_FIGURES.values()])
    stray = [p.name for p in REFERENCE.iterdir() if not p.name.startswith(stems)]
    assert not stray, stray


@pytest.mark.parametrize("key", sorted({**REFERENCE_FIGURES, **TIMING_FIGURES}))
def test_the_reference_matches_itself_and_holds_the_papers_claims(key):
    stem = {**REFERENCE_FIGURES, **TIMING_FIGURES}[key]
    res = check_figure(key, stem, key in TIMING_FIGURES, REFERENCE, REFERENCE)
    assert res.passed, res.problems
    assert res.columns and all(c.ratio == 0 for c in res.columns)
    for claim in paper_claims(key, REFERENCE, stem):
        assert claim.passed is not False or claim.timing, claim


def test_a_claim_that_fails_is_reported(tmp_path):
    """The Fig 8 claim (correlation > 95 % at H ≈ 6) evaluated on a run where it fails."""
    df, meta = read_figure_data(REFERENCE / "fig08_image_alignment.csv")
    df.loc[df.H == 6, "correlation"] = 0.9
    write_figure_data(tmp_path / "fig08_image_alignment.png", df, meta["columns"], "low")
    claims = {c.test: c for c in paper_claims("fig08", tmp_path, "fig08_image_alignment")}
    c = claims["correlation at H = 6 > 0.95"]
    assert c.passed is False and c.value == "0.9000"


@pytest.mark.skipif(SNAKEMAKE is None, reason="snakemake is not installed")
def test_default_target_checks_and_never_writes_the_reference(tmp_path):
    out = dry_run(tmp_path)
    assert "check_figures" in out and re.search(r"\bcheck\b", out)
    res = run_snakemake("-n", "--cores", "2", cwd=tmp_path)
    outputs = re.findall(r"output: (.*)", res.stdout + res.stderr)
    files = [f.strip() for line in outputs for f in line.split(",")]
    assert files and not [f for f in files if f.startswith("figures/")]
    assert "results/report.md" in files
    # a configuration that would write into the reference set is refused
    res = run_snakemake("-n", "--cores", "1", "--config", "figures=figures/x", cwd=tmp_path)
    assert res.returncode != 0 and "committed reference set" in res.stdout + res.stderr

