"""Small volumes for the isosurface figures (Figs 9, 12): the reference and the first few
test volumes, Fourier-cropped to the figure box (radsvd.data.preprocess.downsample_volume)."""

import numpy as np

from radsvd.data.preprocess import downsample_volume
from wf_common import save_npz, setup

log = setup(snakemake)
fig = snakemake.params.figure
d = np.load(snakemake.input[0])
box = min(int(fig["box"]), d["reference"].shape[-1])


def small(v):
    return downsample_volume(v, box) if v.shape[-1] > box else np.asarray(v, np.float64)


n_ex = min(int(fig["n_examples"]), d["volumes"].shape[0])
ids = np.arange(n_ex)
save_npz(snakemake.output[0], dataset=snakemake.params.cfg["description"],
         reference=small(d["reference"]), examples=np.stack([small(d["volumes"][i]) for i in ids]),
         example_ids=ids, percentiles=np.asarray(fig["percentiles"], float))
log.info("wrote %s (%d³, %d examples)", snakemake.output[0], box, n_ex)
