"""Fig 7: a gallery of particle images (top) and their CTF-corrected templates (bottom)."""

import matplotlib.pyplot as plt
import numpy as np

import pandas as pd

from wf_common import setup
from wf_figdata import PANEL_COLUMNS, image_panel_rows, write_figure_data
from wf_plot import apply_style, save, show_image

log = setup(snakemake)
style = apply_style(snakemake.params.style)
d = np.load(snakemake.input[0])
n = len(d["image_ids"])
fig, axes = plt.subplots(2, n, figsize=(style["width"], style["width"] * 2.15 / n))
axes = np.atleast_2d(axes).reshape(2, n)
for j in range(n):
    show_image(axes[0, j], d["images"][j], f"image {int(d['image_ids'][j])}")
    show_image(axes[1, j], d["templates"][j])
    axes[1, j].set_xlabel(f"defocus {d['defocus'][j] / 1e4:.2f} µm", fontsize=7)
axes[0, 0].set_ylabel("particle image")
axes[1, 0].set_ylabel("CTF-corrected\ntemplate")
fig.suptitle(f"{str(d['dataset'])}\nparticle images and CTF-corrected templates "
             f"({int(d['box'])} px, {float(d['pixel_size']):.2f} Å/px)", fontsize=9)
fig.tight_layout()
save(fig, snakemake.output[0])
rows = []
for j in range(n):
    rows += image_panel_rows(f"image{int(d['image_ids'][j])}", d["images"][j])
    rows += image_panel_rows(f"template{int(d['image_ids'][j])}", d["templates"][j])
write_figure_data(snakemake.output[0], pd.DataFrame(rows), {
    **PANEL_COLUMNS, "value": ("a.u.", "signal", "pixel values, normalised particle units")},
    "Fig 7: particle images and their CTF-corrected templates", scale_by="panel")
write_figure_data(snakemake.output[0], pd.DataFrame({
    "image": d["image_ids"].astype(int), "defocus_um": d["defocus"] / 1e4}), {
    "image": ("1", "key", "particle index in the stack"),
    "defocus_um": ("µm", "exact", "mean defocus (DefocusU + DefocusV)/2 from the STAR file")},
    "Fig 7: defocus of the gallery's particles", table="defocus")
log.info("wrote %s", snakemake.output[0])
