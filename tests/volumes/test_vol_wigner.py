"""Wigner-d: the `spherical` package (independent implementation), identities, l ≥ 100,
and rotation of coefficient sets (eq. 97) against resampling the rotated function."""

import numpy as np
import pytest

from radsvd.volumes import (ShellGrid, WignerTable, euler_from_matrix, invert_euler, isht,
                            rotate, rotation_matrix, sht, wigner_d)

EPS = np.finfo(float).eps
spherical = pytest.importorskip("spherical")
quaternionic = pytest.importorskip("quaternionic")


def _spherical_d(L, beta, ls):
    """d^l(β) from `spherical`: its D(R) for a pure y-rotation R = R^y_β (quaternionic
    from_euler_angles(0, β, 0), ZYZ) uses the same Wigner convention as ours — e.g.
    d^1_{1,0}(β) = -sin β/√2, checked in test_d1_closed_form — so D^l_{m1,m2} = d^l_{m1,m2}(β)."""
    w = spherical.Wigner(L)
    D = w.D(quaternionic.array.from_euler_angles(0.0, beta, 0.0))
    return {l: np.array([[D[w.Dindex(l, a, b)] for b in range(-l, l + 1)]
                         for a in range(-l, l + 1)]) for l in ls}


def test_d1_closed_form():
    b = 0.83
    d1 = wigner_d(1, b)[1]
    c, s = np.cos(b), np.sin(b)
    r = np.sqrt(2)
    # Wigner's d^1 (e.g. Sakurai), indexed [m1 + 1, m2 + 1]: d^1_{1,0} = -sin β/√2
    ref = np.array([[(1 + c) / 2, s / r, (1 - c) / 2],
                    [-s / r, c, s / r],
                    [(1 - c) / 2, -s / r, (1 + c) / 2]])
    np.testing.assert_allclose(d1, ref, atol=4 * EPS)
    assert np.isclose(d1[2, 1], -s / r)


@pytest.mark.parametrize("beta", [-np.pi, -2.1, -0.3, 0.0, 0.05, 1.2, np.pi / 2, 2.9])
def test_against_spherical_low_degree(beta):
    L = 10
    ref = _spherical_d(L, beta, range(L + 1))
    mine = wigner_d(L, beta)
    for l in range(L + 1):
        # both are accurate to a few ε per entry (|d| ≤ 1); 20 l ε allows linear growth
        np.testing.assert_allclose(mine[l], ref[l], rtol=0, atol=20 * (l + 1) * EPS)


@pytest.mark.parametrize("beta", [0.02, 1.3, 2.95])
def test_high_degree_accuracy(beta):
    L = 110
    table = WignerTable(L, [beta])
    ref = _spherical_d(L, beta, [100, 110])
    for l, d_ref in ref.items():
        d = table.dense(l)
        # forward three-term recursion: O(ε) relative error per step, accumulating at most
        # linearly over the ≤ l steps; entries are ≤ 1, so 20 l ε (~5e-13 at l = 110) bounds it
        np.testing.assert_allclose(d, d_ref, rtol=0, atol=20 * l * EPS)
        # orthogonality at high degree (catches instability that a pointwise check could miss)
        assert np.abs(d @ d.T - np.eye(2 * l + 1)).max() < 20 * l * EPS * np.sqrt(2 * l + 1)


def test_unitarity_and_symmetries():
    L = 30
    betas = np.array([-1.7, 0.4, 2.2])
    t = WignerTable(L, betas)
    for b in range(betas.size):
        for l in (0, 1, 7, 30):
            d = t.dense(l, b)
            # d dᵀ = I: each entry is a sum of 2l+1 products with O(l ε) errors
            assert np.abs(d @ d.T - np.eye(2 * l + 1)).max() < 20 * (l + 1) ** 2 * EPS
            # d(-β) = d(β)ᵀ
            d_neg = WignerTable(L, [-betas[b]]).dense(l)
            np.testing.assert_allclose(d_neg, d.T, atol=20 * (l + 1) * EPS)


def _D(l, euler):
    g, b, a = euler
    m = np.arange(-l, l + 1)
    return np.exp(-1j * m * a)[:, None] * wigner_d(l, b)[l] * np.exp(-1j * m * g)[None, :]


def test_composition_through_full_D_matrices():
    rng = np.random.default_rng(4)
    t1, t2 = rng.uniform(-np.pi, np.pi, 3), rng.uniform(-np.pi, np.pi, 3)
    t12 = euler_from_matrix(rotation_matrix(t1) @ rotation_matrix(t2))
    for l in (1, 5, 25):
        # D(R1) D(R2) = D(R1 R2) (representation, active rotations).  Each side carries
        # O(l ε) per entry; the product sums 2l+1 terms: tolerance 20 (2l+1) l ε
        np.testing.assert_allclose(_D(l, t1) @ _D(l, t2), _D(l, t12),
                                   atol=20 * (2 * l + 1) * (l + 1) * EPS)


def test_rotate_matches_resampling_the_rotated_shell():
    # (R_τ f)(k̂) = f(R_τ⁻¹ k̂): evaluate f at rotated points with scipy's Y_l^m, re-expand,
    # and compare with the coefficients of eq. 97 — this pins down ZYZ order, active sense
    # and the Wigner convention together.
    from scipy.special import sph_harm_y

    grid = ShellGrid(K=4, R=1, L=6)
    rng = np.random.default_rng(7)
    c = rng.standard_normal(grid.n_lm) + 1j * rng.standard_normal(grid.n_lm)
    l, m = grid.degrees, grid.orders
    z = m == 0
    c[z] = np.where(l[z] % 2 == 0, c[z].real, 1j * c[z].imag)
    tau = np.array([0.7, -1.1, 2.3])
    Rinv = rotation_matrix(tau).T
    T, P = np.meshgrid(grid.theta, grid.phi, indexing="ij")
    pts = np.stack([np.sin(T) * np.cos(P), np.sin(T) * np.sin(P), np.cos(T)], -1) @ Rinv.T
    th = np.arccos(np.clip(pts[..., 2], -1, 1))
    ph = np.arctan2(pts[..., 1], pts[..., 0])
    f = np.zeros(T.shape, complex)
    for j in range(grid.n_lm):
        f += c[j] * sph_harm_y(l[j], m[j], th, ph)
        if m[j] > 0:
            f += (-1) ** (l[j] + m[j]) * np.conj(c[j]) * sph_harm_y(l[j], -m[j], th, ph)
    np.testing.assert_allclose(rotate(c, grid, tau), sht(f, grid), atol=1e-12)
    np.testing.assert_allclose(isht(rotate(c, grid, tau), grid), f, atol=1e-12)


def test_euler_round_trip_and_inverse():
    rng = np.random.default_rng(1)
    e = rng.uniform(-np.pi, np.pi, (20, 3))
    e = np.concatenate([e, [[0.3, 0.0, 1.0], [0.3, np.pi, 1.0]]])   # gimbal lock
    R = rotation_matrix(e)
    np.testing.assert_allclose(rotation_matrix(euler_from_matrix(R)), R, atol=1e-12)
    np.testing.assert_allclose(rotation_matrix(invert_euler(e)) @ R,
                               np.broadcast_to(np.eye(3), R.shape), atol=1e-12)
