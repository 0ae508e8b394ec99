"""Fig 9: isosurfaces (marching cubes) of the reference volume and three reconstructions,
one row per percentile level."""

import matplotlib.pyplot as plt
import numpy as np

from isosurface_plot import draw_isosurface
import pandas as pd

from wf_common import setup
from wf_figdata import PANEL_COLUMNS, volume_panel_rows, write_figure_data
from wf_plot import apply_style, save

log = setup(snakemake)
style = apply_style(snakemake.params.style)
d = np.load(snakemake.input[0])
vols = [d["reference"]] + list(d["examples"])
titles = ["reference"] + [f"reconstruction {int(i)}" for i in d["example_ids"]]
pcts = d["percentiles"]
n_r, n_c = len(pcts), len(vols)
fig = plt.figure(figsize=(style["width"], style["width"] * n_r / n_c))
for i, p in enumerate(pcts):
    for j, vol in enumerate(vols):
        ax = fig.add_subplot(n_r, n_c, i * n_c + j + 1, projection="3d")
        draw_isosurface(ax, vol, float(np.percentile(vol, p)), color="#8fb3d9" if j else "#d9a38f")
        if i == 0:
            ax.set_title(titles[j], fontsize=8)
        if j == 0:
            ax.text2D(-0.08, 0.5, f"{p:g}th percentile", transform=ax.transAxes, rotation=90,
                      va="center", ha="center", fontsize=8)
fig.suptitle(f"{str(d['dataset'])}: reference and reconstructions (isosurfaces)", fontsize=9)
fig.subplots_adjust(left=0.03, right=0.99, top=0.92, bottom=0.01, wspace=0.0, hspace=0.02)
save(fig, snakemake.output[0])
rows = []
for title, vol in zip(titles, vols):
    rows += volume_panel_rows(title.replace(" ", ""), vol, pcts)
write_figure_data(snakemake.output[0], pd.DataFrame(rows), {
    **PANEL_COLUMNS, "value": ("a.u.", "signal", "voxel statistics and isosurface levels "
                                                 "(the percentiles of the voxel values drawn)")},
    "Fig 9: reference and reconstructions drawn as isosurfaces", scale_by="panel")
log.info("wrote %s", snakemake.output[0])
