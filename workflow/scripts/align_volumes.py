"""Volume alignment over H (paper §4.10, Figs 10–11): the test volumes against the reference.

In one job, on the same volumes (radsvd.volumes): the best rotation of every volume from the
full SO(3) landscapes (eq. 104) and from the compressed ones (eq. 117) at H_C = min(H, R),
H_D = min(H, L+1) for each H of the sweep, timed after a warm-up (best of
``volumes.repeats`` runs; precomputation = basis (kernels C, D and their eigenvectors) + plan
(Wigner-d or [vᵀd] tables)); then the metrics of every rank over the whole (α, β, γ) grid
(radsvd.volumes.align.rank_sweep, streaming over blocks of volumes).  Writes the tidy table
and the spectra of C and D.
"""

import numpy as np

from radsvd.volumes.align import align_volumes, rank_sweep
from radsvd.volumes.basis import volume_svd
from radsvd.volumes.landscape import default_M, prepare
from radsvd.volumes.shells import ShellGrid, to_shells
from wf_common import best_of, rank_sweep as sweep_of, save_npz, setup, thread_counts, write_table

log = setup(snakemake)
cfg = snakemake.params.cfg
vcfg = cfg["volumes"]
d = np.load(snakemake.input[0])
grid = ShellGrid(K=float(vcfg["K"]))
coef_t = to_shells(d["reference"], grid)[0]
coef_v = to_shells(d["volumes"], grid)
n = coef_v.shape[0]
R, L = grid.R, grid.L
ranks = sweep_of(vcfg["ranks"], max(R, L + 1))
repeats = int(vcfg["repeats"])
log.info("%d volumes of %d³, K=%g: R=%d L=%d, α/γ grid M=%d, ranks %s", n,
         d["volumes"].shape[-1], grid.K, R, L, default_M(L), ranks)


def hc_hd(H):
    return min(H, R), min(H, L + 1)


def precompute(H):
    """Basis (kernels C and D, their eigenvectors) and the compressed plan at rank H."""
    basis = volume_svd(coef_t, grid)
    return basis, prepare(grid, coef_t, basis, rank=hc_hd(H))


# warm-up: compile the kernels of both paths on one volume
align_volumes(coef_v[:1], coef_t, grid)
align_volumes(coef_v[:1], coef_t, grid, plan=precompute(1)[1])

t_full, full = best_of(lambda: align_volumes(coef_v, coef_t, grid), repeats)
times = {}
for H in ranks:
    t_pre, (basis, plan) = best_of(lambda: precompute(H), repeats)
    t_comp, _ = best_of(lambda: align_volumes(coef_v, coef_t, grid, plan=plan), repeats)
    times[H] = (t_pre, t_comp, plan.n_beta)
metrics = rank_sweep(coef_v, coef_t, grid, [hc_hd(H) for H in ranks], basis=basis)
rows = []
for H, m in zip(ranks, metrics):
    t_pre, t_comp, n_beta = times[H]
    H_C, H_D = hc_hd(H)
    rows.append(dict(dataset=cfg["name"], source=cfg["source"], method="radial_degree_svd",
                     H=H, H_C=H_C, H_D=H_D, R=R, L=L, n_beta=n_beta, K=grid.K,
                     n_volumes=n, n_pairs=int(m["n_pairs"]), frobenius_error=m["rel_frobenius"],
                     correlation=m["correlation"], backward_f=m["f"], time_full_s=t_full,
                     time_precompute_s=t_pre, time_compressed_s=t_comp,
                     speedup=t_full / (t_pre + t_comp), ideal_speedup=grid.K / H,
                     **thread_counts()))
    log.info("H=%2d (H_C=%d, H_D=%d): frob %.3e corr %.5f f %.5f | full %.3g s, rank-H %.3g s "
             "+ %.3g s pre", H, H_C, H_D, m["rel_frobenius"], m["correlation"], m["f"],
             t_full, t_comp, t_pre)
# recovered rotations against the ones the test volumes were made with (a sanity check)
err = np.degrees(np.arccos(np.clip((np.einsum("nij,nji->n", full.matrix, d["rotations"])
                                    - 1) / 2, -1, 1)))
log.info("full path: rotation error against the truth, median %.2f°, max %.2f°",
         float(np.median(err)), float(err.max()))
write_table(snakemake.output.table, rows, "volume_alignment")
save_npz(snakemake.output.spectra, dataset=cfg["description"], K=grid.K, C_eigenvalues=basis.C_values,
         D_eigenvalues=basis.D_values, k=grid.k)
log.info("wrote %s and %s", snakemake.output.table, snakemake.output.spectra)
