"""radsvd: radial- and degree-SVD for fast rigid rotational alignment (Rangan 2022).

The public API: the most used entry points are re-exported here; the full API of each side
lives in its subpackage, with the same step names in 2D and 3D (kernel, basis, compress,
landscape, best):

- :mod:`radsvd.images`  – polar Fourier images, radial bases, the 2D alignment engine;
- :mod:`radsvd.volumes` – spherical-harmonic shells, Wigner-d, SO(3) landscapes, radial- and
  degree-SVD;
- :mod:`radsvd.metrics` – streaming Frobenius error, correlation and backward-error fraction;
- :mod:`radsvd.data`    – synthetic molecules and particles, CTF, templates, MRC/STAR I/O,
  preprocessing, manifest-driven fetching.

Names and subpackages load on first use (``import radsvd`` imports no numba, scipy, finufft
or pandas: the ``radsvd`` command starts fast).
"""

__version__ = "0.1.0"

import os as _os

# OpenBLAS and OpenMP worker threads spin after every call and then collide with numba's
# thread pool on small machines (the full volume path ran 3-4x slower); a short timeout and
# the passive wait policy make them sleep.  Effective when radsvd loads before numpy (the
# `radsvd` command, the workflow's jobs); a user's own setting wins.
_os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from radsvd._lazy import exports as _exports

_EXPORTS = {
    "radsvd._jit": ("set_threads", "threads"),
    "radsvd._validate": ("InputError",),
    "radsvd.grids": ("PolarGrid", "radial_quadrature"),
    "radsvd.images": ("AlignResult", "ImagePlan", "RadialBasis", "align_images", "energy_pca",
                      "frequency_marching", "images_to_fb", "polar_to_images", "radial_svd",
                      "to_fb", "to_polar"),
    "radsvd.metrics": ("LandscapeMetrics",),
    "radsvd.volumes": ("ShellGrid", "VolumeAlignResult", "VolumeBasis", "align_volume_maps",
                       "align_volumes", "to_shells", "volume_svd", "wigner_d"),
    "radsvd.data": ("CTFParams", "GaussianMolecule", "cluster_ctf", "load_particles",
                    "make_templates", "read_mrc", "read_star", "shell_directions",
                    "simulate_particles", "synthetic_molecule", "write_mrc"),
    "radsvd.data.fetch": ("fetch_dataset",),
}
__getattr__, __dir__ = _exports(__name__, _EXPORTS, globals())

__all__ = [
    # ground
    "InputError", "PolarGrid", "ShellGrid", "radial_quadrature", "set_threads", "threads",
    # images (2D)
    "to_polar", "to_fb", "images_to_fb", "polar_to_images", "RadialBasis", "radial_svd",
    "frequency_marching", "energy_pca", "ImagePlan", "align_images", "AlignResult",
    # volumes (3D)
    "to_shells", "wigner_d", "VolumeBasis", "volume_svd", "align_volumes", "align_volume_maps",
    "VolumeAlignResult",
    # metrics
    "LandscapeMetrics",
    # data
    "GaussianMolecule", "synthetic_molecule", "simulate_particles", "CTFParams", "cluster_ctf",
    "shell_directions", "make_templates", "read_mrc", "write_mrc", "read_star",
    "load_particles", "fetch_dataset",
]
