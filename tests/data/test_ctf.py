"""CTF against hand-computed values and physical landmarks; greedy CTF grouping."""

import math

import numpy as np
import pytest

from radsvd._validate import InputError
from radsvd.data.ctf import (CTFParams, cluster_ctf, ctf_polar_stack, ctf_value,
                             electron_wavelength)
from radsvd.grids import PolarGrid


def test_wavelength_by_hand():
    # 300 kV: 12.2643247 / sqrt(3e5 · (1 + 0.978466e-6 · 3e5)) = 12.2643247 / 622.946 = 0.0196875 Å
    assert electron_wavelength(300.0) == pytest.approx(0.0196875, abs=2e-7)
    # 200 kV: 12.2643247 / sqrt(2e5 · 1.1956932) = 12.2643247 / 489.018 = 0.0250795 Å
    assert electron_wavelength(200.0) == pytest.approx(0.0250795, abs=2e-7)


def test_ctf_hand_value():
    # s = 0.1/Å, DU = DV = 15000 Å, 300 kV, Cs 2.7 mm, A = 0.07, no phase shift:
    lam = 12.2643247 / math.sqrt(300e3 * (1 + 0.978466e-6 * 300e3))
    chi = math.pi * lam * 15000 * 0.01 - 0.5 * math.pi * 2.7e7 * lam ** 3 * 1e-4
    expected = math.sqrt(1 - 0.07 ** 2) * math.sin(chi) + 0.07 * math.cos(chi)
    c = CTFParams(15000, 15000, 0, 300, 2.7, 0.07)
    assert c(0.1) == pytest.approx(expected, abs=1e-12)
    # the same numbers by hand (λ = 0.01968762 Å, λ³ = 7.630963e-6 Å³):
    #   χ = π·λ·150 − (π/2)·2.7e7·λ³·1e-4 = 9.277570 − 0.032364 = 9.245206 rad
    #   sin χ = 0.178608, cos χ = −0.983920, sqrt(1 − 0.07²) = 0.997547
    #   CTF = 0.997547·0.178608 − 0.07·0.983920 = 0.178170 − 0.068874 = 0.109296
    assert chi == pytest.approx(9.245206, abs=2e-6)
    assert c(0.1) == pytest.approx(0.109296, abs=2e-6)


def test_ctf_landmarks():
    # s = 0: CTF = A (RELION sign); a 90° phase plate makes it sqrt(1 - A²)
    assert CTFParams(10000, 10000, amplitude_contrast=0.1)(0.0) == pytest.approx(0.1)
    assert CTFParams(10000, 10000, amplitude_contrast=0.1, phase_shift=90)(0.0) == \
        pytest.approx(math.sqrt(0.99))
    # Cs = 0, A = 0: zeros where π λ Δf s² = nπ, i.e. s_n = sqrt(n / (λ Δf))
    lam = float(electron_wavelength(300))
    for df in (8000.0, 20000.0):
        c = CTFParams(df, df, cs=0.0, amplitude_contrast=0.0)
        for n in (1, 2, 5):
            s = math.sqrt(n / (lam * df))
            assert abs(c(s)) < 1e-9
            assert abs(c(1.02 * s)) > 1e-3


def test_astigmatism_axes():
    """Along θ = DefocusAngle the defocus is DU, perpendicular to it DV."""
    lam = float(electron_wavelength(300))
    du, dv, ang = 20000.0, 12000.0, 30.0
    c = CTFParams(du, dv, ang, cs=0.0, amplitude_contrast=0.0)
    t = math.radians(ang)
    assert abs(c(math.sqrt(1 / (lam * du)), t)) < 1e-9
    assert abs(c(math.sqrt(1 / (lam * dv)), t + math.pi / 2)) < 1e-9
    assert abs(c(math.sqrt(1 / (lam * du)), t + math.pi / 2)) > 1e-2


