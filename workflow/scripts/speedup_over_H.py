"""fig08_speedup and fig11_speedup: the measured total-time speedup over the full
calculation (precomputation included) against the operation-count ideal, over H, for the
main dataset (images: radial-SVD, ideal R/H; volumes: radial- and degree-SVD, ideal K/H).
Timing figures: written under {results}/figures/, not committed (they change with the
machine and its load)."""

import matplotlib.pyplot as plt

from wf_common import read_table, setup
from wf_figdata import write_figure_data
from wf_plot import apply_style, save, speedup_panel

log = setup(snakemake)
style = apply_style(snakemake.params.style)
table = snakemake.params.table
df = read_table(snakemake.input[0], table)
sel = df[df.dataset == snakemake.params.dataset]
if table == "image_alignment":
    sel = sel[sel.method == "radial_svd"]
    ideal, what = "ideal R/H (operation count)", "image alignment"
else:
    ideal, what = "ideal K/H (operation count)", "volume alignment"
if sel.empty:
    raise ValueError(f"no {table} rows for dataset {snakemake.params.dataset!r}")
row = sel.iloc[0]
fig, ax = plt.subplots(figsize=(style["width"] * 0.5, style["width"] * 0.4))
speedup_panel(ax, sel, ideal_label=ideal)
fig.suptitle(f"{snakemake.params.title}\n{what}, K = {row.K:g}; "
             f"{int(row.numba_threads)} thread(s)", fontsize=8)
fig.tight_layout()
save(fig, snakemake.output[0])
write_figure_data(snakemake.output[0], sel.sort_values("H"), {
    "H": ("1", "key", "rank H"),
    "ideal_speedup": ("1", "exact", "operation-count ideal, R/H (images) or K/H (volumes)"),
    "speedup": ("1", "timing", "measured total time of the full calculation over that of "
                               "rank H (precomputation included)"),
    "time_full_s": ("s", "timing", "full calculation, best of the repeats"),
    "time_precompute_s": ("s", "timing", "precomputation at rank H (basis, plan)"),
    "time_compressed_s": ("s", "timing", "rank-H calculation")},
    f"{what}: measured and ideal speedup over H")
log.info("wrote %s", snakemake.output[0])
