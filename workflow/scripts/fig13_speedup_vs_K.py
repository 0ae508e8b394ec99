"""fig13: measured total-time speedup of the radial-SVD over the full calculation as a
function of K, for the ranks of the sweep, with the operation-count ideal R/H.  Lines: the
best of the repeats; bands and bars: the range over the repeats (speedup_at_K.py)."""

import matplotlib.pyplot as plt
import numpy as np

from wf_common import read_table, setup
from wf_figdata import write_figure_data
from wf_plot import apply_style, save

log = setup(snakemake)
style = apply_style(snakemake.params.style)
df = read_table(snakemake.input[0], "speedup_vs_K")
fig, axes = plt.subplots(1, 2, figsize=(style["width"], style["width"] * 0.4))
colors = plt.cm.viridis(np.linspace(0.1, 0.85, df.H.nunique()))
for color, (H, sel) in zip(colors, df.groupby("H")):
    sel = sel.sort_values("K")
    axes[0].plot(sel.K, sel.speedup, color=color, marker="o", label=f"H = {H} measured")
    axes[0].fill_between(sel.K, sel.speedup_min, sel.speedup_max, color=color, alpha=0.25,
                         lw=0)
    axes[0].plot(sel.K, sel.ideal_speedup, color=color, ls="--", lw=1.0, label=f"H = {H} ideal R/H")
    best = sel.n_pairs / sel.time_compressed_s
    axes[1].errorbar(sel.K, best, yerr=[best - sel.n_pairs / sel.time_compressed_max_s,
                                        0 * best], color=color, marker="o", capsize=2,
                     label=f"rank H = {H} (excl. precomputation)")
first = df[df.H == df.H.min()].sort_values("K")
best = first.n_pairs / first.time_full_s
axes[1].errorbar(first.K, best, yerr=[best - first.n_pairs / first.time_full_max_s, 0 * best],
                 color="k", marker="s", capsize=2, label="full (H = R)")
axes[0].set_xlabel("K")
axes[0].set_ylabel("speedup (total time, precomputation incl.)")
axes[0].set_yscale("log")
axes[0].legend(frameon=False, fontsize=7, ncol=2, loc="upper left")
axes[0].set_ylim(top=axes[0].get_ylim()[1] * 3)
axes[1].set_xlabel("K")
axes[1].set_ylabel("throughput (image–target pairs / s)")
axes[1].set_yscale("log")
axes[1].legend(frameon=False, fontsize=7)
row = df.iloc[0]
n_rep = int(snakemake.params.repeats)
fig.suptitle(f"Speedup as a function of K ({int(row.n_images)} images, shell-rule targets; "
             f"{int(row.numba_threads)} thread(s))\nlines: best of {n_rep} repeats; bands and "
             "bars: their range", fontsize=9)
fig.tight_layout()
save(fig, snakemake.output[0])
write_figure_data(snakemake.output[0], df.sort_values(["H", "K"]).assign(
    throughput_compressed=df.n_pairs / df.time_compressed_s,
    throughput_full=df.n_pairs / df.time_full_s), {
    "H": ("1", "key", "rank H"), "K": ("box units", "key", "maximum frequency"),
    "R": ("1", "exact", "rings"), "n_pairs": ("1", "exact", "image–target pairs"),
    "ideal_speedup": ("1", "exact", "operation-count ideal R/H"),
    "speedup": ("1", "timing", "measured total-time speedup, best of the repeats"),
    "speedup_min": ("1", "timing", "smallest speedup over the repeats"),
    "speedup_max": ("1", "timing", "largest speedup over the repeats"),
    "throughput_compressed": ("pairs/s", "timing", "rank-H pairs per second (best run)"),
    "throughput_full": ("pairs/s", "timing", "full-calculation pairs per second (best run)")},
    "fig13: speedup and throughput as functions of K")
log.info("wrote %s", snakemake.output[0])
