"""The figure workflow: lint, schema, dry runs of every configuration and of the SLURM
profile, and (slow) the tiny configuration end to end in a temporary directory."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SNAKEFILE = REPO / "workflow" / "Snakefile"
BIN = Path(sys.executable).parent
SNAKEMAKE = str(BIN / "snakemake") if (BIN / "snakemake").exists() else shutil.which("snakemake")

pytestmark = pytest.mark.skipif(SNAKEMAKE is None, reason="snakemake is not installed "
                                "(pip install -e '.[workflow]')")

# Columns of the tidy tables (the formats the figure scripts read; workflow/scripts/wf_common.py)
THREADS = ["numba_threads", "blas_threads", "fft_workers"]
COLUMNS = {
    "image_alignment": ["dataset", "source", "method", "H", "R", "Q", "K", "n_images",
                        "n_targets", "n_ctf_groups", "n_pairs", "n_shards", "frobenius_error",
                        "correlation", "backward_f", "time_full_s", "time_precompute_s",
                        "time_compressed_s", "speedup", "ideal_speedup", *THREADS],
    "volume_alignment": ["dataset", "source", "method", "H", "H_C", "H_D", "R", "L", "n_beta",
                         "K", "n_volumes", "n_pairs", "frobenius_error", "correlation",
                         "backward_f", "time_full_s", "time_precompute_s", "time_compressed_s",
                         "speedup", "ideal_speedup", *THREADS],
    "speedup_vs_K": ["dataset", "method", "K", "R", "Q", "H", "n_images", "n_targets",
                     "n_pairs", "time_full_s", "time_precompute_s", "time_compressed_s",
                     "speedup", "ideal_speedup", "speedup_min", "speedup_max",
                     "time_full_max_s", "time_compressed_max_s", *THREADS],
}
# The timings table: one row per benchmarked job (rule × wildcards), Snakemake's measures
TIMING_COLUMNS = ["rule", "dataset", "wildcards", "threads", "repeats", "s", "cpu_time",
                  "cpu_utilisation", "max_rss", "max_vms", "max_uss", "max_pss", "io_in",
                  "io_out", "mean_load"]
# Every figure of a run goes to results/figures/ with its data (<name>.csv).  The reference
# figures (deterministic; their PNGs and CSVs are committed under figures/ for the default
# configuration and compared by the check) and the figures of measured times
FIGURES = ["fig01_images", "fig02_two_rings_useful", "fig03_two_rings_amplitude",
           "fig04_spectrum_C", "fig05_landscape_image_template", "fig06_landscape_image_image",
           "fig07_gallery", "fig08_image_alignment", "fig09_isosurfaces", "fig10_volume_spectra",
           "fig11_volume_alignment", "fig12_datasets", "fig16_shifts"]
TIMING_FIGURES = ["fig08_speedup", "fig11_speedup", "fig13_speedup_vs_K",
                  "fig14_method_comparison", "fig15_timings"]
# The rules that may rerun after an edit of volumes.ranks: the volume alignment and what is
# built from its outputs (tables, figures, the timings of its benchmark file)
VOLUME_RANK_RULES = {"align_volumes", "aggregate_volume_tables", "fig10_volume_spectra",
                     "fig11_volume_alignment", "fig11_speedup", "fig12_datasets",
                     "aggregate_timings", "fig15_timings", "check_figures", "check", "all"}


def run_snakemake(*args, cwd, timeout=600, env=None, snakefile=SNAKEFILE):
    env = {**os.environ, **(env or {})}
    env.setdefault("MPLBACKEND", "Agg")
    cmd = [SNAKEMAKE, "-s", str(snakefile), "--directory", str(cwd), *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env)


def dry_run(tmp_path, *args, **kwargs):
    res = run_snakemake("-n", "--cores", "2", "--quiet", "rules", *args, cwd=tmp_path,
                        **kwargs)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout + res.stderr


def planned_rules(out):
    """Rule names of a dry run's job-stats table (`--quiet rules`)."""
    rules = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] not in ("total", "job"):
            rules.add(parts[0])
    return rules


def git(*args, cwd):
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True,
                          env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
                               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}).stdout


