"""Fig 1: two images A(x), their signal estimates, and both on the polar Fourier grid."""

import matplotlib.pyplot as plt
import numpy as np

import pandas as pd

from wf_common import setup
from wf_figdata import PANEL_COLUMNS, image_panel_rows, write_figure_data
from wf_plot import apply_style, save, show_image, show_polar

log = setup(snakemake)
style = apply_style(snakemake.params.style)
d = np.load(snakemake.input[0])
ids = d["image_ids"]
fig, axes = plt.subplots(2, 4, figsize=(style["width"], style["width"] * 0.52))
for row in range(2):
    show_image(axes[row, 0], d["images"][row], r"$A(\mathbf{x})$" if row == 0 else None)
    show_image(axes[row, 1], d["signals"][row],
               r"$A^{\mathrm{signal}}(\mathbf{x})$" if row == 0 else None)
    show_polar(axes[row, 2], d["polar_images"][row], d["k"], d["psi"],
               r"$\Re\,\hat{A}(k,\psi)$" if row == 0 else None)
    show_polar(axes[row, 3], d["polar_signals"][row], d["k"], d["psi"],
               r"$\Re\,\hat{A}^{\mathrm{signal}}(k,\psi)$" if row == 0 else None)
    axes[row, 0].set_ylabel(f"image {int(ids[row])}")
R, Q = d["polar_images"].shape[1:]
box, px = int(d["box"]), float(d["pixel_size"])
fig.suptitle(f"Two images of {str(d['dataset'])}\nreal space ({box}×{box} px, "
             f"{box * px:.0f} Å) and polar Fourier grid (K = {float(d['K']):g}, R = {R}, "
             f"Q = {Q}); colour: mean ± 2.5 s.d.", fontsize=8)
fig.tight_layout()
save(fig, snakemake.output[0])
rows = []
for row in range(2):
    name = f"image{int(ids[row])}"
    for panel, key in (("image", "images"), ("signal", "signals"),
                       ("polar_image", "polar_images"), ("polar_signal", "polar_signals")):
        rows += image_panel_rows(f"{name}_{panel}", d[key][row])
write_figure_data(snakemake.output[0], pd.DataFrame(rows), {
    **PANEL_COLUMNS,
    "value": ("a.u.", "signal", "pixel values (real space) or Re Â on the R × Q polar grid "
                                "(rings × angles), normalised particle units")},
    "Fig 1: two images and their signal estimates, real space and polar grid",
    scale_by="panel")
log.info("wrote %s and its data", snakemake.output[0])
