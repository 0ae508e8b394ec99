"""fig14: radial-SVD against frequency marching (lowest rings) and energy PCA on the Fig 8
metrics: Frobenius error, correlation and backward-error fraction f over H."""

import matplotlib.pyplot as plt
import numpy as np

from wf_common import read_table, setup
from wf_plot import METHOD_STYLE, apply_style, save

log = setup(snakemake)
style = apply_style(snakemake.params.style)
df = read_table(snakemake.input[0], "image_alignment")
df = df[df.dataset == snakemake.params.dataset]
fig, axes = plt.subplots(1, 4, figsize=(style["width"] * 1.35, style["width"] * 0.34))
for method, sel in df.groupby("method"):
    sel = sel.sort_values("H")
    kw = METHOD_STYLE.get(method, dict(label=method))
    # exact zeros (an identity basis at H = R) drawn at the float64 floor of the log axis
    axes[0].semilogy(sel.H, np.maximum(sel.frobenius_error, 1e-16), **kw)
    axes[1].plot(sel.H, sel.correlation, **kw)
    axes[2].plot(sel.H, sel.backward_f, **kw)
    axes[3].plot(sel.H, sel.speedup, **kw)
for ax, label in zip(axes, ["relative Frobenius error", "correlation",
                            "backward-error fraction f", "measured speedup"]):
    ax.set_xlabel("rank H")
    ax.set_ylabel(label)
axes[3].set_yscale("log")
axes[3].axhline(1.0, color="0.6", lw=0.8, ls=":")
handles, labels = axes[1].get_legend_handles_labels()
fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False,
           bbox_to_anchor=(0.5, -0.02))
fig.suptitle(f"{snakemake.params.title}: radial bases compared on the Fig 8 metrics "
             "(speedup: total time incl. precomputation)", fontsize=9)
fig.tight_layout(rect=(0, 0.08, 1, 1))
save(fig, snakemake.output[0])
log.info("wrote %s", snakemake.output[0])
