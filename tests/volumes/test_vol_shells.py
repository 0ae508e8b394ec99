"""Spherical-harmonic shells: convention (scipy's Y_l^m), closed-form Gaussian blob."""

import numpy as np
import pytest
from scipy.special import sph_harm_y

from radsvd.volumes import ShellGrid, from_shells, sht, isht, to_shells
from radsvd.volumes.shells import coefficient_norms

EPS = np.finfo(float).eps


def _real_volume_coefficients(grid, rng, shape=()):
    """Random coefficients obeying A_l^0 = (-1)^l conj(A_l^0) (real-volume symmetry)."""
    c = rng.standard_normal(shape + (grid.n_lm,)) + 1j * rng.standard_normal(shape + (grid.n_lm,))
    l, m = grid.degrees, grid.orders
    z = m == 0
    c[..., z] = np.where(l[z] % 2 == 0, c[..., z].real, 1j * c[..., z].imag)
    return c


def _synthesize_scipy(c, grid):
    """Σ_{l,|m|≤l} A_l^m Y_l^m on the sphere grid with scipy's Y (orthonormal, Condon–Shortley)."""
    T, P = np.meshgrid(grid.theta, grid.phi, indexing="ij")
    f = np.zeros(T.shape, complex)
    for j, (l, m) in enumerate(zip(grid.degrees, grid.orders)):
        f += c[j] * sph_harm_y(l, m, T, P)
        if m > 0:  # A_l^{-m} = (-1)^{l+m} conj(A_l^m)
            f += (-1) ** (l + m) * np.conj(c[j]) * sph_harm_y(l, -m, T, P)
    return f


@pytest.mark.parametrize("L", [1, 6, 17])
def test_sht_matches_scipy_spherical_harmonics(L):
    grid = ShellGrid(K=5, R=3, L=L)
    c = _real_volume_coefficients(grid, np.random.default_rng(L))
    f = _synthesize_scipy(c, grid)
    # Gauss–Legendre (L+1 nodes) × 2L+2 azimuths integrate degree-2L products exactly, so
    # only rounding remains: O(L ε) per coefficient relative to the O(sqrt(n_lm)) data.
    tol = 50 * (L + 1) * EPS * np.abs(c).max() * np.sqrt(grid.n_lm)
    assert np.abs(sht(f, grid) - c).max() < tol
    assert np.abs(isht(c, grid) - f).max() < tol


def _blob(N, center, cov):
    """Off-centre anisotropic Gaussian A(x) = exp(-(x-c)ᵀ S⁻¹ (x-c)/2) on vol[iz, iy, ix]."""
    x = (np.arange(N) - N // 2) * (2.0 / N)
    Z, Y, X = np.meshgrid(x, x, x, indexing="ij")
    d = np.stack([X - center[0], Y - center[1], Z - center[2]], -1)
    Si = np.linalg.inv(cov)
    return np.exp(-0.5 * np.einsum("...i,ij,...j->...", d, Si, d))


def _blob_ft(k, center, cov):
    """∫ A(x) e^{-i k·x} dx = (2π)^{3/2} sqrt(det S) exp(-kᵀSk/2 - i k·c); k (..., 3) (x, y, z)."""
    return ((2 * np.pi) ** 1.5 * np.sqrt(np.linalg.det(cov))
            * np.exp(-0.5 * np.einsum("...i,ij,...j->...", k, cov, k) - 1j * k @ center))


def test_blob_shells_against_closed_form():
    # distinct x, y, z offsets and widths: an axis swap or sign error in the NUFFT call fails
    center = np.array([0.21, -0.12, 0.07])
    cov = np.diag([0.09, 0.06, 0.11]) ** 2
    cov[0, 1] = cov[1, 0] = 0.3 * 0.09 * 0.06
    N = 48
    grid = ShellGrid(K=8, R=9, L=20)
    coef = to_shells(_blob(N, center, cov), grid)
    kx, ky, kz = grid.points()
    exact = _blob_ft(np.stack([kx, ky, kz], -1), center, cov)
    # The voxel sum equals the integral up to (i) aliasing: the nearest alias sits at
    # 2π/dx - K = 48π - 8 ≈ 143 where the narrowest width σ_y = 0.06 gives
    # exp(-(143·0.06)²/2) ≈ 1e-16, and (ii) truncation at the box edge, ≥ 0.79 = 7σ from the
    # centre along each axis: exp(-7²/2) ~ 2e-11; the NUFFT adds 1e-12.  So 1e-8 of the peak
    # value bounds both checks below with a wide margin (not tuned: 1e-10 passes too).
    peak = np.abs(exact).max()
    np.testing.assert_allclose(coef[0], sht(exact, grid), rtol=0, atol=1e-8 * peak)
    # Band limit: on a shell of radius ≤ 8, e^{-ik·c} has |k||c| ≤ 2, whose degree-l terms
    # behave like j_l(2) < 1e-15 for l > 20; the Gaussian factor is smoother still.
    np.testing.assert_allclose(from_shells(coef, grid)[0], exact, rtol=0, atol=1e-8 * peak)


def test_norms_are_the_fourier_inner_product():
    # <Â, Â> = Σ_r w_r ∫|Â|² dk̂ computed on the sphere grid directly, vs from coefficients
    grid = ShellGrid(K=4, R=5, L=9)
    c = _real_volume_coefficients(grid, np.random.default_rng(2), (2, grid.R))
    f = isht(c, grid)
    direct = np.einsum("nrtp,r,t->n", np.abs(f) ** 2, grid.w, grid.theta_weights) * (
        2 * np.pi / grid.n_phi)
    np.testing.assert_allclose(coefficient_norms(c, grid), direct, rtol=1e-12)


def test_grid_defaults_follow_the_paper():
    g = ShellGrid(K=48)
    assert (g.R, g.L, g.M, g.n_lm) == (49, 48, 97, 49 * 50 // 2)
    # radial rule is exact for k^2 dk: ∫_0^K k^2 · k^3 dk = K^6/6
    assert np.isclose(np.sum(g.w * g.k ** 3), 48.0 ** 6 / 6, rtol=1e-13)
    assert np.all(g.index(g.degrees, g.orders) == np.arange(g.n_lm))
