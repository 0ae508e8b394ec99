"""One shard of the image alignment for one compression method (paper §3.5, Fig 8).

For every CTF group present in the shard, the targets are the templates times the group's
ring CTF.  In one job, on the same images and targets:
  full     best target and angle of every image with all R rings (ground truth, timed);
  rank H   the same with the method's basis at each H of the sweep; the basis construction
           (kernel + eigensolve) counts as precomputation.  ``images.kernel``: "pooled" (the
           reference code: one kernel Σ_c n_c diag(CTF_c) C diag(CTF_c) / Σ_c n_c over the CTF
           groups, eq. 85) or "per_group" (the paper's text: one kernel per CTF group);
  metrics  full and rank-H landscapes tile by tile (radsvd.images.align.landscape_tiles),
           reduced to mergeable statistics (Frobenius error, correlation, backward error f).
Timings: wall-clock after a warm-up call (numba compile excluded), best of
``images.repeats`` runs of each call.

Output npz: ranks (nH,), stats (nH, n_fields), time_full, time_precompute (nH,),
time_compressed (nH,), n_images, n_targets, n_ctf_groups, best_target_full, angle_full,
image_index (the shard's images), R, Q, K and the thread counts.
"""

import numpy as np

from radsvd import PolarGrid
from radsvd.images.align import align_images, landscape_tiles
from radsvd.images import methods
from radsvd.metrics import LandscapeMetrics
from wf_common import Stopwatch, best_of, rank_sweep, save_npz, setup, thread_counts

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


pooled = cfg["kernel"] == "pooled"
counts = imgs["group_counts"].astype(float)


def make_basis(rings, weights):
    """The method's radial basis for targets = templates × ring CTF, rings (m, R).  The
    config and the file names spell methods with underscores; the library's names are
    hyphenated (radsvd.images.methods)."""
    return methods.make_basis(method.replace("_", "-"), grid, templates, ctf_rings=rings,
                              group_sizes=weights)


# warm-up: compile every kernel on a tiny problem before anything is timed
fb_all = imgs["fb"]
warm_targets = templates[:2] * group_rings[0][None, :, None]
warm_basis = make_basis(group_rings[:1], None)
align_images(fb_all[:1], warm_targets, grid)
align_images(fb_all[:1], warm_targets, grid, basis=warm_basis, rank=1)

stats = {H: LandscapeMetrics() for H in ranks}
t_full = Stopwatch()
t_pre = {H: Stopwatch() for H in ranks}
t_comp = {H: Stopwatch() for H in ranks}
best_target = np.empty(len(index), dtype=np.int64)
best_angle = np.empty(len(index))
groups = np.unique(labels)
repeats = int(cfg["repeats"])
if pooled:
    t, pooled_basis = best_of(lambda: make_basis(group_rings, counts), repeats)
    for H in ranks:
        t_pre[H].total += t
for gi, g in enumerate(groups):
    sel = np.flatnonzero(labels == g)
    fa = fb_all[index[sel]]
    targets = templates * group_rings[g][None, :, None]
    t, full = best_of(lambda: align_images(fa, targets, grid), repeats)
    t_full.total += t
    best_target[sel], best_angle[sel] = full.best_target, full.angle
    if pooled:
        basis = pooled_basis
    else:
        t, basis = best_of(lambda: make_basis(group_rings[g][None, :], None), repeats)
        for H in ranks:
            t_pre[H].total += t
    for H in ranks:
        t_comp[H].total += best_of(lambda: align_images(fa, targets, grid, basis=basis,
                                                          rank=H), repeats)[0]
    # metrics: the full landscape in float64 next to the rank-H ones as timed above
    bases = [(None, None, "double")] + [(basis, H) for H in ranks]
    for a0, a1, b0, b1, Xs in landscape_tiles(fa, targets, grid, bases=bases):
        for H, XH in zip(ranks, Xs[1:]):
            stats[H].update(Xs[0], XH)
    log.info("CTF group %d (%d/%d): %d images done; full %.3g s so far", int(g), gi + 1,
             len(groups), len(sel), t_full.total)

for H in ranks:
    s = stats[H].result()
    log.info("H=%2d  frob %.3e  corr %.5f  f %.5f  full %.3g s  rank-H %.3g s (+%.3g s pre)",
             H, s["rel_frobenius"], s["correlation"], s["f"], t_full.total,
             t_comp[H].total, t_pre[H].total)
save_npz(snakemake.output[0], ranks=np.array(ranks),
         stats=np.stack([stats[H].state() for H in ranks]), time_full=t_full.total,
         time_precompute=np.array([t_pre[H].total for H in ranks]),
         time_compressed=np.array([t_comp[H].total for H in ranks]),
         n_images=len(index), n_targets=len(templates), n_ctf_groups_total=len(group_rings),
         best_target_full=best_target, angle_full=best_angle, image_index=index,
         R=grid.R, Q=grid.Q, K=grid.K, **thread_counts())
log.info("wrote %s", snakemake.output[0])
