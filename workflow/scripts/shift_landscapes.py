"""Landscapes with shifts (paper §5): X(γ, δ) = <Â, T_δ R_γ B̂> over the searched shift disc
for the particles simulated with shifts (not centred), the full calculation against rank H of
every radial basis, reduced to correlation, Frobenius error and backward-error fraction f
over (pairs × shifts × angles).  Bases, pooled over the CTF groups: radial-svd (the unshifted
kernel, eq. 85), shift-svd (eq. 118 on the searched disc), gaussian-shift-svd (eq. 119–121,
σ = max_shift/2: the per-axis std of shifts uniform in that disc), frequency-marching and
energy-pca.

Output TSV: method, H, R, Q, K, n_images, n_targets, n_shifts, correlation, frobenius_error,
backward_f, lambda_H, lambda_next: λ_H/λ_1 and λ_{H+1}/λ_1 of the eigenvalues of the basis's
own kernel (NaN for frequency-marching, which has none), so that the check can bound how far
rounding rotates the kept rank-H subspace (Davis–Kahan; docs/reproducibility.md).
"""

import numpy as np
import pandas as pd

from radsvd._files import atomic_path
from radsvd.images.align import landscapes
from radsvd.images.methods import make_basis
from radsvd.images.particles import prepare_particles
from radsvd.images.polar import images_to_fb
from radsvd.images.shifts import shift_grid
from radsvd.volumes.shells import map_shells
from radsvd.metrics import LandscapeMetrics
from wf_common import rank_sweep, setup

log = setup(snakemake)
sh = snakemake.params.shifts
prob = prepare_particles(snakemake.input.star, snakemake.input.map, K=float(sh["K"]),
                         ignore_origins=True, ctf_tolerance=float(snakemake.params.ctf_tolerance))
grid, N = prob.grid, prob.box
shifts = shift_grid(float(sh["search_max_shift"]), float(sh["shift_step"]), N)
ranks = [h for h in rank_sweep(sh["ranks"], grid.R) if h < grid.R]
shells = map_shells(prob.volume, grid)
bases = {m: make_basis(m, grid, prob.templates, ctf_rings=prob.rings, group_sizes=prob.counts,
                       shifts=shifts, box=N, sigma=float(sh["search_max_shift"]) / 2,
                       shells=shells)
         for m in snakemake.params.methods}
log.info("%d images, %d templates, %d CTF group(s), %d shifts, K=%g R=%d Q=%d, ranks %s",
         len(prob.images), len(prob.templates), len(prob.rings), len(shifts), grid.K, grid.R,
         grid.Q, ranks)
stats = {(m, h): LandscapeMetrics() for m in bases for h in ranks}
chunk = 4
for g in range(len(prob.rings)):
    sel = np.flatnonzero(prob.labels == g)
    targets = prob.targets(g)
    for c0 in range(0, len(sel), chunk):
        fa = images_to_fb(prob.images[sel[c0:c0 + chunk]], grid)
        X = landscapes(fa, targets, grid, shifts=shifts, box=N)
        X = X.reshape(-1, len(shifts) * grid.Q)
        for m, basis in bases.items():
            for h in ranks:
                XH = landscapes(fa, targets, grid, basis=basis, rank=h, shifts=shifts, box=N)
                stats[m, h].update(X, XH.reshape(X.shape))
rows = []
for (m, h), st in stats.items():
    r = st.result()
    lam = bases[m].values
    has_kernel = m != "frequency-marching"    # its values are the ring frequencies, negated
    rows.append(dict(method=m, H=h, R=grid.R, Q=grid.Q, K=grid.K, n_images=len(prob.images),
                     n_targets=len(prob.templates), n_shifts=len(shifts),
                     correlation=r["correlation"], frobenius_error=r["rel_frobenius"],
                     backward_f=r["f"],
                     lambda_H=lam[h - 1] / lam[0] if has_kernel else np.nan,
                     lambda_next=lam[h] / lam[0] if has_kernel else np.nan))
    log.info("%-20s H=%2d  corr %.5f  f %.5f", m, h, r["correlation"], r["f"])
with atomic_path(snakemake.output[0], suffix=".tsv") as tmp:
    pd.DataFrame(rows).to_csv(tmp, sep="\t", index=False, float_format="%.10g")
log.info("wrote %s", snakemake.output[0])
