"""Fig 5: X(γ; Â, CTF ⊙ Ŝ) for the two images of Fig 1 against their CTF-corrected template,
full and at H = 1 … 8 (each curve normalised by its maximum |X|)."""

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
fig, axes = figure_grid(snakemake.params.style, 2, len(ranks))
for row in range(2):
    plot_landscapes(axes[row], d["gamma"], d["landscape_template_full"][row],
                    d["landscape_template_H"][row], ranks, d["true_angle"][row])
    axes[row, 0].set_ylabel(f"image {int(d['image_ids'][row])}\n" r"$X/\max|X|$")
for ax in axes[-1]:
    ax.set_xlabel(r"$\gamma$ (deg)")
handles = [Line2D([], [], color="k", lw=1.0, label="full landscape"),
           Line2D([], [], color="#d62728", lw=1.2, label="radial-SVD, rank H"),
           Line2D([], [], color="#00a5c8", lw=0.8, label="true in-plane angle")]
fig.legend(handles=handles, loc="lower center", ncol=3, frameon=False,
           bbox_to_anchor=(0.5, -0.04))
fig.suptitle(r"Landscapes $X(\gamma;\hat A,\mathrm{CTF}\odot\hat S)$ of each image against its "
             "CTF-corrected template", fontsize=9)
fig.tight_layout(rect=(0, 0.05, 1, 1))
save(fig, snakemake.output[0])
curves, argmax = [], []
for row in range(2):
    c, a = landscape_rows(f"image{int(d['image_ids'][row])}_vs_template", d["gamma"],
                          d["landscape_template_full"][row], d["landscape_template_H"][row],
                          ranks, d["true_angle"][row])
    curves, argmax = curves + c, argmax + a
what = "Fig 5: landscapes of two images against their CTF-corrected template, full and rank H"
write_figure_data(snakemake.output[0], pd.DataFrame(curves), LANDSCAPE_COLUMNS, what,
                  scale_by="curve")
write_figure_data(snakemake.output[0], pd.DataFrame(argmax), ARGMAX_COLUMNS,
                  what + ": argmax of each curve", table="argmax")
log.info("wrote %s", snakemake.output[0])
