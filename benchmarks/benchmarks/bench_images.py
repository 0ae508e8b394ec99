"""2D benchmarks: polar transform, radial-SVD kernel, full and compressed landscapes.

Numba kernels are compiled in ``setup`` (one warm-up call), never inside a timed region.
"""


from radsvd import PolarGrid
from radsvd.images import align_images, radial_svd, to_polar

from ._data import FB_KS, fourier_bessel_cache, images


class PolarTransform:
    """Images (N = 64) → polar Fourier samples through finufft (paper eq. 32, 34)."""

    params = [[16, 48]]
    param_names = ["K"]

    def setup(self, K):
        self.grid = PolarGrid(K)
        self.images = images(256)
        to_polar(self.images[:2], self.grid)

    def time_to_polar(self, K):
        to_polar(self.images, self.grid)


class RadialKernel:
    """Radial-SVD precomputation: kernel C (eq. 83, 85) and its eigendecomposition."""

    params = [list(FB_KS)]
    param_names = ["K"]
    setup_cache = fourier_bessel_cache

    def setup(self, fb, K):
        self.grid = PolarGrid(K)
        self.fb = fb[K]
        radial_svd(self.fb[:4], self.grid)

    def time_radial_svd(self, fb, K):
        radial_svd(self.fb, self.grid)


class ImageLandscapes:
    """Best rotation and target for 256 images × 256 targets, full and at rank H (eq. 35, 84)."""

    params = [list(FB_KS), ["full", 2, 6, 12]]
    param_names = ["K", "H"]
    timeout = 300
    setup_cache = fourier_bessel_cache

    def setup(self, fb, K, H):
        self.grid = PolarGrid(K)
        self.fb_a, self.fb_b = fb[K][:256], fb[K][256:]
        self.basis = None if H == "full" else radial_svd(self.fb_b, self.grid)
        self.rank = None if H == "full" else H
        align_images(self.fb_a[:8], self.fb_b[:8], self.grid, self.basis, self.rank)

    def time_align_images(self, fb, K, H):
        align_images(self.fb_a, self.fb_b, self.grid, self.basis, self.rank)

    def peakmem_align_images(self, fb, K, H):
        align_images(self.fb_a, self.fb_b, self.grid, self.basis, self.rank)

    def track_pairs_per_second(self, fb, K, H):
        """Throughput, best of 3 calls (a single call is noisy on shared machines)."""
        import time

        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            align_images(self.fb_a, self.fb_b, self.grid, self.basis, self.rank)
            best = min(best, time.perf_counter() - t)
        return self.fb_a.shape[0] * self.fb_b.shape[0] / best

    track_pairs_per_second.unit = "pairs/s"
