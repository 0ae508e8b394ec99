"""Particles → Fourier–Bessel coefficients on the polar grid (eq. 32–34), ring CTFs and the
greedy CTF groups used for the per-group kernels and targets (docs/design.md).

Output npz: fb (n, R, Q//2+1) complex128; ctf_rings (n, R); labels (n,) CTF group of each
image; group_rings (m, R) mean ring CTF per group; group_counts (m,); k, w (R,); K, R, Q,
box, pixel_size; defocus (n,) mean defocus in Å.
"""

import numpy as np

from radsvd import PolarGrid
from radsvd.data.ctf import cluster_ctf, ctf_polar_stack
from radsvd.data.stacks import ctf_params, load_particles
from radsvd.images.polar import images_to_fb
from wf_common import save_npz, setup

log = setup(snakemake)
cfg = snakemake.params.cfg["images"]
images, table = load_particles(snakemake.input.star, n=int(cfg["n_images"]), dtype=np.float64)
n, N = images.shape[0], images.shape[-1]
pixel_size = float(table["pixel_size"].iloc[0])
grid = PolarGrid(K=float(cfg["K"]))
log.info("%d images of %d px (%.4g Å/px) -> polar grid K=%g R=%d Q=%d", n, N, pixel_size,
         grid.K, grid.R, grid.Q)
fb = images_to_fb(images, grid)
params = ctf_params(table)
rings = ctf_polar_stack(params, grid, N, table["pixel_size"].to_numpy(), ring=True)
groups = cluster_ctf(rings, weights=grid.w, tolerance=float(cfg["ctf_tolerance"]))
log.info("%d CTF group(s) at tolerance %g; sizes %s", groups.n_groups, groups.tolerance,
         groups.counts.tolist())
save_npz(snakemake.output[0], fb=fb, ctf_rings=rings, labels=groups.labels,
         group_rings=groups.rings, group_counts=groups.counts, k=grid.k, w=grid.w,
         K=grid.K, R=grid.R, Q=grid.Q, box=N, pixel_size=pixel_size,
         defocus=0.5 * (table["defocus_u"].to_numpy() + table["defocus_v"].to_numpy()))
log.info("wrote %s", snakemake.output[0])
