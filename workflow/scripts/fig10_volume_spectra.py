"""Fig 10: eigenvalues of the radial kernel C and the degree kernel D for the volumes."""

import matplotlib.pyplot as plt
import numpy as np

import pandas as pd

from wf_common import setup
from wf_figdata import write_figure_data
from wf_plot import BLACK, RED, apply_style, save

log = setup(snakemake)
style = apply_style(snakemake.params.style)
d = np.load(snakemake.input[0])
fig, axes = plt.subplots(1, 2, figsize=(style["width"], style["width"] * 0.38), sharey=True)
floor = 1e-16
for ax, key, color, name, count in (
        (axes[0], "C_eigenvalues", BLACK, "radial kernel C", "R = {n} shells"),
        (axes[1], "D_eigenvalues", RED, "degree kernel D", "degrees l = 0 … {last}")):
    lam = np.sort(np.asarray(d[key], float))[::-1]
    ax.semilogy(np.arange(1, len(lam) + 1), np.maximum(lam / lam[0], floor), color=color,
                marker="o")
    ax.set_xlabel("index h of the principal vector")
    ax.set_title(f"{name} ({count.format(n=len(lam), last=len(lam) - 1)})")
    ax.set_xlim(0, len(lam) + 1)
axes[0].set_ylabel(r"eigenvalue $\lambda_h/\lambda_1$")
fig.suptitle(f"{str(d['dataset'])}: spectra of the volume kernels (K = {float(d['K']):g})",
             fontsize=9)
fig.tight_layout()
save(fig, snakemake.output[0])
spectra = {k: np.sort(np.asarray(d[k], float))[::-1] for k in ("C_eigenvalues", "D_eigenvalues")}
rows = [dict(kernel=k[0], h=h + 1, eigenvalue_normalised=float(v / lam[0]))
        for k, lam in spectra.items() for h, v in enumerate(lam)]
write_figure_data(snakemake.output[0], pd.DataFrame(rows), {
    "kernel": ("-", "key", "C (radial, over shells) or D (degree)"),
    "h": ("1", "key", "index of the principal vector (decreasing eigenvalues)"),
    "eigenvalue_normalised": ("1", "spectrum", "λ_h/λ_1")},
    f"Fig 10: spectra of the volume kernels C and D (K = {float(d['K']):g})",
    scale_by="kernel")
log.info("wrote %s", snakemake.output[0])
