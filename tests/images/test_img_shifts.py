"""Shift search (paper §5): brute force in real space, exact recovery of off-grid poses, the
eq. 118 and eq. 119–121 kernels against Monte Carlo averages, bad input, thread determinism."""

import numpy as np
import pytest
from img_helpers import image, random_blobs
from scipy.special import i0e

from radsvd._jit import threads
from radsvd._validate import InputError
from radsvd.data.molecules import GaussianMolecule
from radsvd.data.rotations import random_rotations
from radsvd.grids import PolarGrid
from radsvd.images import align_images, images_to_fb, landscapes, radial_kernel, radial_svd, to_fb
from radsvd.images.methods import canonical_method, make_basis
from radsvd.images.polar import fb_to_polar
from radsvd.images.shifts import (gaussian_E_minus, gaussian_E_plus, gaussian_shift_kernel,
                                  shift_grid, shift_kernel)
from radsvd.volumes.shells import ShellGrid, map_shells, sht

N = 32


def _stack(rng, n, rmax=0.3):
    """Blob images that vanish (below 1e-12) within 4 px of the border: integer np.roll is
    then an exact translation and its NUFFT is the phase-shifted transform."""
    return np.array([image(random_blobs(rng, 4, rmax=rmax, smin=0.05, smax=0.08), N)
                     for _ in range(n)])


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    grid = PolarGrid(K=12)
    imgs, tgts = _stack(rng, 5), _stack(rng, 7)
    return grid, imgs, images_to_fb(imgs, grid), images_to_fb(tgts, grid)


def test_shift_grid_disc_order_and_count():
    s = shift_grid(4, 1)
    assert len(s) == 49                                    # Gauss circle: r = 4 holds 49 points
    assert np.array_equal(s[0], [0, 0])
    r = np.hypot(*s.T)
    assert np.all(np.diff(r) >= -1e-12) and r.max() <= 4
    assert len(shift_grid(3, 1.5)) == 13 and len(shift_grid(0, 1)) == 1


@pytest.mark.parametrize("kw, match", [
    (dict(max_shift=-1), "max_shift"), (dict(max_shift=np.nan), "max_shift"),
    (dict(max_shift=np.inf), "max_shift"), (dict(max_shift=2, shift_step=3), "larger than"),
    (dict(max_shift=17), "half the box"), (dict(max_shift=2, shift_step=0), "shift_step")])
def test_bad_shift_options(data, kw, match):
    grid, _, fa, fb = data
    with pytest.raises(InputError, match=match):
        align_images(fa, fb, grid, box=N, **kw)


def test_shifts_need_the_box(data):
    grid, _, fa, fb = data
    with pytest.raises(InputError, match="box"):
        align_images(fa, fb, grid, max_shift=2)


def test_landscape_with_shifts_equals_real_space_brute_force(data):
    """X(γ, δ) = <Â, T_δ R_γ B̂>: the image moved by −δ in real space, then rotation only."""
    grid, imgs, fa, fb = data
    sh = shift_grid(2, 1)
    X = landscapes(fa, fb, grid, shifts=sh, box=N)
    for s, (sx, sy) in enumerate(sh):
        moved = np.roll(imgs, (-int(sy), -int(sx)), axis=(1, 2))
        Xb = landscapes(images_to_fb(moved, grid), fb, grid)
        # NUFFT tolerance 1e-12 relative to Σ|A|: well below 1e-10 of the landscape's scale
        assert np.abs(X[:, :, s] - Xb).max() <= 1e-10 * np.abs(Xb).max()


@pytest.mark.parametrize("rank", [None, 4])
def test_engine_with_shifts_is_the_landscape_maximum(data, rank):
    grid, _, fa, fb = data
    basis = None if rank is None else radial_svd(fb, grid)
    X = landscapes(fa, fb, grid, basis=basis, rank=rank, shifts=shift_grid(2, 1), box=N)
    r = align_images(fa, fb, grid, basis=basis, rank=rank, max_shift=2, box=N,
                     precision="double", all_pairs=True)
    n, nb, ns, Q = X.shape
    flat = X.reshape(n, -1)
    # the first maximum in (target, shift, γ) order is the engine's tie rule
    k = np.argmax(flat, axis=1)
    t, s, j = np.unravel_index(k, (nb, ns, Q))
    tol = 1e-12 * np.abs(X).max()
    assert np.abs(r.score - flat.max(axis=1)).max() <= tol
    assert np.array_equal(r.best_target, t)
    assert np.array_equal(r.shift, shift_grid(2, 1)[s])
    assert np.allclose(r.angle, j * 2 * np.pi / Q)
    assert np.abs(r.scores - X.max(axis=(2, 3))).max() <= tol
    assert r.shifts.shape == (n, nb, 2)


