"""Fig 12: for each further dataset, the 97.5 % level set of its reference, then correlation
and backward-error fraction f over H for image alignment and for volume alignment (both on
the y-axis of each panel, 0 to 1)."""

import matplotlib.pyplot as plt
import numpy as np

from isosurface_plot import draw_isosurface
import pandas as pd

from wf_common import read_table, setup
from wf_figdata import PANEL_COLUMNS, volume_panel_rows, write_figure_data
from wf_plot import CYAN, RED, apply_style, save

log = setup(snakemake)
style = apply_style(snakemake.params.style)
images = read_table(snakemake.input.images, "image_alignment")
volumes = read_table(snakemake.input.volumes, "volume_alignment")
names = list(snakemake.params.datasets)
descriptions = list(snakemake.params.descriptions)
n = len(names)
curves, levels = [], []
fig = plt.figure(figsize=(style["width"], 1.75 * n + 0.4))
gs = fig.add_gridspec(n, 3, width_ratios=[1.0, 1.2, 1.2], wspace=0.3, hspace=0.35,
                      left=0.02, right=0.98, top=1 - 0.35 / (1.75 * n + 0.4), bottom=0.45 / (1.75 * n + 0.4))
for i, (name, desc, iso) in enumerate(zip(names, descriptions, snakemake.input.isosurfaces)):
    d = np.load(iso)
    levels += volume_panel_rows(name, d["reference"], [97.5])
    ax = fig.add_subplot(gs[i, 0], projection="3d")
    draw_isosurface(ax, d["reference"], float(np.percentile(d["reference"], 97.5)),
                    color="#d9a38f")
    ax.set_title(desc.replace(" (", "\n("), fontsize=7)
    for j, (df, what) in enumerate(((images, "image"), (volumes, "volume"))):
        sel = df[(df.dataset == name) & (df.method.isin(["radial_svd", "radial_degree_svd"]))]
        sel = sel.sort_values("H")
        curves += [dict(dataset=name, alignment=what, H=int(r.H), correlation=r.correlation,
                        backward_f=r.backward_f) for r in sel.itertuples()]
        ax = fig.add_subplot(gs[i, 1 + j])
        ax.plot(sel.H, sel.correlation, color=RED, marker="o", label="correlation")
        ax.plot(sel.H, sel.backward_f, color=CYAN, marker="s", label="backward-error fraction f")
        ax.set_ylim(min(0.0, float(np.nanmin(sel[["correlation", "backward_f"]].values))) - 0.02,
                    1.02)
        ax.set_xlim(0, float(sel.H.max()) + 1)
        ax.set_yticks([0, 0.5, 1])
        ax.set_ylabel("correlation, f", fontsize=7)
        if i == 0:
            ax.set_title(f"{what} alignment", fontsize=9)
        if i == n - 1:
            ax.set_xlabel("rank H")
        else:
            ax.tick_params(labelbottom=False)
        if i == 0 and j == 1:
            ax.legend(loc="lower right", frameon=False, fontsize=7)
save(fig, snakemake.output[0])
write_figure_data(snakemake.output[0], pd.DataFrame(curves), {
    "dataset": ("-", "key", "dataset"), "alignment": ("-", "key", "image or volume"),
    "H": ("1", "key", "rank H"),
    "correlation": ("1", "correlation", "correlation of X^H with X"),
    "backward_f": ("1", "fraction", "backward-error fraction f")},
    "Fig 12: correlation and f over H for the further datasets")
write_figure_data(snakemake.output[0], pd.DataFrame(levels), {
    **PANEL_COLUMNS, "value": ("a.u.", "signal", "voxel statistics and the 97.5th-percentile "
                                                 "isosurface level of each reference")},
    "Fig 12: the references drawn as isosurfaces", table="isosurfaces", scale_by="panel")
log.info("wrote %s", snakemake.output[0])
