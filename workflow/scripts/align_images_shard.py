"""One shard of the image alignment for one compression method (paper §3.5, Fig 8).

For every CTF group present in the shard, the targets are the templates times the group's
ring CTF.  In one job, on the same images and targets:
  full     best target and angle of every image with all R rings (ground truth, timed);
  rank H   the same with the method's basis (built per CTF group, eq. 85) at each H of the
           sweep; the basis construction (kernel + eigensolve) counts as precomputation;
  metrics  full and rank-H landscapes tile by tile (radsvd.images.align.landscape_tiles),
           reduced to mergeable statistics (Frobenius error, correlation, backward error f).
Timings are wall-clock after a warm-up call (numba compile excluded).

Output npz: ranks (nH,), stats (nH, n_fields), time_full, time_precompute (nH,),
time_compressed (nH,), n_images, n_targets, n_ctf_groups, best_target_full, angle_full,
image_index (the shard's images), R, Q, K and the thread counts.
"""

import numpy as np

from radsvd import PolarGrid
from radsvd.images.align import align_images, landscape_tiles
from radsvd.images.basis import energy_pca, frequency_marching, radial_svd
from stream_metrics import FIELDS, MetricStats
from wf_common import Stopwatch, rank_sweep, save_npz, setup, thread_counts

log = setup(snakemake)
cfg = snakemake.params.cfg["images"]
method = snakemake.wildcards.method
shard, n_shards = int(snakemake.wildcards.shard), int(snakemake.params.n_shards)

imgs = np.load(snakemake.input.images)
tpl = np.load(snakemake.input.templates)
grid = PolarGrid(K=float(imgs["K"]))
if (int(tpl["R"]), int(tpl["Q"])) != (grid.R, grid.Q):
    raise ValueError("images and templates were made on different polar grids")
index = np.array_split(np.arange(imgs["fb"].shape[0]), n_shards)[shard]
labels = imgs["labels"][index]
group_rings = imgs["group_rings"]
templates = tpl["fb"]
ranks = rank_sweep(cfg["ranks"], grid.R)
log.info("shard %d/%d: %d images, %d templates, method %s, ranks %s", shard + 1, n_shards,
         len(index), len(templates), method, ranks)


def make_basis(targets, ring):
    if method == "radial_svd":
        return radial_svd(templates, grid, ctf=ring[None, :])
    if method == "frequency_marching":
        return frequency_marching(grid)
    if method == "energy_pca":
        return energy_pca(targets, grid)
    raise ValueError(f"unknown compression method {method!r}")


# warm-up: compile every kernel on a tiny problem before anything is timed
warm_targets = templates[:2] * group_rings[0][None, :, None]
warm_basis = make_basis(warm_targets, group_rings[0])
align_images(imgs["fb"][:1], warm_targets, grid)
align_images(imgs["fb"][:1], warm_targets, grid, basis=warm_basis, rank=1)

stats = {H: MetricStats() for H in ranks}
t_full = Stopwatch()
t_pre = {H: Stopwatch() for H in ranks}
t_comp = {H: Stopwatch() for H in ranks}
best_target = np.empty(len(index), dtype=np.int64)
best_angle = np.empty(len(index))
groups = np.unique(labels)
for gi, g in enumerate(groups):
    sel = np.flatnonzero(labels == g)
    fa = imgs["fb"][index[sel]]
    targets = templates * group_rings[g][None, :, None]
    with t_full:
        full = align_images(fa, targets, grid)
    best_target[sel], best_angle[sel] = full.best_target, full.angle
    sw = Stopwatch()
    with sw:
        basis = make_basis(targets, group_rings[g])
    for H in ranks:
        t_pre[H].total += sw.total
        with t_comp[H]:
            align_images(fa, targets, grid, basis=basis, rank=H)
    bases = [(None, None)] + [(basis, H) for H in ranks]
    for a0, a1, b0, b1, Xs in landscape_tiles(fa, targets, grid, bases=bases):
        for H, XH in zip(ranks, Xs[1:]):
            stats[H].add(Xs[0], XH)
    log.info("CTF group %d (%d/%d): %d images done; full %.3g s so far", int(g), gi + 1,
             len(groups), len(sel), t_full.total)

for H in ranks:
    s = stats[H]
    log.info("H=%2d  frob %.3e  corr %.5f  f %.5f  full %.3g s  rank-H %.3g s (+%.3g s pre)",
             H, s.frobenius_error, s.correlation, s.backward_f, t_full.total,
             t_comp[H].total, t_pre[H].total)
save_npz(snakemake.output[0], ranks=np.array(ranks), fields=np.array(FIELDS),
         stats=np.stack([stats[H].as_array() for H in ranks]), time_full=t_full.total,
         time_precompute=np.array([t_pre[H].total for H in ranks]),
         time_compressed=np.array([t_comp[H].total for H in ranks]),
         n_images=len(index), n_targets=len(templates), n_ctf_groups_total=len(group_rings),
         best_target_full=best_target, angle_full=best_angle, image_index=index,
         R=grid.R, Q=grid.Q, K=grid.K, **thread_counts())
log.info("wrote %s", snakemake.output[0])
