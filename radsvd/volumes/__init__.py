"""Volume alignment (paper §4): spherical-harmonic shells, Wigner-d, SO(3) landscapes,
and the radial- and degree-SVD.  The same step names as the 2D side: kernel
(:func:`radial_kernel`, :func:`degree_kernel`), basis (:func:`volume_svd` →
:class:`VolumeBasis`), compress (:meth:`VolumeBasis.compress`), landscape
(:func:`landscapes`, :class:`LandscapePlan`), best (:func:`align_volumes`; real-space
maps: :func:`align_volume_maps`).

Names load with their module on first use (see :mod:`radsvd._lazy`)."""

from radsvd._lazy import exports as _exports

_EXPORTS = {
    "radsvd.volumes.align": ("VolumeAlignResult", "align_volume_maps",
                             "align_volumes", "canonical_euler", "landscape_blocks",
                             "landscape_value", "rank_sweep"),
    "radsvd.volumes.basis": ("VolumeBasis", "degree_kernel", "radial_kernel", "volume_svd"),
    "radsvd.volumes.landscape": ("LandscapePlan", "beta_grid", "default_M", "landscapes",
                                 "prepare"),
    "radsvd.volumes.reconstruct": ("TestVolumes", "direct_fourier_inversion",
                                   "make_test_volumes"),
    "radsvd.volumes.shells": ("ShellGrid", "ShellTransform", "from_shells", "isht", "sht",
                              "to_shells"),
    "radsvd.volumes.wigner": ("WignerTable", "euler_from_matrix", "invert_euler", "rotate",
                              "rotation_matrix", "wigner_d"),
}
__getattr__, __dir__ = _exports(__name__, _EXPORTS, globals())

__all__ = ["VolumeAlignResult", "align_volume_maps", "align_volumes",
           "canonical_euler", "landscape_blocks", "landscape_value", "rank_sweep",
           "VolumeBasis", "degree_kernel", "radial_kernel", "volume_svd", "LandscapePlan",
           "beta_grid", "default_M", "landscapes", "prepare", "ShellGrid", "ShellTransform",
           "from_shells", "isht", "sht", "to_shells", "WignerTable", "euler_from_matrix",
           "invert_euler", "rotate", "rotation_matrix", "wigner_d", "TestVolumes",
           "direct_fourier_inversion", "make_test_volumes"]
