"""Fig 4: eigenvalues of the radial kernel C (single CTF-corrected template, and the
target-averaged, CTF-grouped kernel used for the alignment of Fig 8)."""

import matplotlib.pyplot as plt
import numpy as np

import pandas as pd

from wf_common import setup
from wf_figdata import write_figure_data
from wf_plot import BLACK, RED, apply_style, save

log = setup(snakemake)
style = apply_style(snakemake.params.style)
d = np.load(snakemake.input[0])
single = np.sort(d["spectrum_single"])[::-1]
multi = np.sort(d["spectrum_multi"])[::-1]
fig, ax = plt.subplots(figsize=(style["width"] * 0.6, style["width"] * 0.42))
h = np.arange(1, len(single) + 1)
floor = 1e-16
ax.semilogy(h, np.maximum(single / single[0], floor), color=BLACK, marker="o",
            label=r"$C(\mathrm{CTF}\odot\hat{S})$, one template")
ax.semilogy(np.arange(1, len(multi) + 1), np.maximum(multi / multi[0], floor), color=RED,
            marker="s", mfc="none", label="averaged over targets and CTF groups (eq. 85)")
ax.set_xlabel("index h of the principal vector")
ax.set_ylabel(r"eigenvalue $\lambda_h / \lambda_1$")
ax.set_xlim(0, len(single) + 1)
ax.set_ylim(max(floor, 0.5 * min(single.min() / single[0], multi.min() / multi[0])), 2)
ax.set_title(f"Spectrum of C (R = {len(single)} rings, K = {float(d['K']):g})")
ax.legend(frameon=False, loc="upper right")
fig.tight_layout()
save(fig, snakemake.output[0])
write_figure_data(snakemake.output[0], pd.DataFrame({
    "h": np.arange(1, len(single) + 1), "single_template": single / single[0],
    "averaged": multi / multi[0]}), {
    "h": ("1", "key", "index of the principal vector (eigenvalues in decreasing order)"),
    "single_template": ("1", "spectrum", "λ_h/λ_1 of C for one CTF-corrected template"),
    "averaged": ("1", "spectrum", "λ_h/λ_1 of C averaged over targets and CTF groups (eq. 85)")},
    f"Fig 4: spectrum of the radial kernel C (R = {len(single)}, K = {float(d['K']):g})")
log.info("wrote %s", snakemake.output[0])
