"""Volume alignment (paper §4): spherical-harmonic shells, Wigner-d, SO(3) landscapes,
and the radial- and degree-SVD.  The same step names as the 2D side: kernel
(:func:`radial_kernel`, :func:`degree_kernel`), basis (:func:`volume_svd` →
:class:`VolumeBasis`), compress (:meth:`VolumeBasis.compress`), landscape
(:func:`landscapes`, :class:`LandscapePlan`), best (:func:`align_volumes`; real-space
maps: :func:`align_volume_maps`)."""

from radsvd.volumes.align import (VolumeAlignResult, align_maps, align_volume_maps,
                                  align_volumes, canonical_euler, landscape_blocks,
                                  landscape_value, rank_sweep)
from radsvd.volumes.basis import VolumeBasis, degree_kernel, radial_kernel, volume_svd
from radsvd.volumes.landscape import LandscapePlan, beta_grid, default_M, landscapes, prepare
from radsvd.volumes.reconstruct import TestVolumes, direct_fourier_inversion, make_test_volumes
from radsvd.volumes.shells import ShellGrid, from_shells, isht, sht, to_shells
from radsvd.volumes.wigner import (WignerTable, euler_from_matrix, invert_euler, rotate,
                                   rotation_matrix, wigner_d)

__all__ = ["VolumeAlignResult", "align_maps", "align_volume_maps", "align_volumes",
           "canonical_euler", "landscape_blocks", "landscape_value", "rank_sweep",
           "VolumeBasis", "degree_kernel", "radial_kernel", "volume_svd", "LandscapePlan",
           "beta_grid", "default_M", "landscapes", "prepare", "ShellGrid", "from_shells",
           "isht", "sht", "to_shells", "WignerTable", "euler_from_matrix", "invert_euler",
           "rotate", "rotation_matrix", "wigner_d", "TestVolumes", "direct_fourier_inversion",
           "make_test_volumes"]