def test_shift_search_is_thread_count_independent(data):
    grid, _, fa, fb = data
    basis = radial_svd(fb, grid)
    runs = []
    for nt in (1, 2):
        with threads(nt):
            runs.append([align_images(fa, fb, grid, basis=b, rank=h, max_shift=3, box=N,
                                      tile=(16, 4), refine=True)
                         for b, h in ((None, None), (basis, 5))])
    for a, b in zip(*runs):
        for key in ("best_target", "angle", "score", "shift"):
            assert np.array_equal(getattr(a, key), getattr(b, key)), key


def test_refinement_recovers_off_grid_rotation_and_shift(data):
    """Image = T_δ0 R_γ0 B on the grid (B band-limited, q < Q/2): by Cauchy–Schwarz on the
    grid the maximum of X(γ, δ) is exactly (γ0, δ0)."""
    grid, _, _, fb = data
    b = fb[:3].copy()
    b[..., -1] = 0
    b /= np.sqrt(np.sum(np.abs(b) ** 2 * grid.w[:, None], axis=(1, 2)))[:, None, None]
    g0 = np.array([0.3, 2.0, 4.4])
    d0 = np.array([[0.4, -1.3], [1.7, 0.2], [-0.6, -0.7]])
    P = fb_to_polar(b * np.exp(-1j * np.arange(grid.n_freq) * g0[:, None, None]), grid.Q)
    kx, ky = grid.points()
    d = d0 * 2 / N
    fa = to_fb(P * np.exp(-1j * (d[:, 0, None, None] * kx + d[:, 1, None, None] * ky)))
    grid_only = align_images(fa, b, grid, max_shift=2, box=N)
    r = align_images(fa, b, grid, max_shift=2, box=N, refine=True)
    assert np.array_equal(r.best_target, [0, 1, 2])
    assert np.all(r.score >= grid_only.score)
    err = np.angle(np.exp(1j * (r.angle - g0)))
    assert np.abs(err).max() < 1e-6 and np.abs(r.shift - d0).max() < 1e-6


# ----------------------------------------------------------------------------- kernels
def test_shift_kernel_with_zero_shift_is_the_radial_kernel(data):
    grid, _, _, fb = data
    C0 = radial_kernel(fb, grid)
    C = shift_kernel(fb, grid, np.zeros((1, 2)), N)
    assert np.abs(C - C0).max() <= 1e-13 * np.abs(C0).max()
    rings = np.linspace(0.5, 1.0, grid.R)[None] * np.array([[1.0], [0.7]])
    assert np.allclose(shift_kernel(fb, grid, np.zeros((1, 2)), N, ctf=rings, group_sizes=[3, 1]),
                       radial_kernel(fb, grid, ctf=rings, group_sizes=[3, 1]), rtol=0,
                       atol=1e-13 * np.abs(C0).max())


def _mc_check(samples, C, z=6.0):
    """Every entry of the Monte Carlo mean within z standard errors of C."""
    mean = samples.mean(axis=0)
    se = samples.std(axis=0) / np.sqrt(len(samples))
    return np.abs(mean - C) <= z * se + 1e-12 * np.abs(C).max()


def test_shift_kernel_matches_monte_carlo_of_eq118(data):
    """½ E (1/Q) Σ_j d d^H, d = η[T_δ R_γ B − T_δ' R_γ' B], δ from a weighted shift set,
    γ uniform on [0, 2π) (continuous: B band-limited), averaged over the targets."""
    grid, _, _, fb = data
    rng = np.random.default_rng(5)
    b = fb[:3].copy()
    b[..., -1] = 0
    sh = shift_grid(3, 1.5)
    w = rng.random(len(sh))
    C = shift_kernel(b, grid, sh, N, weights=w)
    kx, ky = grid.points()

    def draw(bt, m):
        g = rng.uniform(0, 2 * np.pi, m)
        s = sh[rng.choice(len(sh), m, p=w / w.sum())] * 2 / N
        P = fb_to_polar(bt[None] * np.exp(-1j * np.arange(grid.n_freq) * g[:, None, None]),
                        grid.Q)
        return P * np.exp(-1j * (s[:, :1, None] * kx + s[:, 1:, None] * ky)) * grid.eta[:, None]

    V = []
    for bt in b:                        # equal counts per target: the mean is eq. 85's average
        d = draw(bt, 4000) - draw(bt, 4000)
        V.append(np.einsum("nrj,nsj->nrs", d.conj(), d).real / (2 * grid.Q))
    assert _mc_check(np.concatenate(V), C).all()


