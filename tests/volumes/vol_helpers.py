"""Helpers shared by the volume tests."""

import numpy as np


def coefficients(grid, n, seed):
    """Random shell coefficients (n, R, n_lm) of real volumes: the m = 0 terms are real for
    even l and imaginary for odd l, as the coefficients of a real function are."""
    rng = np.random.default_rng(seed)
    shape = (n, grid.R, grid.n_lm)
    c = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    l, m = grid.degrees, grid.orders
    z = m == 0
    c[..., z] = np.where(l[z] % 2 == 0, c[..., z].real, 1j * c[..., z].imag)
    return c