def test_polar_ring_and_cartesian_layout():
    grid = PolarGrid(K=24)
    N, p = 64, 2.0
    c = CTFParams(14000, 11000, 75.0, bfactor=50.0)
    pol = c.polar(grid, N, p)
    assert pol.shape == (grid.R, grid.Q)
    # node (r, j): s = k_r / (π N p), θ = ψ_j
    s = grid.k[:, None] / (np.pi * N * p)
    np.testing.assert_allclose(pol, c(s, grid.psi[None, :]), atol=1e-14)
    np.testing.assert_allclose(c.ring(grid, N, p), pol.mean(axis=1))
    stack = ctf_polar_stack([c, CTFParams(9000, 9000)], grid, N, p)
    np.testing.assert_allclose(stack[0], pol)
    rings = ctf_polar_stack([c], grid, N, [p], ring=True)
    np.testing.assert_allclose(rings[0], pol.mean(axis=1))
    cart = c.cartesian(N, p)
    # FFT bin [0, 1]: 1/N cycles per pixel along x → s = 1/(N p), θ = 0; [1, 0] is along +y
    assert cart[0, 1] == pytest.approx(float(c(1 / (N * p), 0.0)))
    assert cart[1, 0] == pytest.approx(float(c(1 / (N * p), np.pi / 2)))
    # rfft columns 0 … N/2−1 are fftfreq's; column N/2 is +Nyquist (fftfreq has −Nyquist)
    np.testing.assert_allclose(c.cartesian(N, p, rfft=True)[:, : N // 2], cart[:, : N // 2])


def test_cluster_ctf_groups():
    grid = PolarGrid(K=32)
    N, p = 128, 1.2
    base = [8000.0, 15000.0, 22000.0]
    rng = np.random.default_rng(0)
    params, truth = [], []
    for i in range(30):
        g = i % 3
        d = base[g] + rng.normal(0, 2.0)  # 2 Å jitter: far below the 5 % tolerance
        params.append(CTFParams(d, d + 50.0, 20.0))
        truth.append(g)
    rings = ctf_polar_stack(params, grid, N, p, ring=True)
    groups = cluster_ctf(rings, weights=grid.w, tolerance=0.05)
    assert groups.n_groups == 3
    assert groups.counts.tolist() == [10, 10, 10]
    np.testing.assert_array_equal(groups.labels, truth)
    np.testing.assert_array_equal(groups.representatives, [0, 1, 2])
    np.testing.assert_allclose(groups.rings[1], rings[groups.members(1)].mean(axis=0))
    # every member is within tolerance of its founder (the greedy rule)
    w = np.sqrt(grid.w)
    for g in range(3):
        f = rings[groups.representatives[g]] * w
        for m in groups.members(g):
            assert np.linalg.norm(rings[m] * w - f) <= 0.05 * np.linalg.norm(f)
    assert cluster_ctf(rings, tolerance=0.0).n_groups == len({tuple(r) for r in rings})


def test_bad_ctf_input():
    with pytest.raises(InputError, match="voltage"):
        CTFParams(1000, 1000, voltage=0)
    with pytest.raises(InputError, match="amplitude_contrast"):
        CTFParams(1000, 1000, amplitude_contrast=1.5)
    with pytest.raises(InputError, match="defocus_u"):
        CTFParams(float("nan"), 1000)
    with pytest.raises(InputError, match="rings"):
        cluster_ctf(np.zeros(5))
    with pytest.raises(InputError, match="tolerance"):
        cluster_ctf(np.ones((2, 3)), tolerance=-1)
    with pytest.raises(InputError, match="pixel size"):
        CTFParams(1000, 1000).polar(PolarGrid(K=8), 32, 0.0)
    assert np.isfinite(ctf_value(np.linspace(0, 0.5, 5), 0.0, 1e4, 1e4)).all()


def relion_ctf(X, Y, du, dv, ang, kv, cs, q0, phase=0.0, bfac=0.0):
    """RELION's CTF::getCTF (ctf.h, 3.1+) written out: astigmatism as the bilinear form
    A = Qᵀ diag(−DU, −DV) Q, γ = K1 (Axx X² + 2 Axy XY + Ayy Y²) + K2 u⁴ − K5 − K3,
    CTF = −sin γ · exp(−B u² / 4).  X, Y in 1/Å along the image x and y axes."""
    lam = 12.2643247 / np.sqrt(kv * 1e3 * (1 + kv * 1e3 * 0.978466e-6))
    K1, K2 = np.pi * lam, np.pi / 2 * cs * 1e7 * lam ** 3
    K3, K4, K5 = np.arctan(q0 / np.sqrt(1 - q0 * q0)), -bfac / 4, np.deg2rad(phase)
    a = np.deg2rad(ang)
    Q = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
    A = Q.T @ np.diag([-du, -dv]) @ Q
    u2 = X * X + Y * Y
    gamma = K1 * (A[0, 0] * X * X + 2 * A[0, 1] * X * Y + A[1, 1] * Y * Y) + K2 * u2 * u2 - K5 - K3
    return -np.sin(gamma) * np.exp(K4 * u2)


def test_matches_relion_formula_on_cartesian_grid():
    rng = np.random.default_rng(3)
    N, p = 96, 1.3
    f = np.fft.fftfreq(N) / p
    X, Y = np.meshgrid(f, f)  # [iy, ix]
    for _ in range(5):
        du = rng.uniform(8000, 30000)
        dv = du - rng.uniform(0, 2000)
        ang, ps, b = rng.uniform(0, 180), rng.uniform(0, 90), rng.uniform(0, 100)
        c = CTFParams(du, dv, ang, 300.0, 2.7, 0.1, ps, b)
        np.testing.assert_allclose(c.cartesian(N, p), relion_ctf(X, Y, du, dv, ang, 300.0, 2.7,
                                                                 0.1, ps, b), atol=1e-12)
