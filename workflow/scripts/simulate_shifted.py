"""Particles of the main synthetic dataset simulated with random shifts (paper §5): uniform
in a disc of ``shifts.max_shift`` pixels, true poses and origins in the RELION 3.1 STAR, the
map beside them.  Same molecule, microscope, box, pixel size and SNR as the dataset; a seed of
its own."""

from pathlib import Path

from radsvd.data.molecules import synthetic_molecule
from radsvd.data.simulate import simulate_particles, write_particles
from wf_common import microscope, setup

log = setup(snakemake)
syn, sh = snakemake.params.synthetic, snakemake.params.shifts
n, N, pixel = int(sh["n_images"]), int(snakemake.params.box), float(syn["pixel_size"])
molecule = synthetic_molecule(syn["molecule"])
scope = microscope(syn, n)
images, table = simulate_particles(molecule, n=n, N=N, pixel_size=pixel,
                                   snr=float(sh.get("snr", syn["snr"])), seed=int(snakemake.params.seed) + 1,
                                   max_shift=float(sh["max_shift"]) * pixel, microscope=scope,
                                   volume_box=N)
out = Path(snakemake.output.star).parent
write_particles(out, images, table, name="particles", volume=molecule.volume(N))
log.info("%d particles of %s with shifts up to %g px -> %s", n, syn["molecule"],
         float(sh["max_shift"]), out)
