"""fig16: landscapes with shifts (paper §5) — correlation and backward-error fraction f of
the rank-H landscapes X^H(γ, δ) against the full X(γ, δ) over H, on particles that are not
centred (drawn as 1 − correlation and 1 − f, log scale), for the unshifted radial-SVD
kernel, the shift-averaged kernels of eq. 118 (shift-svd) and eq. 119–121
(gaussian-shift-svd), and the baselines."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from wf_common import setup
from wf_figdata import ACCURACY_COLUMNS, EIGENGAP_COLUMNS, write_figure_data
from wf_plot import apply_style, save

STYLE = {
    "radial-svd": dict(color="#d62728", marker="o", label="radial-SVD (unshifted kernel)"),
    "shift-svd": dict(color="#9467bd", marker="D", label="eq. 118 kernel (shift disc)"),
    "gaussian-shift-svd": dict(color="#ff7f0e", marker="v", label="eq. 119 kernel (Gaussian σ)"),
    "frequency-marching": dict(color="#1f77b4", marker="s", label="frequency marching"),
    "energy-pca": dict(color="#2ca02c", marker="^", label="energy PCA"),
}

log = setup(snakemake)
style = apply_style(snakemake.params.style)
df = pd.read_csv(snakemake.input[0], sep="\t")
fig, axes = plt.subplots(1, 2, figsize=(style["width"], style["width"] * 0.42))
for method, sel in df.groupby("method", sort=False):
    sel = sel.sort_values("H")
    kw = STYLE.get(method, dict(label=method))
    # distances from the ideal 1 on a log axis (exact 1 drawn at the float64 floor)
    axes[0].semilogy(sel.H, np.maximum(1 - sel.correlation, 1e-12), ms=4, **kw)
    axes[1].semilogy(sel.H, np.maximum(1 - sel.backward_f, 1e-12), ms=4, **kw)
for ax, label in zip(axes, ["1 − correlation (X^H vs X)", "1 − backward-error fraction f"]):
    ax.set_xlabel("rank H")
    ax.set_ylabel(label)
sh = snakemake.params.shifts
row = df.iloc[0]
handles, labels = axes[0].get_legend_handles_labels()
fig.legend(handles, labels, loc="lower center", ncol=3, frameon=False, bbox_to_anchor=(0.5, -0.02))
fig.suptitle(f"{snakemake.params.title}: {int(row.n_images)} particles shifted up to "
             f"{sh['max_shift']:g} px, {int(row.n_targets)} templates, {int(row.n_shifts)} shifts "
             f"(disc {sh['search_max_shift']:g} px), K = {row.K:g}", fontsize=8)
fig.tight_layout(rect=(0, 0.14, 1, 1))
save(fig, snakemake.output[0])
write_figure_data(snakemake.output[0], df.sort_values(["method", "H"], kind="stable"), {
    "method": ("-", "key", "radial basis"), **ACCURACY_COLUMNS,
    "n_images": ("1", "exact", "shifted particles"), "n_targets": ("1", "exact", "templates"),
    "n_shifts": ("1", "exact", "shifts searched"), **EIGENGAP_COLUMNS},
    "fig16: landscapes with shifts, X^H(γ, δ) against X(γ, δ) over H", scale_by="method")
log.info("wrote %s", snakemake.output[0])
