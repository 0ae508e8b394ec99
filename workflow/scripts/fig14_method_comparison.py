"""fig14: radial-SVD against frequency marching (lowest rings) and energy PCA on the Fig 8
metrics: Frobenius error, correlation and backward-error fraction f over H; with the pose
scores of the particles simulated with shifts (workflow/rules/particles.smk), a last panel:
median angular error of align-particles' poses against the true poses per radial basis at
rank pose_rank and for the full calculation (bar; whisker to the 90th percentile), labelled
with the median shift error."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from wf_common import read_table, setup
from wf_figdata import ACCURACY_COLUMNS, write_figure_data
from wf_plot import METHOD_STYLE, apply_style, save

log = setup(snakemake)
style = apply_style(snakemake.params.style)
df = read_table(snakemake.input[0], "image_alignment")
df = df[df.dataset == snakemake.params.dataset]
poses = pd.read_csv(snakemake.input[1], sep="\t") if len(snakemake.input) > 1 else None
n_panels = 4 if poses is None else 5
fig, axes = plt.subplots(1, n_panels, figsize=(style["width"] * 0.34 * n_panels,
                                               style["width"] * 0.34))
for method, sel in df.groupby("method"):
    sel = sel.sort_values("H")
    kw = METHOD_STYLE.get(method, dict(label=method))
    # exact zeros (an identity basis at H = R) drawn at the float64 floor of the log axis
    axes[0].semilogy(sel.H, np.maximum(sel.frobenius_error, 1e-16), **kw)
    axes[1].plot(sel.H, sel.correlation, **kw)
    axes[2].plot(sel.H, sel.backward_f, **kw)
    axes[3].plot(sel.H, sel.speedup, **kw)
for ax, label in zip(axes[:4], ["relative Frobenius error", "correlation",
                            "backward-error fraction f", "measured speedup"]):
    ax.set_xlabel("rank H")
    ax.set_ylabel(label)
axes[3].set_yscale("log")
if poses is not None:
    ax = axes[4]
    x = np.arange(len(poses))
    med, p90 = poses.median_angle_error_deg.to_numpy(), poses.p90_angle_error_deg.to_numpy()
    ax.bar(x, med, color="0.55", width=0.7)
    ax.errorbar(x, med, yerr=[np.zeros_like(med), p90 - med], fmt="none", ecolor="0.2", lw=0.8)
    ax.axhline(poses.grid_spacing_deg.iloc[0], color="0.6", lw=0.8, ls=":")
    for xi, (m, d) in enumerate(zip(med, poses.median_shift_error_px)):
        ax.text(xi, m, f"{d:.2f}px", ha="center", va="bottom", fontsize=6)
    names = [("full" if m == "full" else f"{m} H={h}") for m, h in zip(poses.method, poses.H)]
    ax.set_xticks(x, names, rotation=60, ha="right", fontsize=6)
    ax.set_ylabel("pose error (deg): median, p90")
    ax.set_title("align-particles vs true poses (shifted)", fontsize=7)
axes[3].axhline(1.0, color="0.6", lw=0.8, ls=":")
handles, labels = axes[1].get_legend_handles_labels()
fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False,
           bbox_to_anchor=(0.5, -0.02))
fig.suptitle(f"{snakemake.params.title}: radial bases compared on the Fig 8 metrics "
             "(speedup: total time incl. precomputation)", fontsize=9)
fig.tight_layout(rect=(0, 0.08, 1, 1))
save(fig, snakemake.output[0])
write_figure_data(snakemake.output[0], df.sort_values(["method", "H"]), {
    "method": ("-", "key", "radial basis"), **ACCURACY_COLUMNS,
    "speedup": ("1", "timing", "measured total-time speedup over the full calculation")},
    "fig14: radial bases compared on the Fig 8 metrics")
if poses is not None:
    step = float(snakemake.params.shift_step)
    write_figure_data(snakemake.output[0], poses.assign(shift_step_px=step), {
        "method": ("-", "key", "radial basis (full: all rings)"), "H": ("1", "key", "rank"),
        "median_angle_error_deg": ("deg", "pose_error", "median geodesic error of the poses"),
        "p90_angle_error_deg": ("deg", "pose_error", "90th percentile of the pose errors"),
        "median_shift_error_px": ("px", "pose_error", "median error of the origins"),
        "grid_spacing_deg": ("deg", "exact", "equator spacing of the template grid, "
                                            "360/(3 + round(K)): one step of the angle search"),
        "shift_step_px": ("px", "exact", "spacing of the shift search grid")},
        "fig14: align-particles' poses against the true poses", table="poses")
log.info("wrote %s", snakemake.output[0])
