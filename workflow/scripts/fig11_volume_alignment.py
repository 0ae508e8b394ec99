"""Fig 11: volume alignment over H (H_C = H_D = H): the three panels of Fig 8."""

import matplotlib.pyplot as plt

from wf_common import read_table, setup
from wf_plot import apply_style, metric_panels, save

log = setup(snakemake)
style = apply_style(snakemake.params.style)
df = read_table(snakemake.input[0], "volume_alignment")
sel = df[df.dataset == snakemake.params.dataset]
if sel.empty:
    raise ValueError(f"no volume rows for dataset {snakemake.params.dataset!r}")
row = sel.iloc[0]
fig, axes = plt.subplots(1, 3, figsize=(style["width"] * 1.2, style["width"] * 0.36))
metric_panels(axes, sel, ideal_label="ideal K/H (operation count)")
fig.suptitle(f"{snakemake.params.title}: {int(row.n_volumes)} volumes aligned to one target, "
             f"K = {row.K:g}, R = {int(row.R)}, L = {int(row.L)}, "
             f"$n_\\beta$ = {int(row.n_beta)}; {int(row.numba_threads)} thread(s)", fontsize=9)
fig.tight_layout()
save(fig, snakemake.output[0])
log.info("wrote %s", snakemake.output[0])
