"""Log-likelihoods (paper §2.6–2.7) against brute force: direct sums of |Â − α T_δ R_γ t̂|² over
the polar grid, the amplitude profiled on a fine grid, logsumexp over rotations × shifts."""

import numpy as np
import pytest
from scipy.special import logsumexp

from radsvd.grids import PolarGrid
from radsvd.images.basis import radial_svd
from radsvd.images.likelihood import background_sigma, log_likelihoods, polar_energy
from radsvd.images.polar import fb_to_polar, images_to_fb, to_fb
from radsvd.images.shifts import shift_grid, shift_phases

N = 24


def _blobs(rng, n, width=2.5):
    """Smooth random images: a few Gaussian blobs of ~width pixels."""
    y, x = np.mgrid[:N, :N] - N // 2
    out = np.zeros((n, N, N))
    for i in range(n):
        for _ in range(4):
            cx, cy = rng.uniform(-5, 5, 2)
            out[i] += rng.uniform(0.5, 1.5) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2)
                                                     / (2 * width ** 2))
    return out


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(2)
    grid = PolarGrid(K=10.0)
    targets = images_to_fb(_blobs(rng, 3), grid)
    targets /= np.sqrt(polar_energy(targets, grid))[:, None, None]     # unit norm
    truth = fb_to_polar(targets[[1, 2]], grid.Q)
    noise = images_to_fb(rng.normal(0, 0.05, (2, N, N)), grid)       # real images' noise
    imgs = to_fb(0.8 * np.roll(truth, 5, axis=-1)) + noise
    return grid, imgs, targets


def _brute(grid, imgs, targets, sigma, shifts, amplitude):
    """ℓ for every (image, target, shift, γ_j) by direct sums of |Â − α T_δ R_γ t̂|²; amplitude
    None: the minimum over α ≥ 0 of that exact quadratic in α, found from its values at
    α = 0, 1, 2 (still direct sums), else α fixed."""
    A = fb_to_polar(imgs, grid.Q)
    B = fb_to_polar(targets, grid.Q)
    w = (grid.w * grid.dpsi)[None, :, None]
    ph = shift_phases(grid, shifts, N, -1.0)                      # T_δ: e^{−ik·δ}
    ll = np.empty((len(A), len(B), len(shifts), grid.Q))
    for i in range(len(A)):
        for t in range(len(B)):
            for s in range(len(shifts)):
                RB = ph[s][None] * np.stack([np.roll(B[t], j, axis=-1)     # B(ψ − γ_j)
                                             for j in range(grid.Q)])

                def d2(a):
                    return np.sum(w * np.abs(A[i][None] - a * RB) ** 2, axis=(1, 2))

                if amplitude is None:
                    f0, f1, f2 = d2(0.0), d2(1.0), d2(2.0)
                    c2, c1 = (f2 - 2 * f1 + f0) / 2, (4 * f1 - f2 - 3 * f0) / 2
                    a = np.maximum(-c1 / (2 * c2), 0.0)
                    best = f0 + c1 * a + c2 * a * a
                else:
                    best = d2(amplitude)
                ll[i, t, s] = -best / (2 * sigma[i] ** 2)
    flat = ll.reshape(len(A), len(B), -1)
    return flat.max(-1), logsumexp(flat, axis=-1) - np.log(flat.shape[-1])


@pytest.mark.parametrize("amplitude", [None, 0.7])
def test_against_brute_force_with_shifts(small, amplitude):
    grid, imgs, targets = small
    sigma = np.array([0.5, 0.8])
    shifts = shift_grid(1.0, 1.0, N)
    mx, it = _brute(grid, imgs, targets, sigma, shifts, amplitude)
    L = log_likelihoods(imgs, targets, grid, sigma, shifts, N, amplitude=amplitude)
    tol = 1e-9
    np.testing.assert_allclose(L.maximum, mx, rtol=tol, atol=tol)
    np.testing.assert_allclose(L.integrated, it, rtol=tol, atol=tol)
    assert np.all(np.argmax(L.maximum, axis=1) == [1, 2])      # the true templates win


def test_rank_H_converges_to_full(small):
    grid, imgs, targets = small
    full = log_likelihoods(imgs, targets, grid, 0.5)
    basis = radial_svd(targets, grid)
    err = [np.abs(log_likelihoods(imgs, targets, grid, 0.5, basis=basis, rank=H).integrated
                  - full.integrated).max() for H in (1, 3, grid.R)]
    assert err[-1] < 1e-9 and err[0] > err[1]


def test_sigma_conversion_by_parseval():
    """‖Â‖² on the polar grid = (2π dx)² Σ_x a² for a band-limited image: σ̂ = 2π dx σ_px."""
    rng = np.random.default_rng(5)
    img = _blobs(rng, 1, width=3.0)
    grid = PolarGrid(K=np.pi * N / 2 * 0.95)
    e = polar_energy(images_to_fb(img, grid), grid)[0]
    assert np.isclose(e, (2 * np.pi * 2 / N) ** 2 * np.sum(img ** 2), rtol=1e-4)
    noise = rng.normal(0, 0.7, (3, 64, 64))
    assert np.allclose(background_sigma(noise), 0.7, rtol=0.06)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        log_likelihoods(images_to_fb(img, grid), images_to_fb(img, grid), grid, 0.0)