@pytest.fixture(scope="module")
def molecule_shells():
    rng = np.random.default_rng(3)
    n = 6
    mol = GaussianMolecule(rng.uniform(-0.3, 0.3, (n, 3)), rng.uniform(0.07, 0.1, n),
                           rng.uniform(0.5, 1.5, n))
    grid = PolarGrid(K=8)
    sg = ShellGrid(K=grid.K, R=1, L=14)
    ct = sg.cos_theta[:, None]
    st = np.sqrt(1 - ct ** 2)
    dirs = np.stack([st * np.cos(sg.phi), st * np.sin(sg.phi), ct * np.ones(sg.n_phi)], -1)
    shells = sht(mol.fourier(grid.k[:, None, None, None] * dirs[None]), sg)   # closed form
    return mol, grid, shells


def test_map_shells_match_the_closed_form(molecule_shells):
    mol, grid, shells = molecule_shells
    got = map_shells(mol.volume(N), grid, L=14)
    # sampling a Gaussian of width ≥ 1.1 px: aliasing below 1e-8 of the coefficients
    assert np.abs(got - shells).max() <= 1e-8 * np.abs(shells).max()


def test_gaussian_kernel_matches_monte_carlo_and_rejects_the_I0_form(molecule_shells):
    """Eq. 119: 4π·½ E (1/Q) Σ_j d d^H with d = η[T_δ B_R − T_δ' B_R'], R, R' uniform on SO(3)
    (the in-plane γ is part of R), δ ~ N(0, σ² I).  The printed E⁺ (eq. 120) is the average
    of e^{i(k−k')ê·δ} for two frequencies on ONE ray: it passes; the uniform-relative-angle
    form exp(−σ²(k²+k'²)/2)·I0(kk'σ²) fails by far."""
    mol, grid, shells = molecule_shells
    rng = np.random.default_rng(4)
    sigma_px = 1.5
    sigma = sigma_px * 2 / N
    C = gaussian_shift_kernel(shells, grid, sigma_px, N)
    kx, ky = grid.points()

    def draw(m):
        R = random_rotations(m, rng)
        k3 = kx[None, ..., None] * R[:, None, None, :, 0] + ky[None, ..., None] * R[:, None, None, :, 1]
        d = rng.normal(0.0, sigma, (m, 2))
        return (mol.fourier(k3) * np.exp(-1j * (d[:, :1, None] * kx + d[:, 1:, None] * ky))
                * grid.eta[:, None])

    d = draw(12000) - draw(12000)
    V = 4 * np.pi * np.einsum("nrj,nsj->nrs", d.conj(), d).real / (2 * grid.Q)
    assert _mc_check(V, C).all()
    k = grid.k
    kk = np.outer(k, k) * sigma ** 2
    E_i0 = np.exp(-0.5 * sigma ** 2 * np.subtract.outer(k, k) ** 2) * i0e(kk)
    mult = np.where(ShellGrid(K=grid.K, R=1, L=14).orders == 0, 1.0, 2.0)
    gram = ((shells.conj() * mult) @ shells.T).real
    Em = gaussian_E_minus(k, sigma)
    C_i0 = (gram * E_i0 - np.outer(shells[:, 0].conj() * Em, shells[:, 0] * Em).real) \
        * np.outer(grid.eta, grid.eta)
    assert not _mc_check(V, C_i0).all()
    # eq. 121 as printed (Bessel functions) is exp(−σ²k²/2)
    from scipy.special import iv
    kt = k * sigma / 2
    printed = kt * np.sqrt(np.pi / 2) * np.exp(-kt ** 2) * (iv(-0.5, kt ** 2) - iv(0.5, kt ** 2))
    assert np.allclose(Em[1:], printed[1:] if k[0] > 0 else printed, rtol=1e-12)
    assert np.allclose(gaussian_E_plus(k, k, sigma),
                       np.exp(-sigma ** 2 * np.add.outer(k ** 2, k ** 2) / 2) * np.exp(kk))


