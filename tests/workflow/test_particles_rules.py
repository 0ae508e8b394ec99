"""The translation rules (workflow/rules/particles.smk): in the default targets for a synthetic
main dataset, absent for a real one, and (slow) run on the tiny configuration."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.workflow.test_workflow import REPO, SNAKEMAKE, dry_run, run_snakemake

pytestmark = pytest.mark.skipif(SNAKEMAKE is None, reason="snakemake is not installed")
RULES = ("simulate_shifted", "shift_landscapes", "pose_scores", "fig16_shifts")


def test_default_targets_include_the_shift_rules(tmp_path):
    out = dry_run(tmp_path)
    for rule in RULES:
        assert rule in out, rule


def test_real_main_dataset_has_no_shift_rules(tmp_path):
    out = dry_run(tmp_path, "--configfile", str(REPO / "config" / "real" / "trpv1.yaml"))
    for rule in RULES:
        assert rule not in out, rule


@pytest.mark.slow
def test_shift_rules_on_the_tiny_config(tmp_path):
    res = run_snakemake("results/figures/fig16_shifts.png", "results/tables/pose_scores.tsv",
                        "--cores", "2", "--configfile", str(REPO / "config" / "tiny.yaml"),
                        cwd=tmp_path, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    png = tmp_path / "results" / "figures" / "fig16_shifts.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    land = pd.read_csv(tmp_path / "results" / "tables" / "shift_landscapes.tsv", sep="\t")
    assert set(land.method) == {"radial-svd", "shift-svd", "gaussian-shift-svd",
                                "frequency-marching", "energy-pca"}
    assert ((land.correlation <= 1 + 1e-9) & (land.backward_f > 0)
            & (land.backward_f <= 1 + 1e-12)).all()
    poses = pd.read_csv(tmp_path / "results" / "tables" / "pose_scores.tsv", sep="\t")
    assert list(poses.method)[0] == "full" and len(poses) == 6
    assert (poses.median_angle_error_deg >= 0).all() and (poses.median_angle_error_deg <= 180).all()
