"""2D side: polar Fourier images, radial bases (radial-SVD and baselines), the alignment engine.

Names load with their module on first use (see :mod:`radsvd._lazy`)."""

from radsvd._lazy import exports as _exports

_EXPORTS = {
    "radsvd.images.align": ("align_images", "landscape_tiles", "landscapes", "rank_sweep"),
    "radsvd.images.plan": ("AlignResult", "ImagePlan", "Targets"),
    "radsvd.images.basis": ("RadialBasis", "energy_pca", "frequency_marching", "radial_kernel",
                            "radial_svd"),
    "radsvd.images.polar": ("FBSource", "fb_to_polar", "images_to_fb", "polar_to_images",
                            "to_fb", "to_polar"),
}
__getattr__, __dir__ = _exports(__name__, _EXPORTS, globals())

__all__ = ["AlignResult", "ImagePlan", "Targets", "align_images", "landscape_tiles", "landscapes", "rank_sweep", "RadialBasis",
           "energy_pca", "frequency_marching", "radial_kernel", "radial_svd", "fb_to_polar",
           "images_to_fb", "polar_to_images", "to_fb", "to_polar", "FBSource"]