def test_gaussian_kernel_small_sigma_keeps_degrees_l_ge_1(molecule_shells):
    """σ → 0: E± → 1 and eq. 119 is Σ_{l≥1} B_l^m† B_l^m — the templates' pooled kernel
    (Gram over all q minus the outer product of the mean q = 0 ring) over a sphere rule."""
    mol, grid, shells = molecule_shells
    C0 = gaussian_shift_kernel(shells, grid, 0.0, N)
    Cs = gaussian_shift_kernel(shells, grid, 1e-7, N)
    assert np.abs(Cs - C0).max() <= 1e-10 * np.abs(C0).max()
    sg = ShellGrid(K=grid.K, R=1, L=14)
    deg = sg.degrees
    mult = np.where(sg.orders == 0, 1.0, 2.0) * (deg >= 1)
    ref = ((shells.conj() * mult) @ shells.T).real * np.outer(grid.eta, grid.eta)
    assert np.abs(C0 - ref).max() <= 1e-12 * np.abs(ref).max()
    # templates at every node of a sphere rule × in-plane angles: the exact SO(3) average
    ct, wt = np.polynomial.legendre.leggauss(16)
    rots, wts = [], []
    from radsvd.data.rotations import euler_to_rotation
    for c, wc in zip(ct, wt):
        for phi in 2 * np.pi * np.arange(34) / 34:
            rots.append(euler_to_rotation(phi, np.arccos(c), 0.0, degrees=False))
            wts.append(wc / 34 / 2)
    rots = np.array(rots)
    kx, ky = grid.points()
    k3 = kx[None, ..., None] * rots[:, None, None, :, 0] + ky[None, ..., None] * rots[:, None, None, :, 1]
    tb = to_fb(mol.fourier(k3)) * grid.eta[None, :, None]
    wts = np.array(wts)
    mq = np.full(grid.n_freq, 2.0)
    mq[0] = mq[-1] = 1.0
    gram = np.einsum("n,nrq,nsq,q->rs", wts, tb.conj(), tb, mq).real
    mean0 = np.einsum("n,nr->r", wts, tb[:, :, 0])
    pooled = 4 * np.pi * (gram - np.outer(mean0.conj(), mean0).real)
    assert np.abs(pooled - C0).max() <= 1e-8 * np.abs(C0).max()


def test_methods_dispatch_and_aliases(data, molecule_shells):
    grid, _, _, fb = data
    a = make_basis("radial-svd", grid, fb)
    with pytest.raises(InputError, match="did you mean 'radial-svd'"):
        make_basis("radial_svd", grid, fb)
    assert a.method == "radial-svd"
    s = make_basis("shift-svd", grid, fb, shifts=shift_grid(2, 1), box=N)
    assert s.method == "shift-svd" and not np.allclose(np.abs(s.vectors), np.abs(a.vectors))
    mol, g8, shells = molecule_shells
    gs = make_basis("gaussian-shift-svd", g8, shells=shells, sigma=1.0, box=N)
    assert gs.method == "gaussian-shift-svd"
    with pytest.raises(InputError, match="needs shifts"):
        make_basis("shift-svd", grid, fb)
    with pytest.raises(InputError, match="unknown method"):
        canonical_method("svd")


def test_ring_mean_of_phases_by_jacobi_anger():
    """Σ_s w_s J0(dk|δ_s|) equals the explicit mean over the Q grid angles (x ≤ Q/4), and
    beyond that bound the explicit mean is used."""
    from radsvd.images.shifts import _ring_mean_phase

    grid = PolarGrid(K=16)
    d = shift_grid(4, 1) * 2 / 32
    w = np.random.default_rng(0).random(len(d))
    w /= w.sum()
    dk = np.subtract.outer(grid.k, grid.k)
    proj = d @ np.stack([np.cos(grid.psi), np.sin(grid.psi)])
    explicit = np.einsum("s,rts->rt", w, np.cos(dk[..., None, None] * proj).mean(axis=-1))
    assert np.abs(dk).max() * np.hypot(*d.T).max() <= grid.Q / 4
    assert np.allclose(_ring_mean_phase(dk, d, w, grid), explicit, rtol=0, atol=1e-14)
    far = 40 * dk
    ex_far = np.einsum("s,rts->rt", w, np.cos(far[..., None, None] * proj).mean(axis=-1))
    assert np.allclose(_ring_mean_phase(far, d, w, grid), ex_far, rtol=0, atol=1e-14)
