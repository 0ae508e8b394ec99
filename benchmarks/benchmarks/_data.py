"""Inputs shared by the asv benchmarks: synthetic molecule projections and volumes.

Built from the data layer's Gaussian pseudo-molecules, so every benchmark sees realistic,
smooth, band-limited signals.  Cached per process (asv calls ``setup`` once per repeat); the Fourier–Bessel coefficients of
the 2D classes once per asv run through ``setup_cache``.
"""

import functools

import numpy as np

from radsvd.data import random_rotations, synthetic_molecule

N_IMAGE = 64
N_VOLUME = 64


@functools.lru_cache(maxsize=None)
def images(n: int, seed: int = 0) -> np.ndarray:
    """n noisy projections (N_IMAGE²) of the default pseudo-molecule at random poses."""
    rng = np.random.default_rng(seed)
    mol = synthetic_molecule("trpv1-like")
    poses = random_rotations(n, rng)
    stack = np.stack([mol.projection(N_IMAGE, R) for R in poses])
    stack += 0.5 * stack.std() * rng.standard_normal(stack.shape)
    return stack


FB_KS = (32, 48)     # the K of the 2D benchmarks that align Fourier–Bessel coefficients


def fourier_bessel_cache(_benchmark=None):
    """asv ``setup_cache`` shared by the 2D classes: Fourier–Bessel coefficients of
    ``images(512)`` at every K of FB_KS, computed once per asv run (not once per parameter
    set and repeat); asv passes the returned dict as the first argument of ``setup`` and
    the benchmark methods.  Assigned as a class attribute, it is called as a method (hence
    ``_benchmark``); the same function in both classes means one shared cache."""
    from radsvd import PolarGrid
    from radsvd.images import images_to_fb

    return {K: images_to_fb(images(512), PolarGrid(K)) for K in FB_KS}


fourier_bessel_cache.timeout = 600


@functools.lru_cache(maxsize=None)
def volumes(n: int, seed: int = 0) -> np.ndarray:
    """The default pseudo-molecule (index 0) and n - 1 randomly rotated, noisy copies."""
    rng = np.random.default_rng(seed)
    mol = synthetic_molecule("trpv1-like")
    out = [mol.volume(N_VOLUME)]
    for R in random_rotations(n - 1, rng):
        v = mol.rotated(R).volume(N_VOLUME)
        out.append(v + 0.2 * v.std() * rng.standard_normal(v.shape))
    return np.stack(out)
