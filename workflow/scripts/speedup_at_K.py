"""Speedup of the radial-SVD over the full calculation at one K (reference code's extra
experiment, fig13): the first n_images particles against the shell-rule templates at K
(505 / 993 / 1639 / 2453 / 3427 at K = 32 / 48 / 64 / 80 / 96) per CTF group, best of
``repeats`` wall-clock timings, precomputation (kernel + eigensolve) included.  The spread of
the repeats: repeat i of every timed call forms run i; speedup_min/max are the extremes of
full_i / (precompute_i + compressed_i) over the runs, time_*_max_s the slowest runs."""

import numpy as np

from radsvd import PolarGrid
from radsvd.data.mrc import read_mrc
from radsvd.data.stacks import load_particles
from radsvd.data.templates import project_fourier
from radsvd.data.viewing import shell_directions
from radsvd.images.align import align_images
from radsvd.images.methods import ctf_groups, group_targets, make_basis
from radsvd.images.polar import images_to_fb, to_fb
from wf_common import Stopwatch, setup, thread_counts, write_table

log = setup(snakemake)
cfg = snakemake.params.cfg
sp = snakemake.params.speedup
K = float(snakemake.wildcards.K)
grid = PolarGrid(K=K)
images, table = load_particles(snakemake.input.star, n=int(sp["n_images"]), dtype=np.float64)
N = images.shape[-1]
volume, _ = read_mrc(snakemake.input.reference)
fb = images_to_fb(images, grid)
groups = ctf_groups(table, grid, N, tolerance=float(cfg["images"]["ctf_tolerance"]))
templates = to_fb(project_fourier(volume, shell_directions(K).rotations(), grid))
ranks = sorted({int(h) for h in sp["H"] if h <= grid.R})
log.info("K=%g: R=%d Q=%d, %d images in %d CTF group(s), %d templates, ranks %s", K, grid.R,
         grid.Q, len(fb), groups.n_groups, len(templates), ranks)

# warm-up (compilation is not part of the timings)
align_images(fb[:1], templates[:2], grid)
align_images(fb[:1], templates[:2], grid, basis=make_basis("radial-svd", grid, templates[:2]),
             rank=1)


def timed(fn, runs):
    """Best of ``repeats`` wall-clock times of fn(); adds the times to ``runs`` (per repeat)."""
    times = []
    for _ in range(int(sp["repeats"])):
        sw = Stopwatch()
        with sw:
            fn()
        times.append(sw.total)
    runs += np.array(times)
    return min(times)


targets = [group_targets(templates, groups.rings[g]) for g in range(groups.n_groups)]


def full_run():
    for g in range(groups.n_groups):
        align_images(fb[groups.members(g)], targets[g], grid)


full_runs = np.zeros(int(sp["repeats"]))
t_full = timed(full_run, full_runs)
pooled = cfg["images"]["kernel"] == "pooled"
rows = []
for H in ranks:
    t_pre = t_comp = 0.0
    pre_runs, comp_runs = np.zeros(int(sp["repeats"])), np.zeros(int(sp["repeats"]))
    bases = {}
    if pooled:   # one kernel over the CTF groups, weighted by their sizes (eq. 85)
        t_pre += timed(lambda: bases.__setitem__("all", make_basis(
            "radial-svd", grid, templates, ctf_rings=groups.rings,
            group_sizes=groups.counts)), pre_runs)
    for g in range(groups.n_groups):
        key = "all" if pooled else g
        if not pooled:
            t_pre += timed(lambda: bases.__setitem__(g, make_basis(
                "radial-svd", grid, templates, ctf_rings=groups.rings[g][None, :])), pre_runs)
        t_comp += timed(lambda: align_images(fb[groups.members(g)], targets[g], grid,
                                             basis=bases[key], rank=H), comp_runs)
    rows.append(dict(dataset=cfg["name"], method="radial_svd", K=K, R=grid.R, Q=grid.Q, H=H,
                     n_images=len(fb), n_targets=len(templates),
                     n_pairs=len(fb) * len(templates), time_full_s=t_full,
                     time_precompute_s=t_pre, time_compressed_s=t_comp,
                     speedup=t_full / (t_pre + t_comp), ideal_speedup=grid.R / H,
                     speedup_min=float(np.min(full_runs / (pre_runs + comp_runs))),
                     speedup_max=float(np.max(full_runs / (pre_runs + comp_runs))),
                     time_full_max_s=float(full_runs.max()),
                     time_compressed_max_s=float(comp_runs.max()),
                     **thread_counts()))
    log.info("K=%g H=%d: full %.4g s, rank-H %.4g s + %.4g s pre -> speedup %.2f (ideal %.2f)",
             K, H, t_full, t_comp, t_pre, rows[-1]["speedup"], grid.R / H)
write_table(snakemake.output[0], rows, "speedup_vs_K")
log.info("wrote %s", snakemake.output[0])
