"""Fig 8 (accuracy): image alignment over H with the radial-SVD: Frobenius error; correlation
and backward-error fraction f.  The measured speedup, which depends on the machine, is in
fig08_speedup (speedup_over_H.py)."""

import matplotlib.pyplot as plt

from wf_common import read_table, setup
from wf_figdata import ACCURACY_COLUMNS, write_figure_data
from wf_plot import accuracy_panels, apply_style, save

log = setup(snakemake)
style = apply_style(snakemake.params.style)
df = read_table(snakemake.input[0], "image_alignment")
sel = df[(df.dataset == snakemake.params.dataset) & (df.method == "radial_svd")]
if sel.empty:
    raise ValueError(f"no radial_svd rows for dataset {snakemake.params.dataset!r}")
row = sel.iloc[0]
fig, axes = plt.subplots(1, 2, figsize=(style["width"] * 0.85, style["width"] * 0.36))
accuracy_panels(axes, sel)
fig.suptitle(f"{snakemake.params.title}: {int(row.n_images)} images × {int(row.n_targets)} "
             f"targets per CTF group ({int(row.n_ctf_groups)} groups), K = {row.K:g}, "
             f"R = {int(row.R)}, Q = {int(row.Q)}", fontsize=9)
fig.tight_layout()
save(fig, snakemake.output[0])
columns = {**ACCURACY_COLUMNS,
    "R": ("1", "exact", "radial quadrature nodes (rings)"),
    "Q": ("1", "exact", "angles per ring"),
    "n_images": ("1", "exact", "images"), "n_targets": ("1", "exact", "targets per CTF group"),
    "n_ctf_groups": ("1", "exact", "CTF groups"), "n_pairs": ("1", "exact", "image–target pairs"),
}
write_figure_data(snakemake.output[0], sel.sort_values("H"), columns,
                  "Fig 8: image alignment over H (radial-SVD)")
log.info("wrote %s", snakemake.output[0])
