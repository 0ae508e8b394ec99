"""Fig 8: image alignment over H with the radial-SVD: Frobenius error; correlation and
backward-error fraction f; measured total-time speedup against the ideal R/H."""

import matplotlib.pyplot as plt

from wf_common import read_table, setup
from wf_plot import apply_style, metric_panels, save

log = setup(snakemake)
style = apply_style(snakemake.params.style)
df = read_table(snakemake.input[0], "image_alignment")
sel = df[(df.dataset == snakemake.params.dataset) & (df.method == "radial_svd")]
if sel.empty:
    raise ValueError(f"no radial_svd rows for dataset {snakemake.params.dataset!r}")
row = sel.iloc[0]
fig, axes = plt.subplots(1, 3, figsize=(style["width"] * 1.2, style["width"] * 0.36))
metric_panels(axes, sel, ideal_label="ideal R/H (operation count)")
fig.suptitle(f"{snakemake.params.title}: {int(row.n_images)} images × {int(row.n_targets)} "
             f"targets per CTF group ({int(row.n_ctf_groups)} groups), K = {row.K:g}, "
             f"R = {int(row.R)}, Q = {int(row.Q)}; {int(row.numba_threads)} thread(s)",
             fontsize=9)
fig.tight_layout()
save(fig, snakemake.output[0])
log.info("wrote %s", snakemake.output[0])
