"""Synthetic stand-in of a dataset: a preset pseudo-molecule of the data layer, its map on the
image box, and simulated particles (uniform random poses, one CTF per micrograph, white noise
at the configured SNR), written as an MRC stack + RELION 3.1 STAR file with the true poses.
"""

from pathlib import Path

from radsvd.data.mrc import write_mrc
from radsvd.data.molecules import synthetic_molecule
from radsvd.data.simulate import simulate_particles, write_particles
from wf_common import microscope, setup

log = setup(snakemake)
cfg = snakemake.params.cfg
syn, img = cfg["synthetic"], cfg["images"]
n, N, pixel = int(img["n_images"]), int(img["box"]), float(syn["pixel_size"])
molecule = synthetic_molecule(syn["molecule"])
scope = microscope(syn, n)
log.info("simulating %d particles of %s: box %d, %.3g Å/px, SNR %g, %d micrograph(s)", n,
         syn["molecule"], N, pixel, float(syn["snr"]), int(syn["n_micrographs"]))
images, table = simulate_particles(molecule, n=n, N=N, pixel_size=pixel, snr=float(syn["snr"]),
                                   seed=cfg["seed"], max_shift=float(syn["max_shift"]),
                                   microscope=scope, volume_box=N)
out = Path(snakemake.output.stack).parent
write_particles(out, images, table, name=Path(snakemake.output.stack).stem)
write_mrc(snakemake.output.reference, molecule.volume(N).astype("float32"), pixel)
log.info("wrote %s, %s, %s", snakemake.output.stack, snakemake.output.star,
         snakemake.output.reference)
