"""Fig 15: what each alignment job of this workflow cost, from the aggregated Snakemake
`benchmark:` table (results/tables/timings.tsv): wall-clock and CPU time, and peak memory
(resident set size), one bar per job (rule × wildcards)."""

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from wf_common import read_table, setup
from wf_figdata import write_figure_data
from wf_plot import METHOD_STYLE, apply_style, save

log = setup(snakemake)
style = apply_style(snakemake.params.style)
df = read_table(snakemake.input[0], "timings")
if df.empty:
    raise ValueError(f"{snakemake.input[0]}: no benchmarked jobs")

RULES = {   # order, colour and legend label of the known benchmarked rules
    "align_images_shard": ("#d62728", "image alignment (one shard, full + every H)"),
    "speedup_at_K": ("#1f77b4", "image speedup sweep (one K)"),
    "align_volumes": ("#2ca02c", "volume alignment (full + every H)"),
}


def label(row):
    wc = dict(kv.split("=", 1) for kv in str(row.wildcards).split(",") if "=" in kv)
    ds = wc.pop("ds", "")
    if row.rule == "align_images_shard":
        method = wc.get("method", "?")
        method = METHOD_STYLE.get(method, {}).get("label", method)
        return f"{ds}: {method}, shard {wc.get('shard', '?')}"
    if row.rule == "speedup_at_K":
        return f"{ds}: K = {wc.get('K', '?')}"
    if row.rule == "align_volumes":
        return ds
    return f"{row.rule} {ds} " + " ".join(f"{k}={v}" for k, v in wc.items())


order = {r: i for i, r in enumerate(RULES)}
# grouped by rule; within a rule the table's order (main dataset first)
df = df.assign(_o=df.rule.map(lambda r: order.get(r, len(order)))).sort_values(
    "_o", kind="stable").reset_index(drop=True)
labels = [label(r) for r in df.itertuples()]
colours = [RULES.get(r, ("#7f7f7f", r))[0] for r in df.rule]
y = np.arange(len(df))[::-1]

fig, (ax_t, ax_m) = plt.subplots(1, 2, sharey=True, figsize=(
    style["width"], 1.2 + 0.17 * len(df)))
ax_t.barh(y, df.s, color=colours, height=0.7)
cpu = df.cpu_time / df.threads
ax_t.plot(cpu, y, "k|", markersize=7)
ax_t.set_xlabel("wall-clock time (s)")
ax_t.set_yticks(y)
ax_t.set_yticklabels(labels, fontsize=7)
ax_t.set_title("time per job")
ax_m.barh(y, df.max_rss, color=colours, height=0.7)
ax_m.set_xlabel("peak resident memory (MB)")
ax_m.set_title("memory per job")
handles = [Patch(color=colour, label=text) for name, (colour, text) in RULES.items()
           if (df.rule == name).any()]
handles += [Patch(color="#7f7f7f", label=r) for r in sorted(set(df.rule) - set(RULES))]
handles.append(Line2D([], [], color="k", marker="|", linestyle="none", markersize=7,
                      label="CPU time / threads"))
fig.legend(handles=handles, loc="lower center", ncol=2, frameon=False, fontsize=7)
if df.max_rss.isna().any():
    ax_m.text(0.98, 0.98, "no sample: job shorter than the sampling interval",
              transform=ax_m.transAxes, ha="right", va="top", fontsize=7)
threads = sorted(set(int(t) for t in df.threads))
fig.suptitle(f"Workflow jobs measured by Snakemake (benchmark files): {len(df)} jobs, "
             f"{'/'.join(map(str, threads))} thread(s) each; total "
             f"{df.s.sum():.0f} s wall clock", fontsize=9)
fig.tight_layout(rect=(0, 0.45 / (1.2 + 0.17 * len(df)), 1, 1))
save(fig, snakemake.output[0])
write_figure_data(snakemake.output[0], df.assign(cpu_per_thread_s=cpu), {
    "rule": ("-", "key", "benchmarked rule"), "wildcards": ("-", "key", "its wildcards"),
    "threads": ("1", "measured", "threads of the job (a run condition: not compared)"),
    "s": ("s", "timing", "wall-clock time"),
    "cpu_per_thread_s": ("s", "timing", "CPU time divided by the threads"),
    "max_rss": ("MB", "measured", "peak resident memory (empty when the job ended before "
                                  "Snakemake's first sample)")},
    "fig15: what each benchmarked job cost")
log.info("wrote %s", snakemake.output[0])
