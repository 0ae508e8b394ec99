"""2D side: polar Fourier images, radial bases (radial-SVD and baselines), the alignment engine."""

from radsvd.images.align import (AlignResult, align_images, landscape_tiles, landscapes,
                                 rank_sweep)
from radsvd.images.basis import (RadialBasis, energy_pca, frequency_marching, radial_kernel,
                                 radial_svd)
from radsvd.images.polar import FBSource, fb_to_polar, images_to_fb, polar_to_images, to_fb, to_polar

__all__ = ["AlignResult", "align_images", "landscape_tiles", "landscapes", "rank_sweep", "RadialBasis",
           "energy_pca", "frequency_marching", "radial_kernel", "radial_svd", "fb_to_polar",
           "images_to_fb", "polar_to_images", "to_fb", "to_polar", "FBSource"]
