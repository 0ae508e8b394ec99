"""The data layer: synthetic molecules and particles, CTF, templates, real data I/O, fetching.

Modules (conventions in each module's docstring and in docs/design.md):
- :mod:`~radsvd.data.rotations` – RELION ZYZ Euler angles ↔ poses R (template of pose R =
  projection along z of the map rotated by R^T; R e_z = viewing direction), Haar-random poses.
- :mod:`~radsvd.data.molecules` – :class:`GaussianMolecule` (closed-form volume, Fourier
  transform, projections) and :func:`synthetic_molecule` presets standing in for the paper's
  datasets.
- :mod:`~radsvd.data.ctf` – :class:`CTFParams` (RELION convention and sign), CTF on the polar
  grid (full and ring-averaged), :func:`cluster_ctf` (greedy grouping).
- :mod:`~radsvd.data.viewing` – the reference's Gauss–Legendre shell rule
  (:func:`shell_directions`: 993 directions at K = 48) and directions from STAR files.
- :mod:`~radsvd.data.templates` – :func:`project_fourier` (3D NUFFT central slices on the
  polar grid), :func:`make_templates`, :func:`apply_ctf`.
- :mod:`~radsvd.data.simulate` – :func:`simulate_particles`, :func:`write_particles`.
- :mod:`~radsvd.data.mrc` – MRC maps and stacks (:func:`read_mrc`, :func:`read_stack`,
  :func:`write_mrc`): one header parser and reading policy; atomic writes.
- :mod:`~radsvd.data.star` – STAR files (:func:`read_star`, :func:`write_star`): one table of
  RELION labels, one normalised particle table for RELION 1 / 3.0 / 3.1.
- :mod:`~radsvd.data.stacks` – the particle images a STAR table names
  (:func:`load_particles`), write-id checks.
- :mod:`~radsvd.data.preprocess` – normalise, edge artefacts, centre, Fourier-crop, invert.
- :mod:`~radsvd.data.fetch` – manifest-driven, verified, resumable downloads
  (:func:`fetch_dataset`); ``data_manifest.yaml`` at the repository top.

Names load with their module on first use (see :mod:`radsvd._lazy`).
"""

from radsvd._lazy import exports as _exports

_EXPORTS = {
    "radsvd.data.ctf": ("CTFGroups", "CTFParams", "cluster_ctf", "ctf_polar_stack"),
    "radsvd.data.mrc": ("read_mrc", "read_stack", "write_mrc"),
    "radsvd.data.molecules": ("SYNTHETIC_PRESETS", "GaussianMolecule", "synthetic_molecule"),
    "radsvd.data.preprocess": ("downsample", "downsample_volume", "normalize", "preprocess"),
    "radsvd.data.rotations": ("euler_to_rotation", "random_rotations", "rotation_to_euler"),
    "radsvd.data.simulate": ("Microscope", "simulate_particles", "write_particles"),
    "radsvd.data.stacks": ("load_particles",),
    "radsvd.data.star": ("read_star", "write_star"),
    "radsvd.data.templates": ("apply_ctf", "make_templates", "project_fourier"),
    "radsvd.data.viewing": ("ViewingDirections", "directions_from_star", "shell_directions"),
}
__getattr__, __dir__ = _exports(__name__, _EXPORTS, globals())

__all__ = [
    "CTFGroups", "CTFParams", "GaussianMolecule", "Microscope", "SYNTHETIC_PRESETS",
    "ViewingDirections", "apply_ctf", "cluster_ctf", "ctf_polar_stack", "directions_from_star",
    "downsample", "downsample_volume", "euler_to_rotation", "load_particles", "make_templates",
    "normalize", "preprocess", "project_fourier", "random_rotations", "read_mrc", "read_stack",
    "read_star", "rotation_to_euler", "shell_directions", "simulate_particles",
    "synthetic_molecule", "write_mrc", "write_particles", "write_star",
]
