"""Fig 6: the same as Fig 5, between the two images, using the principal rings of the
CTF-corrected template."""

from matplotlib.lines import Line2D
import numpy as np

import pandas as pd

from landscape_plot import (ARGMAX_COLUMNS, LANDSCAPE_COLUMNS, figure_grid, landscape_rows,
                            plot_landscapes)
from wf_common import setup
from wf_figdata import write_figure_data
from wf_plot import save

log = setup(snakemake)
d = np.load(snakemake.input[0])
ranks = d["ranks"]
a, b = (int(i) for i in d["image_ids"])
n_cols = (len(ranks) + 1) // 2
fig, axes = figure_grid(snakemake.params.style, 2, n_cols)
flat = axes.ravel()
for ax in flat[len(ranks):]:
    ax.set_visible(False)
plot_landscapes(flat[:len(ranks)], d["gamma"], d["landscape_pair_full"], d["landscape_pair_H"],
                ranks, float(d["pair_true_angle"]))
for row in axes:
    row[0].set_ylabel(r"$X/\max|X|$")
for ax in axes[-1]:
    ax.set_xlabel(r"$\gamma$ (deg)")
handles = [Line2D([], [], color="k", lw=1.0, label="full landscape"),
           Line2D([], [], color="#d62728", lw=1.2, label="radial-SVD, rank H"),
           Line2D([], [], color="#00a5c8", lw=0.8, label="in-plane angle from the poses")]
fig.legend(handles=handles, loc="lower center", ncol=3, frameon=False,
           bbox_to_anchor=(0.5, -0.04))
fig.suptitle(fr"Landscape $\langle\hat A_{{{a}}}, R_\gamma\hat A_{{{b}}}\rangle$ between the "
             "two images for the first ranks", fontsize=9)
fig.tight_layout(rect=(0, 0.05, 1, 1))
save(fig, snakemake.output[0])
curves, argmax = landscape_rows(f"image{a}_vs_image{b}", d["gamma"], d["landscape_pair_full"],
                                d["landscape_pair_H"], ranks, float(d["pair_true_angle"]))
what = "Fig 6: landscape between two images, full and rank H"
write_figure_data(snakemake.output[0], pd.DataFrame(curves), LANDSCAPE_COLUMNS, what,
                  scale_by="curve")
write_figure_data(snakemake.output[0], pd.DataFrame(argmax), ARGMAX_COLUMNS,
                  what + ": argmax of each curve", table="argmax")
log.info("wrote %s", snakemake.output[0])
