"""Fig 11 (accuracy): volume alignment over H (H_C = H_D = H): the accuracy panels of Fig 8.
The measured speedup is in fig11_speedup (speedup_over_H.py)."""

import matplotlib.pyplot as plt

from wf_common import read_table, setup
from wf_figdata import ACCURACY_COLUMNS, write_figure_data
from wf_plot import accuracy_panels, apply_style, save

log = setup(snakemake)
style = apply_style(snakemake.params.style)
df = read_table(snakemake.input[0], "volume_alignment")
sel = df[df.dataset == snakemake.params.dataset]
if sel.empty:
    raise ValueError(f"no volume rows for dataset {snakemake.params.dataset!r}")
row = sel.iloc[0]
fig, axes = plt.subplots(1, 2, figsize=(style["width"] * 0.85, style["width"] * 0.36))
accuracy_panels(axes, sel)
fig.suptitle(f"{snakemake.params.title}: {int(row.n_volumes)} volumes aligned to one target, "
             f"K = {row.K:g}, R = {int(row.R)}, L = {int(row.L)}, "
             f"$n_\\beta$ = {int(row.n_beta)}", fontsize=9)
fig.tight_layout()
save(fig, snakemake.output[0])
columns = {**ACCURACY_COLUMNS,
    "H_C": ("1", "exact", "radial principal vectors kept, min(H, R)"),
    "H_D": ("1", "exact", "degree principal vectors kept, min(H, L + 1)"),
    "R": ("1", "exact", "radial shells"), "L": ("1", "exact", "maximum degree"),
    "n_beta": ("1", "exact", "β grid size"), "n_volumes": ("1", "exact", "volumes"),
    "n_pairs": ("1", "exact", "volume–target pairs"),
}
write_figure_data(snakemake.output[0], sel.sort_values("H"), columns,
                  "Fig 11: volume alignment over H (radial- and degree-SVD)")
log.info("wrote %s", snakemake.output[0])
