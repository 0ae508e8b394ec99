"""Gather the shards of every method into the dataset's tidy image-alignment table: one row
per method × H; statistics merged across shards, times summed over shards."""

import numpy as np

from radsvd.metrics import LandscapeMetrics
from wf_common import setup, write_table

log = setup(snakemake)
cfg = snakemake.params.cfg
by_method = {}
for path in snakemake.input:
    d = np.load(path)
    method = path.split("/")[-2]
    by_method.setdefault(method, []).append(d)

rows = []
for method, shards in by_method.items():
    ranks = shards[0]["ranks"]
    if any(not np.array_equal(s["ranks"], ranks) for s in shards):
        raise ValueError(f"{method}: shards disagree on the rank sweep")
    n_images = int(sum(int(s["n_images"]) for s in shards))
    n_targets = int(shards[0]["n_targets"])
    t_full = float(sum(float(s["time_full"]) for s in shards))
    for i, H in enumerate(ranks):
        acc = LandscapeMetrics()
        for s in shards:
            acc.merge(LandscapeMetrics.from_state(s["stats"][i]))
        st = acc.result()
        t_pre = float(sum(float(s["time_precompute"][i]) for s in shards))
        t_comp = float(sum(float(s["time_compressed"][i]) for s in shards))
        R = int(shards[0]["R"])
        rows.append(dict(
            dataset=cfg["name"], source=cfg["source"], method=method, H=int(H), R=R,
            Q=int(shards[0]["Q"]), K=float(shards[0]["K"]), n_images=n_images,
            n_targets=n_targets, n_ctf_groups=int(shards[0]["n_ctf_groups_total"]),
            n_pairs=int(st["n_pairs"]), n_shards=len(shards),
            frobenius_error=st["rel_frobenius"], correlation=st["correlation"],
            backward_f=st["f"], time_full_s=t_full, time_precompute_s=t_pre,
            time_compressed_s=t_comp, speedup=t_full / (t_pre + t_comp),
            ideal_speedup=R / float(H),
            numba_threads=int(shards[0]["numba_threads"]),
            blas_threads=int(shards[0]["blas_threads"]),
            fft_workers=int(shards[0]["fft_workers"])))
    log.info("%s: %d shards, %d images, ranks %s", method, len(shards), n_images,
             ranks.tolist())
write_table(snakemake.output[0], rows, "image_alignment")
log.info("wrote %s (%d rows)", snakemake.output[0], len(rows))
