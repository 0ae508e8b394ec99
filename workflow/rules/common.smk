# Helpers shared by all rule files -- the resolved per-dataset configuration, the lists
# of datasets and methods, and the final targets.

import copy
import json
import time
from pathlib import Path


def _deep_merge(base, override):
    """Recursive dict merge: values of ``override`` win, nested dicts are merged."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


RESULTS = config["results"].rstrip("/")
FIGURES = (config.get("figures") or f"{RESULTS}/figures").rstrip("/")   # never the reference
LOGS = config.get("logs", "logs").rstrip("/")
MAIN = config["main_dataset"]
SURVEY = [d for d in config.get("survey_datasets", []) if d != MAIN]
DATASETS = [MAIN] + SURVEY
METHODS = list(config["images"]["methods"])

_unknown = [d for d in DATASETS if d not in config["datasets"]]
if _unknown:
    raise WorkflowError(
        f"config: dataset(s) {', '.join(_unknown)} are selected (main_dataset / survey_datasets) "
        f"but not described under 'datasets:'; described are: {', '.join(config['datasets'])}")


def dataset_config(ds):
    """The configuration of one dataset: the global sections, overridden by its own."""
    entry = config["datasets"][ds]
    merged = {
        "name": ds,
        "source": entry["source"],
        "description": entry.get("description", ds),
        "images": _deep_merge(config["images"], entry.get("images", {})),
        "volumes": _deep_merge(config["volumes"], entry.get("volumes", {})),
        "synthetic": _deep_merge(config.get("synthetic", {}), entry.get("synthetic", {})),
        "real": copy.deepcopy(entry.get("real", {})),
        "seed": int(entry.get("seed", config.get("seed", 0))),
    }
    img = merged["images"]
    if int(img["shards"]) > int(img["n_images"]):
        raise WorkflowError(f"dataset {ds}: images.shards = {img['shards']} exceeds "
                            f"images.n_images = {img['n_images']} (every shard needs images)")
    return merged


def dataset_keys(*keys):
    """A ``params`` function: the configuration of the rule's dataset ({ds}) reduced to
    ``keys``.

    Keys are dotted paths into :func:`dataset_config` ("images.K", "seed", or "real" for a
    whole section).  The result is nested as in dataset_config, so a script reads
    ``snakemake.params.cfg["images"]["K"]`` as before.  Each rule gets only the keys its
    script reads, and Snakemake reruns a job when its params change, so editing
    volumes.ranks reruns the volume rules and nothing else.  A key a script reads must be
    listed in its rule (a missing one is a KeyError when the job runs)."""

    def pick(wildcards):
        full = dataset_config(wildcards.ds)
        out = {}
        for key in keys:
            *parents, leaf = key.split(".")
            src, dst = full, out
            for part in parents:
                src, dst = src[part], dst.setdefault(part, {})
            dst[leaf] = copy.deepcopy(src[leaf])
        return out

    return pick


def _alternatives(names):
    """A regex matching exactly one of ``names`` (and nothing when the list is empty)."""
    import re

    return "|".join(re.escape(n) for n in names) if names else "(?!)"


SYNTHETIC = [d for d in DATASETS if config["datasets"][d]["source"] == "synthetic"]
REAL = [d for d in DATASETS if config["datasets"][d]["source"] == "real"]


def n_shards(ds):
    return int(dataset_config(ds)["images"]["shards"])


def methods_for(ds):
    """Compression methods run on a dataset: all on the main one, radial-SVD on the others."""
    return METHODS if ds == MAIN else ["radial_svd"]


def threads_for(kind):
    return int(config["threads"].get(kind, config["threads"]["default"]))


def mem_for(kind):
    return int(config["resources"]["mem_mb"].get(kind, config["resources"]["mem_mb"]["default"]))


def runtime_for(kind):
    return int(config["resources"]["runtime"].get(kind, config["resources"]["runtime"]["default"]))


def log_path(name):
    return f"{LOGS}/{name}.log"


def speedup_Ks():
    return [int(k) for k in config["speedup_vs_K"]["K"]]


def preprocess_inputs(wildcards):
    """Synthetic: the simulated files; real: the fetch record (it lists the fetched files)."""
    if config["datasets"][wildcards.ds]["source"] == "real":
        return {"record": f"{config['resources_dir']}/{wildcards.ds}/fetched.json"}
    return {
        "stack": f"{RESULTS}/{wildcards.ds}/raw/particles.mrcs",
        "star": f"{RESULTS}/{wildcards.ds}/raw/particles.star",
        "reference": f"{RESULTS}/{wildcards.ds}/raw/reference.mrc",
    }


# ---- timings ------------------------------------------------------------------------------
# Every benchmark file of the workflow (Snakemake's TSV: s, max_rss, cpu_time, …) gathered
# into one table by aggregate_timings, one row per job (rule name × wildcards).
# _benchmarked_jobs() lists, for each benchmarked rule, the wildcard sets the
# final targets request (the same loops as the inputs of the table rules) and the thread
# count of its jobs; a benchmarked rule missing there is an error, so no benchmark file is
# left out silently.


def _benchmarked_jobs():
    """(rule, wildcards, threads) of every benchmarked job the final targets run."""
    jobs = []
    for ds in DATASETS:
        for method in methods_for(ds):
            for shard in range(n_shards(ds)):
                jobs.append(("align_images_shard", {"ds": ds, "method": method,
                                                    "shard": str(shard)}, threads_for("align")))
        jobs.append(("align_volumes", {"ds": ds}, threads_for("volumes")))
    for K in speedup_Ks():
        jobs.append(("speedup_at_K", {"ds": MAIN, "K": str(K)}, threads_for("align")))
    return jobs


def timing_jobs(wildcards=None):
    """The benchmarked jobs with their benchmark file: list of dicts (rule, wildcards,
    threads, benchmark), checked against the rules that declare a benchmark file."""
    jobs = _benchmarked_jobs()
    known = {rule for rule, _, _ in jobs}
    declared = {r.name for r in workflow.rules if r.benchmark is not None}
    missing = sorted(declared - known)
    if missing:
        raise WorkflowError(
            f"benchmarked rule(s) {', '.join(missing)} are unknown to aggregate_timings "
            f"(their wildcards are needed); add them to _benchmarked_jobs() in workflow/rules/common.smk")
    out = []
    for rule, wc, threads in jobs:
        path = str(workflow.get_rule(rule).benchmark.apply_wildcards(wc))
        out.append({"rule": rule, "wildcards": wc, "threads": threads, "benchmark": path})
    return out


def timing_inputs(wildcards):
    return [job["benchmark"] for job in timing_jobs()]


# ---- final targets --------------------------------------------------------------------------
# Every figure of a run goes to {figures} (default {results}/figures, ignored by git) with the
# numbers it plots beside it (<name>.csv, workflow/scripts/wf_figdata.py).  The committed
# reference set (`check: reference:`, figures/ for the default configuration: PNGs and CSVs)
# is never written by a run; the check rules (check.smk) compare the run's numbers with it.
# Two kinds of figures: FIGURE_NAMES, whose numbers depend only on the configuration and the
# code (seeded simulation, thread-count-independent results), compared with the reference
# under derived tolerances; TIMING_FIGURE_NAMES, figures of measured times (speedups, job
# timings), which change with the machine and its load: their times are checked as present
# only.

FIGURE_NAMES = {
    "fig01": "fig01_images",
    "fig02": "fig02_two_rings_useful",
    "fig03": "fig03_two_rings_amplitude",
    "fig04": "fig04_spectrum_C",
    "fig05": "fig05_landscape_image_template",
    "fig06": "fig06_landscape_image_image",
    "fig07": "fig07_gallery",
    "fig08": "fig08_image_alignment",
    "fig09": "fig09_isosurfaces",
    "fig10": "fig10_volume_spectra",
    "fig11": "fig11_volume_alignment",
    "fig12": "fig12_datasets",
}

TIMING_FIGURE_NAMES = {
    "fig08_speedup": "fig08_speedup",
    "fig11_speedup": "fig11_speedup",
    "fig13": "fig13_speedup_vs_K",
    "fig14": "fig14_method_comparison",     # has a measured-speedup panel
    "fig15": "fig15_timings",
}
REFERENCE = (config.get("check") or {}).get("reference") or None

if REFERENCE and (os.path.abspath(FIGURES) + os.sep).startswith(os.path.abspath(REFERENCE)
                                                                   + os.sep):
    raise WorkflowError(
        f"config: figures ({FIGURES}) is inside the committed reference set (check.reference: "
        f"{REFERENCE}); a run must not write there: use another directory (default: "
        "results/figures)")


# figures whose rules exist in every configuration but which only some configurations make
# (fig16: a synthetic main dataset; particles.smk adds it to FIGURE_NAMES then)
OPTIONAL_FIGURE_NAMES = {"fig16": "fig16_shifts"}


def figure_path(key):
    ext = config.get("figure_format", "png")
    names = {**OPTIONAL_FIGURE_NAMES, **FIGURE_NAMES, **TIMING_FIGURE_NAMES}
    return f"{FIGURES}/{names[key]}.{ext}"


# further tables a figure writes beside <stem>.csv (<stem>.<table>.csv, wf_figdata.py)
FIGURE_TABLES = {"fig02": ["vectors"], "fig03": ["vectors"], "fig05": ["argmax"],
                 "fig06": ["argmax"], "fig07": ["defocus"], "fig12": ["isosurfaces"]}


def figure_data(key):
    """The CSVs a figure writes beside its PNG: <stem>.csv and its further tables."""
    stem = figure_path(key).rsplit(".", 1)[0]
    tables = list(FIGURE_TABLES.get(key, []))
    if key == "fig14" and config["datasets"][MAIN]["source"] == "synthetic":
        tables.append("poses")      # align-particles' poses (particles.smk)
    return [f"{stem}.csv"] + [f"{stem}.{t}.csv" for t in tables]


def figure_outputs(key):
    """A figure rule's outputs: the PNG first (the scripts' snakemake.output[0]), then its
    data."""
    return [figure_path(key), *figure_data(key)]


def figure_keys():
    """The figures of this configuration (fig12 needs survey datasets; fig16 is added by
    particles.smk for a synthetic main dataset)."""
    return [k for k in [*FIGURE_NAMES, *TIMING_FIGURE_NAMES] if k != "fig12" or SURVEY]


def all_figures():
    return [figure_path(k) for k in figure_keys()]


# ---- the reproducibility check (check.smk) --------------------------------------------------

CHECK = config.get("check") or {}
CHECK_SUMMARY = f"{RESULTS}/check/summary.json"


def figure_data_files():
    """The CSVs of every figure of this configuration (the inputs of the check)."""
    return [path for k in figure_keys() for path in figure_data(k)]


def reference_files():
    """The reference CSVs that exist (a missing one is reported by the check, not by
    Snakemake), so that editing the reference reruns the check."""
    if not REFERENCE:
        return []
    return sorted(str(p) for k in figure_keys()
                  for p in Path(REFERENCE).glob(f"{Path(figure_path(k)).stem}*.csv"))


_RUN_STARTED = time.time()


def _print_check_summary(fresh_only):
    """The check's one-line summary (after a failure only if this run wrote it)."""
    path = Path(CHECK_SUMMARY)
    if path.exists() and (not fresh_only or path.stat().st_mtime >= _RUN_STARTED):
        print(json.loads(path.read_text())["summary"], flush=True)


def all_tables():
    return [
        f"{RESULTS}/tables/image_alignment.tsv",
        f"{RESULTS}/tables/volume_alignment.tsv",
        f"{RESULTS}/tables/speedup_vs_K.tsv",
        f"{RESULTS}/tables/timings.tsv",
    ]
