"""align-particles' poses scored against the true poses (paper §5; the method comparison):
the particles simulated with shifts, searched over the shift disc without their origins, at
the full rank and at rank ``shifts.pose_rank`` for every radial basis (same pipeline as
``radsvd align-particles``: radsvd.images.particles).  Errors: geodesic angle between the
found and the true pose (degrees) and the distance between the found and the true origin
(pixels); ``grid_spacing_deg`` = 360/(3 + round(K)), the shell rule's equator spacing.

Output TSV: method, H, K, n_images, n_templates, median_angle_error_deg,
p90_angle_error_deg, frac_within_spacing, median_shift_error_px, max_shift_error_px,
grid_spacing_deg.
"""

import numpy as np
import pandas as pd

from radsvd._files import atomic_path

from radsvd.data.star import read_star
from radsvd.data.poses import angular_errors
from radsvd.images.particles import prepare_particles, search_poses
from wf_common import setup

log = setup(snakemake)
sh = snakemake.params.shifts
truth = read_star(snakemake.input.star)
prob = prepare_particles(snakemake.input.star, snakemake.input.map, K=float(sh["K"]),
                         ignore_origins=True, ctf_tolerance=float(snakemake.params.ctf_tolerance))
p = prob.pixel_size
spacing = 360.0 / (3 + round(prob.grid.K))
H = min(int(sh["pose_rank"]), prob.grid.R)
rows = []
for method, rank in [("full", None)] + [(m, H) for m in snakemake.params.methods]:
    res = search_poses(prob, rank=rank, method="radial-svd" if rank is None else method,
                       max_shift_A=float(sh["search_max_shift"]) * p,
                       shift_step_A=float(sh["shift_step"]) * p, refine=True)
    e = angular_errors(res.poses.rot, res.poses.tilt, res.poses.psi, truth.rot, truth.tilt,
                       truth.psi)
    d = np.hypot(res.poses.shift_x - truth.shift_x, res.poses.shift_y - truth.shift_y) / p
    rows.append(dict(method=method, H=prob.grid.R if rank is None else rank, K=prob.grid.K,
                     n_images=len(e), n_templates=len(prob.rotations),
                     median_angle_error_deg=float(np.median(e)),
                     p90_angle_error_deg=float(np.percentile(e, 90)),
                     frac_within_spacing=float(np.mean(e <= spacing)),
                     median_shift_error_px=float(np.median(d)), max_shift_error_px=float(d.max()),
                     grid_spacing_deg=spacing))
    log.info("%-20s H=%2s  median angle %.2f°  within %.1f°: %.2f  median shift %.3f px",
             method, rows[-1]["H"], rows[-1]["median_angle_error_deg"], spacing,
             rows[-1]["frac_within_spacing"], rows[-1]["median_shift_error_px"])
with atomic_path(snakemake.output[0], suffix=".tsv") as tmp:
    pd.DataFrame(rows).to_csv(tmp, sep="\t", index=False, float_format="%.10g")
log.info("wrote %s", snakemake.output[0])
