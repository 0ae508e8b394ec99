"""fig13: measured total-time speedup of the radial-SVD over the full calculation as a
function of K, for the ranks of the sweep, with the operation-count ideal R/H."""

import matplotlib.pyplot as plt
import numpy as np

from wf_common import read_table, setup
from wf_plot import apply_style, save

log = setup(snakemake)
style = apply_style(snakemake.params.style)
df = read_table(snakemake.input[0], "speedup_vs_K")
fig, axes = plt.subplots(1, 2, figsize=(style["width"], style["width"] * 0.4))
colors = plt.cm.viridis(np.linspace(0.1, 0.85, df.H.nunique()))
for color, (H, sel) in zip(colors, df.groupby("H")):
    sel = sel.sort_values("K")
    axes[0].plot(sel.K, sel.speedup, color=color, marker="o", label=f"H = {H} measured")
    axes[0].plot(sel.K, sel.ideal_speedup, color=color, ls="--", lw=1.0, label=f"H = {H} ideal R/H")
    axes[1].plot(sel.K, sel.n_pairs / sel.time_compressed_s, color=color, marker="o",
                 label=f"rank H = {H} (excl. precomputation)")
first = df[df.H == df.H.min()].sort_values("K")
axes[1].plot(first.K, first.n_pairs / first.time_full_s, color="k", marker="s",
             label="full (H = R)")
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
fig.suptitle(f"Speedup as a function of K ({int(row.n_images)} images, shell-rule targets; "
             f"{int(row.numba_threads)} thread(s))", fontsize=9)
fig.tight_layout()
save(fig, snakemake.output[0])
log.info("wrote %s", snakemake.output[0])
