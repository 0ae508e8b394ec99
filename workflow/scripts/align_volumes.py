"""Volume alignment over H (paper §4.10, Figs 10–11): the test volumes against the reference.

In one job, on the same volumes: the full SO(3) landscapes (eq. 104) and the compressed ones
(eq. 117) at H_C = min(H, R), H_D = min(H, L+1) for each H of the sweep, both timed after a
warm-up (precomputation = basis (kernels C, D and their eigenvectors) + plan (Wigner-d or
[vᵀd] tables)); then the landscapes again, block by block, for the metrics over the whole
(α, β, γ) grid.  Writes the tidy table and the spectra of C and D.
"""

import time

import numpy as np

from radsvd.volumes.basis import volume_svd
from radsvd.volumes.landscape import prepare
from radsvd.volumes.shells import ShellGrid, to_shells
from stream_metrics import MetricStats
from wf_common import Stopwatch, rank_sweep, save_npz, setup, thread_counts, write_table

log = setup(snakemake)
cfg = snakemake.params.cfg
vcfg = cfg["volumes"]
d = np.load(snakemake.input[0])
grid = ShellGrid(K=float(vcfg["K"]))
coef_t = to_shells(d["reference"], grid)
coef_v = to_shells(d["volumes"], grid)
n = coef_v.shape[0]
R, L = grid.R, grid.L
full_rank = max(R, L + 1)
ranks = rank_sweep(vcfg["ranks"], full_rank)
BLOCK = 8
log.info("%d volumes of %d³, K=%g: R=%d L=%d M=%d, ranks %s", n, d["volumes"].shape[-1],
         grid.K, R, L, grid.M, ranks)


def hc_hd(H):
    return min(H, R), min(H, L + 1)


def run(plan):
    for a0 in range(0, n, BLOCK):
        yield a0, plan(coef_v[a0:a0 + BLOCK])


# warm-up: compile the kernels of both paths on one volume
basis = volume_svd(coef_t, grid)
prepare(grid, coef_t)(coef_v[:1])
prepare(grid, coef_t, basis, ranks=(1, 1))(coef_v[:1])

t_full = Stopwatch()
with t_full:
    plan_full = prepare(grid, coef_t)
    best_full = [X.reshape(X.shape[0], -1).argmax(axis=1) for _, X in run(plan_full)]
rows, stats = [], {}
for H in ranks:
    t0 = time.perf_counter()
    basis = volume_svd(coef_t, grid)
    plan = prepare(grid, coef_t, basis, ranks=hc_hd(H))
    t_pre = time.perf_counter() - t0
    t_comp = Stopwatch()
    with t_comp:
        for _, X in run(plan):
            X.reshape(X.shape[0], -1).argmax(axis=1)
    stats[H] = MetricStats()
    for (a0, X), (_, XH) in zip(run(plan_full), run(plan)):
        stats[H].add(X.reshape(X.shape[0], -1), XH.reshape(XH.shape[0], -1))
    s = stats[H]
    H_C, H_D = hc_hd(H)
    rows.append(dict(dataset=cfg["name"], source=cfg["source"], method="radial_degree_svd",
                     H=H, H_C=H_C, H_D=H_D, R=R, L=L, n_beta=plan.n_beta, K=grid.K,
                     n_volumes=n, n_pairs=n, frobenius_error=s.frobenius_error,
                     correlation=s.correlation, backward_f=s.backward_f,
                     time_full_s=t_full.total, time_precompute_s=t_pre,
                     time_compressed_s=t_comp.total, speedup=t_full.total / (t_pre + t_comp.total),
                     ideal_speedup=grid.K / H, **thread_counts()))
    log.info("H=%2d (H_C=%d, H_D=%d): frob %.3e corr %.5f f %.5f | full %.3g s, rank-H %.3g s "
             "+ %.3g s pre", H, H_C, H_D, s.frobenius_error, s.correlation, s.backward_f,
             t_full.total, t_comp.total, t_pre)
write_table(snakemake.output.table, rows, "volume_alignment")
save_npz(snakemake.output.spectra, dataset=cfg["name"], K=grid.K, C_eigenvalues=basis.C_values,
         D_eigenvalues=basis.D_values, k=grid.k)
log.info("wrote %s and %s", snakemake.output.table, snakemake.output.spectra)
