"""Reference map → templates on the polar grid: Fourier slices of the map at the viewing
directions (the reference's Gauss–Legendre shell rule at K, or the particles' poses), as
Fourier–Bessel coefficients.  The CTF is applied per CTF group in the alignment rule.

Output npz: fb (n_t, R, Q//2+1) complex128; rotations (n_t, 3, 3); K, R, Q, box.
"""

import numpy as np

from radsvd import PolarGrid
from radsvd.data.mrc import read_mrc
from radsvd.data.templates import project_fourier
from radsvd.data.viewing import directions_from_star, shell_directions
from radsvd.images.polar import to_fb
from wf_common import save_npz, setup

log = setup(snakemake)
cfg = snakemake.params.cfg["images"]
volume, voxel = read_mrc(snakemake.input.reference)
grid = PolarGrid(K=float(cfg["K"]))
rule_ = cfg["viewing_directions"]
if rule_ == "shell":
    rotations = shell_directions(grid.K).rotations()
elif rule_ == "star":
    rotations = directions_from_star(snakemake.input.star, n=int(cfg["n_images"]),
                                     with_psi=False)
else:
    from radsvd.data.rotations import random_rotations

    rotations = random_rotations(int(rule_), rng=np.random.default_rng(
        snakemake.params.cfg["seed"]))
log.info("%d viewing directions (%s) of a %d³ map, K=%g R=%d Q=%d", len(rotations), rule_,
         volume.shape[0], grid.K, grid.R, grid.Q)
fb = to_fb(project_fourier(volume, rotations, grid))
save_npz(snakemake.output[0], fb=fb, rotations=rotations, K=grid.K, R=grid.R, Q=grid.Q,
         box=volume.shape[0], voxel_size=voxel)
log.info("wrote %s", snakemake.output[0])
