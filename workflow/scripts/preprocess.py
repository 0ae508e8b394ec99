"""The reference preprocessing for synthetic and real particles alike (radsvd.data.preprocess:
edge artefacts → centre → Fourier-crop to the configured box → normalise → optional contrast
inversion), and the reference map brought to the same box and pixel size.
"""

import json
from pathlib import Path

import numpy as np

from radsvd.data.fetch import load_fetched
from radsvd.data.mrc import read_mrc, write_mrc
from radsvd.data.stacks import check_map_matches_particles, load_particles
from radsvd.data.preprocess import downsample_volume, preprocess
from radsvd.data.simulate import write_particles
from wf_common import setup

log = setup(snakemake)
cfg = snakemake.params.cfg
box = int(cfg["images"]["box"])
n_images = int(cfg["images"]["n_images"])
if cfg["source"] == "real":
    # the fetch record fills in what the STAR file lacks (CTF values, pixel size)
    record = json.loads(Path(snakemake.input.record).read_text())
    map_path = record["files"]["map"]["path"]
    invert = bool(cfg["real"].get("invert_contrast", record.get("contrast_inverted", False)))
    images, table = load_fetched(record, n=n_images, dtype=np.float64)
    for key, value in (record.get("ctf_supplied") or {}).items():
        log.info("%s = %g supplied by the manifest (not in the STAR file)", key, value)
else:
    map_path, invert = snakemake.input.reference, False
    images, table = load_particles(snakemake.input.star, n=n_images, dtype=np.float64)
N0, p0 = images.shape[-1], float(table["pixel_size"].iloc[0])
if box > N0:
    raise ValueError(f"images.box = {box} exceeds the particles' box {N0}: Fourier cropping "
                     "only shrinks; lower images.box")
images, table = preprocess(images, table, box=box, invert=invert)
log.info("%d particles: %d px at %.4g Å -> %d px at %.4g Å%s", len(table), N0, p0, box,
         float(table["pixel_size"].iloc[0]), ", contrast inverted" if invert else "")

volume, voxel = read_mrc(map_path)
voxel = voxel if voxel > 0 else p0 * N0 / volume.shape[0]
check_map_matches_particles(volume.shape, voxel, N0, p0)
if volume.shape[0] > box:
    volume = downsample_volume(volume, box)
elif volume.shape[0] < box:
    raise ValueError(f"the reference map has {volume.shape[0]} voxels per side, fewer than "
                     f"images.box = {box}; lower images.box")
write_particles(Path(snakemake.output.stack).parent, images.astype(np.float32), table,
                name=Path(snakemake.output.stack).stem)
write_mrc(snakemake.output.reference, volume.astype(np.float32),
          float(table["pixel_size"].iloc[0]))
log.info("wrote %s, %s, %s", snakemake.output.stack, snakemake.output.star,
         snakemake.output.reference)
