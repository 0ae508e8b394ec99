"""Helpers shared by the workflow scripts: logging to the rule's log, thread set-up, atomic
writes, and the column sets of the tidy tables (the formats the figures read).

Imported by the scripts that Snakemake runs (their directory is on sys.path).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from radsvd._files import atomic_path

# ---- the tidy tables ---------------------------------------------------------------------
# One row per dataset × method × H (× K for the speedup sweep).  Times in seconds, measured in
# the same job for the full and the compressed calculation; thread counts as in force.

THREAD_COLUMNS = ["numba_threads", "blas_threads", "fft_workers"]

TABLE_COLUMNS = {
    "image_alignment": [
        "dataset", "source", "method", "H", "R", "Q", "K", "n_images", "n_targets",
        "n_ctf_groups", "n_pairs", "n_shards", "frobenius_error", "correlation", "backward_f",
        "time_full_s", "time_precompute_s", "time_compressed_s", "speedup", "ideal_speedup",
        *THREAD_COLUMNS,
    ],
    "volume_alignment": [
        "dataset", "source", "method", "H", "H_C", "H_D", "R", "L", "n_beta", "K",
        "n_volumes", "n_pairs", "frobenius_error", "correlation", "backward_f",
        "time_full_s", "time_precompute_s", "time_compressed_s", "speedup", "ideal_speedup",
        *THREAD_COLUMNS,
    ],
    "speedup_vs_K": [
        "dataset", "method", "K", "R", "Q", "H", "n_images", "n_targets", "n_pairs",
        "time_full_s", "time_precompute_s", "time_compressed_s", "speedup", "ideal_speedup",
        "speedup_min", "speedup_max", "time_full_max_s", "time_compressed_max_s",
        *THREAD_COLUMNS,
    ],
    # one row per benchmarked job (rule × wildcards), from the Snakemake `benchmark:` files
    "timings": [
        "rule", "dataset", "wildcards", "threads", "repeats", "s", "cpu_time", "cpu_utilisation",
        "max_rss", "max_vms", "max_uss", "max_pss", "io_in", "io_out", "mean_load",
    ],
}

# Snakemake's benchmark measures kept in the timings table (units: s; MB for memory and I/O;
# mean_load in %)
TIMING_MEASURES = ["s", "cpu_time", "max_rss", "max_vms", "max_uss", "max_pss", "io_in",
                   "io_out", "mean_load"]


def setup(snakemake, name: str | None = None) -> logging.Logger:
    """Send stdout, stderr and a logger to the rule's log file; set the thread counts.

    numba, BLAS (threadpoolctl) and scipy.fft all follow the rule's ``threads``.
    """
    log_file = snakemake.log[0] if len(snakemake.log) else None
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        stream = open(log_file, "w", buffering=1)
        sys.stdout = stream
        sys.stderr = stream
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, force=True,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    logger = logging.getLogger(name or snakemake.rule)
    threads = max(1, int(snakemake.threads))
    if _needs_library(snakemake):
        import radsvd

        radsvd.set_threads(threads)
    logger.info("rule %s, %d thread(s), wildcards %s", snakemake.rule, threads,
                dict(snakemake.wildcards))
    return logger


def _needs_library(snakemake) -> bool:
    return not snakemake.rule.startswith("fig")


def thread_counts() -> dict:
    """numba, BLAS and FFT thread counts in force (for the tables)."""
    import numba
    from threadpoolctl import threadpool_info

    blas = [p["num_threads"] for p in threadpool_info() if p.get("user_api") == "blas"]
    try:
        from radsvd._jit import fft_workers
        fft = int(fft_workers())
    except ImportError:  # pragma: no cover - the library is installed with the workflow
        fft = 1
    return {"numba_threads": int(numba.get_num_threads()),
            "blas_threads": int(max(blas) if blas else 1),
            "fft_workers": fft}


def save_npz(path, **arrays) -> None:
    """Compressed .npz written atomically."""
    with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)


def write_table(path, rows, table: str) -> None:
    """Write a tidy TSV with the columns of ``table`` (in that order), atomically."""
    import pandas as pd

    df = pd.DataFrame(rows)
    columns = TABLE_COLUMNS[table]
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{table}: rows lack columns {missing}")
    with atomic_path(path, suffix=".tsv") as tmp:
        df[columns].to_csv(tmp, sep="\t", index=False, float_format="%.10g")


def read_table(path, table: str):
    import pandas as pd

    df = pd.read_csv(path, sep="\t")
    missing = [c for c in TABLE_COLUMNS[table] if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: not a {table} table, columns {missing} are missing")
    return df


def write_json(path, obj) -> None:
    with atomic_path(path, suffix=".json") as tmp:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True, default=_json_default)


def _json_default(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x)}")


def microscope(syn: dict, n_images: int):
    """The simulated microscope of a dataset's ``synthetic`` section, for ``n_images``
    particles spread over its ``n_micrographs`` (one CTF per micrograph)."""
    import math

    from radsvd.data.simulate import Microscope

    return Microscope(voltage=float(syn["voltage"]), cs=float(syn["cs"]),
                      amplitude_contrast=float(syn["amplitude_contrast"]),
                      defocus_range=tuple(float(d) for d in syn["defocus"]),
                      astigmatism=float(syn["astigmatism"]),
                      particles_per_micrograph=max(1, math.ceil(n_images
                                                                / int(syn["n_micrographs"]))))


def rank_sweep(ranks, R: int) -> list[int]:
    """The H values of a sweep: those ≤ R, plus R itself (which must reproduce full)."""
    return sorted({int(h) for h in ranks if 1 <= int(h) <= R} | {int(R)})


def best_of(fn, repeats: int = 1):
    """Run ``fn()`` ``repeats`` times; return (shortest wall-clock time in s, last result).

    The minimum is the usual estimator on a shared machine: other load only adds time."""
    best, result = float("inf"), None
    for _ in range(max(1, int(repeats))):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


class Stopwatch:
    """Accumulating wall-clock timer: ``with sw: ...`` adds the elapsed time to ``sw.total``."""

    def __init__(self):
        self.total = 0.0

    def __enter__(self):
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.total += time.perf_counter() - self._t0
        return False