def tracked_copy(dest):
    """The repository's files (tracked or not ignored, as in the working tree) committed to a
    fresh git repository at ``dest``."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    try:
        files = git("ls-files", "-z", "--cached", "--others", "--exclude-standard",
                    cwd=REPO).split("\0")
    except subprocess.CalledProcessError:
        pytest.skip("not a git checkout")
    for name in filter(None, files):
        src = REPO / name
        if not src.is_file():
            continue
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / name)
    git("init", "-q", cwd=dest)
    git("add", "-A", cwd=dest)
    git("commit", "-q", "-m", "copy", cwd=dest)
    return dest


def test_lint_is_clean(tmp_path):
    res = run_snakemake("--lint", cwd=tmp_path)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "Congratulations" in out, out


def test_default_dry_run_makes_every_figure(tmp_path):
    res = run_snakemake("-n", "--cores", "2", cwd=tmp_path)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    for name in FIGURES + TIMING_FIGURES:
        assert f"results/figures/{name}.png" in out, name
        assert f"results/figures/{name}.csv" in out, name
    assert "results/report.md" in out and "results/check/passed" in out
    # sharded image alignment: 3 methods × 2 shards on the main dataset, a gather rule
    assert "align_images_shard" in out and "gather_images" in out
    assert "aggregate_timings" in out and "results/tables/timings.tsv" in out


@pytest.mark.parametrize("configfile", ["config/paper.yaml", "config/tiny.yaml",
                                        *sorted(str(p.relative_to(REPO)) for p in
                                                (REPO / "config" / "real").glob("*.yaml"))])
def test_dry_run_of_each_config(tmp_path, configfile):
    out = dry_run(tmp_path, "--configfile", str(REPO / configfile))
    assert "align_images_shard" in out
    if "/real/" in configfile:
        assert "fetch_dataset" in out and "preprocess" in out
        assert "simulate_dataset" not in out


def test_paper_config_has_the_papers_scale(tmp_path):
    import yaml

    cfg = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    assert cfg["images"]["n_images"] == 1024 and cfg["images"]["K"] == 48
    assert cfg["volumes"]["n_volumes"] == 96 and cfg["synthetic"]["n_micrographs"] == 17


def test_slurm_profile_dry_run(tmp_path):
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        pytest.skip("snakemake-executor-plugin-slurm not installed (pip install -e '.[slurm]')")
    profile = shutil.copytree(REPO / "profiles" / "slurm", tmp_path / "slurm")
    out = dry_run(tmp_path, "--profile", str(profile), "--configfile",
                  str(REPO / "config" / "paper.yaml"))
    assert "align_images_shard" in out
    # 8 shards × 3 methods on the main dataset + 8 shards on each of the 6 others
    assert out.count("align_images_shard") >= 1


@pytest.mark.parametrize("bad, message", [
    ("images: {K: -3}", "exclusiveMinimum"),                 # K must be positive
    ("images: {methods: [radial_svd, pca9]}", "pca9"),      # unknown compression method
    ("datasets: {x: {source: real}}", "'real' is a required property"),  # real needs 'real'
])
def test_schema_rejects_bad_values(tmp_path, bad, message):
    (tmp_path / "bad.yaml").write_text(bad + "\n")
    res = run_snakemake("-n", "--cores", "1", "--configfile", str(tmp_path / "bad.yaml"),
                        cwd=tmp_path)
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert "Error validating config file" in out and message in out, out[-2000:]


def test_unknown_dataset_is_a_clear_error(tmp_path):
    res = run_snakemake("-n", "--cores", "1", "--config", "main_dataset=nosuchset",
                        cwd=tmp_path)
    assert res.returncode != 0
    assert "nosuchset" in res.stdout + res.stderr and "not described" in res.stdout + res.stderr


def test_timings_table_misses_no_benchmarked_rule(tmp_path):
    """A rule with a benchmark file that aggregate_timings does not know is an error (so the
    timings table never silently leaves a benchmark out)."""
    (tmp_path / "workflow").mkdir()
    (tmp_path / "config").symlink_to(REPO / "config")     # the Snakefile's configfile path
    (tmp_path / "workflow" / "Snakefile").write_text(
        f'include: "{SNAKEFILE}"\n\n\nrule extra_benchmarked:\n    output:\n'
        f'        "extra.txt",\n    benchmark:\n        "extra.tsv"\n    shell:\n'
        f'        "touch {{output}}"\n')
    cmd = [SNAKEMAKE, "-s", str(tmp_path / "workflow" / "Snakefile"), "--directory",
           str(tmp_path), "-n", "--cores", "1", "results/tables/timings.tsv"]
    res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert "extra_benchmarked are unknown to aggregate_timings" in out, out[-3000:]
    # the workflow itself (no extra rule) plans the table
    res = run_snakemake("results/tables/timings.tsv", "-n", "--cores", "1", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "aggregate_timings" in res.stdout + res.stderr


@pytest.mark.slow
def test_tiny_workflow_end_to_end(tmp_path):
    """The tiny configuration end to end in a fresh git copy of the repository: every figure
    with its data, tables, the report, and a clean `git status` after the run; a change of
    volumes.ranks reruns only the volume rules; then the figure pipeline again under other
    conditions (1 thread instead of 2 for the alignment rules, OpenBLAS's Sandybridge
    kernels) checked against the first run, which passes, and a perturbed number in the
    reference, which fails (docs/reproducibility.md)."""
    import numpy as np
    import pandas as pd

    work = tracked_copy(tmp_path / "repo")
    snakefile = work / "workflow" / "Snakefile"
    tiny = str(work / "config" / "tiny.yaml")
    res = run_snakemake("--cores", "2", "--configfile", tiny, cwd=work, timeout=1800,
                        snakefile=snakefile)   # ~2 min idle; far longer on a loaded machine
    assert res.returncode == 0, res.stdout[-5000:] + res.stderr[-5000:]
    for name in FIGURES + TIMING_FIGURES:
        png = work / "results" / "figures" / f"{name}.png"
        assert png.exists(), name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert png.stat().st_size > 5000, name  # a real picture, not an empty canvas
        assert png.with_suffix(".csv").read_text().startswith("# radsvd figure data: "), name
    # the check ran (no reference for the tiny configuration: presence of the data only),
    # its report and one-line summary
    report = (work / "results" / "report.md").read_text()
    assert all(f"| {name} | pass" in report for name in FIGURES + TIMING_FIGURES), report
    assert (work / "results" / "report.html").exists()
    assert "reproducibility check: PASS" in res.stdout + res.stderr
    # committed files untouched, nothing new outside ignored places
    assert git("status", "--porcelain", "--untracked-files=all", cwd=work) == ""
    # each rule gets only the configuration keys it reads: nothing to redo with the same
    # configuration; after an edit of volumes.ranks only the volume rules (and the tables
    # and figures built from their outputs) rerun
    assert planned_rules(dry_run(work, "--configfile", tiny, snakefile=snakefile)) == set()
    (tmp_path / "ranks.yaml").write_text("volumes: {ranks: [1, 2]}\n")
    rerun = planned_rules(dry_run(work, "--configfile", tiny, str(tmp_path / "ranks.yaml"),
                                  snakefile=snakefile))
    assert {"align_volumes", "fig11_volume_alignment"} <= rerun, rerun
    assert rerun <= VOLUME_RANK_RULES, rerun - VOLUME_RANK_RULES
    tables = {name: pd.read_csv(work / "results" / "tables" / f"{name}.tsv", sep="\t")
              for name in COLUMNS}
    for name, df in tables.items():
        assert list(df.columns) == COLUMNS[name], name
        assert len(df) > 0 and not df.isna().any().any(), name
    img = tables["image_alignment"]
    # one row per dataset × method × H; every method on the main dataset
    assert not img.duplicated(["dataset", "method", "H"]).any()
    assert set(img[img.dataset == "trpv1"].method) == {"radial_svd", "frequency_marching",
                                                      "energy_pca"}
    assert set(img.dataset) == {"trpv1", "ribosome80s"}
    # H = R reproduces the full landscape (any orthonormal basis, eq. 84); the compressed
    # path runs its GEMMs in float32, so the bound is a few float32 epsilons (~1e-7) × growth.
    full = img[img.H == img.R]
    assert len(full) == img.groupby(["dataset", "method"]).ngroups
    assert (full.frobenius_error < 1e-4).all() and (full.correlation > 1 - 1e-6).all()
    assert np.allclose(full.backward_f, 1.0)
    assert np.allclose(img.ideal_speedup, img.R / img.H)
    assert ((img.correlation <= 1 + 1e-9) & (img.backward_f <= 1 + 1e-12)
            & (img.backward_f > 0)).all()
    assert (img.n_shards == 2).sum() > 0
    vol = tables["volume_alignment"]
    assert not vol.duplicated(["dataset", "method", "H"]).any()
    assert set(vol.dataset) == {"trpv1", "ribosome80s"}
    # thread counts follow the rule's threads (2 for the alignment rules here, fewer only on
    # a machine with fewer cores: numba's pool is capped at the CPU count)
    import numba

    want = min(2, numba.config.NUMBA_NUM_THREADS)
    for df in (img, vol):
        assert (df.numba_threads == want).all() and (df.blas_threads == want).all()
        assert (df.fft_workers == want).all()
    # logs and benchmarks for the alignment rules
    assert list((work / "results" / "benchmarks" / "trpv1").glob("align_images_*.tsv"))
    assert (work / "results" / "benchmarks" / "trpv1" / "align_volumes.tsv").exists()
    assert list((work / "logs").rglob("*.log"))
    # timings: every benchmark file, one row per rule × wildcards, read back independently
    tim = pd.read_csv(work / "results" / "tables" / "timings.tsv", sep="\t")
    assert list(tim.columns) == TIMING_COLUMNS
    bench_files = sorted((work / "results" / "benchmarks").rglob("*.tsv"))
    # trpv1: 3 methods × 2 shards; ribosome80s: radial_svd × 1 shard; 2 volume jobs; 2 K
    assert len(tim) == len(bench_files) == 6 + 1 + 2 + 2
    assert not tim.duplicated(["rule", "wildcards"]).any()
    assert tim.groupby("rule").size().to_dict() == {"align_images_shard": 7,
                                                   "align_volumes": 2, "speedup_at_K": 2}
    assert set(tim.dataset) == {"trpv1", "ribosome80s"}
    assert (tim.threads == 2).all() and (tim.repeats == 1).all()
    assert not tim[["rule", "dataset", "wildcards", "s"]].isna().any().any()
    assert (tim.s > 0).all()
    row = tim[(tim.rule == "align_volumes") & (tim.dataset == "trpv1")].iloc[0]
    raw = pd.read_csv(work / "results" / "benchmarks" / "trpv1" / "align_volumes.tsv",
                      sep="\t")
    assert row.s == pytest.approx(float(raw.s.iloc[0]))
    cpu = pd.to_numeric(raw.cpu_time, errors="coerce").iloc[0]
    if np.isfinite(cpu):            # Snakemake writes NA when the job ended before a sample
        assert row.cpu_utilisation == pytest.approx(cpu / (raw.s.iloc[0] * 2))

    # the figure pipeline again, under other conditions (one thread per job, OpenBLAS's
    # Sandybridge kernels), compared with the first run as the reference
    conditions = tmp_path / "conditions.yaml"
    conditions.write_text("results: results/run2\n"
                          "check: {reference: results/figures, claims: false}\n"
                          "threads: {default: 1, align: 1, volumes: 1}\n")
    res = run_snakemake("--cores", "2", "--configfile", tiny, str(conditions), cwd=work,
                        timeout=1800, snakefile=snakefile,
                        env={"OPENBLAS_CORETYPE": "Sandybridge"})
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-6000:]
    n = len(FIGURES + TIMING_FIGURES)
    assert f"PASS — {n}/{n} figures match the reference results/figures" in out, out[-3000:]
    run2 = pd.read_csv(work / "results" / "run2" / "tables" / "image_alignment.tsv", sep="\t")
    assert (run2.numba_threads == 1).all()
    report = (work / "results" / "run2" / "report.md").read_text()
    assert all(f"| {name} | pass" in report for name in FIGURES + TIMING_FIGURES), report
    # a perturbed number in the reference (10 tolerances) makes the check and the command fail
    perturbed = work / "results" / "perturbed"
    shutil.copytree(work / "results" / "figures", perturbed)
    csv = perturbed / "fig08_image_alignment.csv"
    head = [ln for ln in csv.read_text().splitlines() if ln.startswith("#")]
    df = pd.read_csv(csv, comment="#")
    df.loc[1, "correlation"] -= 1e-3
    csv.write_text("\n".join(head) + "\n" + df.to_csv(index=False, float_format="%.17g"))
    conditions.write_text(conditions.read_text().replace("results/figures", "results/perturbed"))
    res = run_snakemake("--cores", "1", "--configfile", tiny, str(conditions), cwd=work,
                        timeout=600, snakefile=snakefile)
    out = res.stdout + res.stderr
    assert res.returncode != 0, out[-3000:]
    assert f"reproducibility check: FAIL — {n - 1}/{n} figures" in out, out[-3000:]
    report = (work / "results" / "run2" / "report.md").read_text()
    assert "| fig08_image_alignment | **FAIL**" in report
    assert "main.correlation (correlation)" in report.split("## Problems")[1]
    assert git("status", "--porcelain", "--untracked-files=all", cwd=work) == ""

def _serve(directory):
    """A plain HTTP server on 127.0.0.1 (an ephemeral port) serving ``directory``."""
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.mark.slow
def test_real_data_rules_on_local_files(tmp_path):
    """The real-data path (fetch through a manifest → preprocess → polar grid → sharded
    alignment → table) on a tiny dataset served from 127.0.0.1 with its own manifest."""
    import numpy as np
    import pandas as pd
    import yaml

    from radsvd.data.mrc import write_mrc
    from radsvd.data.molecules import synthetic_molecule
    from radsvd.data.simulate import simulate_particles, write_particles

    served = tmp_path / "served"
    N, pixel, n = 32, 9.6, 12
    mol = synthetic_molecule("tmem16-like")
    images, table = simulate_particles(mol, n=n, N=N, pixel_size=pixel, snr=1.0, seed=3)
    write_particles(served / "particles", images, table, name="particles")
    write_mrc(served / "map" / "emd_test.map.gz", mol.volume(N).astype(np.float32), pixel)
    manifest = {"version": 1, "mirrors": {"ebi": "http://unused.invalid"}, "datasets": {
        "testset": {"title": "tiny local test set", "pixel_size": pixel, "box": N,
                    "contrast_inverted": False, "particles": {"first": n},
                    "files": {"map": {"urls": ["{ebi}/map/emd_test.map.gz"],
                                      "header": {"box": N, "voxel_size": pixel}},
                              "star": {"urls": ["{ebi}/particles/particles.star"]}}}}}
    (tmp_path / "manifest.yaml").write_text(yaml.safe_dump(manifest))
    server = _serve(served)
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        cfg = {"main_dataset": "localreal", "survey_datasets": [],
               "images": {"n_images": n, "box": N, "K": 8, "ranks": [1, 3], "shards": 2,
                          "methods": ["radial_svd"], "viewing_directions": 20, "repeats": 1},
               "datasets": {"localreal": {"source": "real", "real": {
                   "dataset": "testset", "base_url": base}}}}
        (tmp_path / "local.yaml").write_text(yaml.safe_dump(cfg))
        res = run_snakemake("results/localreal/tables/image_alignment.tsv", "--cores", "2",
                            "--configfile", str(tmp_path / "local.yaml"), cwd=tmp_path,
                            env={"RADSVD_MANIFEST": str(tmp_path / "manifest.yaml")})
    finally:
        server.shutdown()
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    record = tmp_path / "resources" / "localreal" / "fetched.json"
    assert record.exists()
    df = pd.read_csv(tmp_path / "results" / "localreal" / "tables" / "image_alignment.tsv",
                     sep="\t")
    assert list(df.columns) == COLUMNS["image_alignment"]
    assert set(df.source) == {"real"} and set(df.H) == {1, 3, 9}
    assert (df.n_images == n).all() and (df.n_shards == 2).all()
    # H = R reproduces the full landscape (float32 compressed path: bound as above)
    assert float(df[df.H == 9].frobenius_error.iloc[0]) < 1e-4
