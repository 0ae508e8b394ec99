"""Gather the `benchmark:` files of the workflow into results/tables/timings.tsv.

One row per rule × wildcards: Snakemake's measurements (s wall clock, cpu_time s, max_rss /
max_vms / max_uss / max_pss MB, io_in / io_out MB, mean_load %), the job's thread count and
CPU utilisation cpu_time / (s × threads).  With `benchmark: repeat(..., n)` the file holds n
runs: the row of the shortest wall-clock time is kept (other load only adds time) and
`repeats` says how many there were.  Memory and CPU columns are empty when the job ended
before Snakemake's first sample (Snakemake writes NA then).
"""

import pandas as pd

from wf_common import TIMING_MEASURES, setup, write_table

log = setup(snakemake)


def read_benchmark(path):
    if str(path).endswith(".jsonl"):
        df = pd.read_json(path, lines=True)
    else:
        df = pd.read_csv(path, sep="\t", na_values=["NA", "-"])
    missing = [c for c in TIMING_MEASURES if c not in df.columns]
    if missing or df.empty:
        raise ValueError(f"{path}: not a Snakemake benchmark file "
                         f"({'no rows' if df.empty else f'columns {missing} are missing'})")
    for c in TIMING_MEASURES:
        df[c] = pd.to_numeric(df[c], errors="coerce")
    if df["s"].isna().any():
        raise ValueError(f"{path}: wall-clock column 's' has missing values")
    return df


rows = []
for job, path in zip(snakemake.params.jobs, snakemake.input):
    if job["benchmark"] != path:
        raise ValueError(f"benchmark file order: expected {job['benchmark']}, got {path}")
    df = read_benchmark(path)
    best = df.loc[df["s"].idxmin()]
    wc = job["wildcards"]
    threads = int(job["threads"])
    row = {"rule": job["rule"], "dataset": wc.get("ds", ""),
           "wildcards": ",".join(f"{k}={v}" for k, v in wc.items()), "threads": threads,
           "repeats": len(df)}
    row.update({c: float(best[c]) for c in TIMING_MEASURES})
    row["cpu_utilisation"] = row["cpu_time"] / (row["s"] * threads) if row["s"] > 0 else float("nan")
    rows.append(row)

write_table(snakemake.output[0], rows, "timings")
log.info("timings: %d benchmark files -> %s", len(rows), snakemake.output[0])
