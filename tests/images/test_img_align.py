import numpy as np
import pytest

import img_helpers as hb
from radsvd import InputError, PolarGrid
from radsvd._jit import threads
from radsvd.images import (align_images, energy_pca, frequency_marching, images_to_fb,
                           landscapes, radial_svd, to_polar)


@pytest.fixture(scope="module")
def case():
    rng = np.random.default_rng(3)
    N, grid = 32, PolarGrid(K=14)
    A = [hb.random_blobs(rng, 4) for _ in range(5)]
    B = [hb.random_blobs(rng, 4) for _ in range(7)]
    ia = np.stack([hb.image(b, N) for b in A]) + 0.05 * rng.standard_normal((5, N, N))
    ib = np.stack([hb.image(b, N) for b in B])
    return dict(grid=grid, N=N, A=A, B=B, ia=ia, ib=ib,
                fa=images_to_fb(ia, grid), fb=images_to_fb(ib, grid))


def test_landscape_equals_bruteforce_sum_over_psi(case):
    g = case["grid"]
    X = landscapes(case["fa"], case["fb"], g)
    ref = hb.naive_landscape_polar(to_polar(case["ia"], g), to_polar(case["ib"], g), g)
    # same quadrature, different algebra (FFT/GEMM vs rolled sums): rounding only
    assert np.max(np.abs(X - ref)) <= 1e-12 * np.max(np.abs(ref))


def test_landscape_equals_closed_form_rotation_of_target(case):
    """X(γ_m) against the quadrature of <Â, R_γ B̂> with B̂ evaluated in closed form at the
    rotated points R_{-γ} k (no FB coefficients, no FFT)."""
    g, N = case["grid"], 48
    rng = np.random.default_rng(5)
    # blobs ≥ 6.5 σ from the box edge (truncation e^-21) and σ ≥ 0.06 (aliasing e^-33)
    blobs_a = [hb.random_blobs(rng, 3, rmax=0.3, smin=0.06, smax=0.1) for _ in range(2)]
    blobs_b = [hb.random_blobs(rng, 3, rmax=0.3, smin=0.06, smax=0.1) for _ in range(3)]
    ia = np.stack([hb.image(b, N) for b in blobs_a])
    X = landscapes(images_to_fb(ia, g), images_to_fb(np.stack([hb.image(b, N) for b in blobs_b]), g), g)
    kx, ky = g.points()
    ref = np.empty_like(X)
    for i, ba in enumerate(blobs_a):
        Ahat = hb.fourier(ba, kx, ky)
        for j, bb in enumerate(blobs_b):
            for m, gam in enumerate(g.gamma):
                c, s = np.cos(gam), np.sin(gam)
                Bhat = hb.fourier(bb, c * kx + s * ky, -s * kx + c * ky)  # B̂(R_{-γ} k)
                ref[i, j, m] = np.sum(g.w[:, None] * g.dpsi * np.conj(Ahat) * Bhat).real
    # pixel sums vs continuous FT differ by ~1e-9 relative (see above and test_img_polar)
    assert np.max(np.abs(X - ref)) <= 1e-8 * np.max(np.abs(ref))


def test_rotation_recovered_grid_and_refined():
    rng = np.random.default_rng(7)
    N, grid = 48, PolarGrid(K=24)
    blobs = [hb.random_blobs(rng, 5) for _ in range(4)]
    targets = np.stack([hb.image(b, N) for b in blobs])
    gammas = np.array([0.4, 2.0, 3.7, 5.9])
    order = np.array([2, 0, 3, 1])
    images = np.stack([hb.image(hb.rotate_blobs(blobs[t], g0), N) for t, g0 in zip(order, gammas)])
    fa, fb = images_to_fb(images, grid), images_to_fb(targets, grid)
    dg = 2 * np.pi / grid.Q
    err = lambda a: np.abs(np.angle(np.exp(1j * (a - gammas))))
    r = align_images(fa, fb, grid)
    assert np.array_equal(r.best_target, order)
    assert np.all(err(r.angle) <= dg / 2 + 1e-12)
    rr = align_images(fa, fb, grid, refine=True)
    assert np.array_equal(rr.best_target, order)
    # off-grid maximum of the trigonometric polynomial: limited only by the band limit K
    assert np.all(err(rr.angle) < 1e-3 * dg)
    assert np.all(rr.score >= r.score)


def test_rotation_recovered_from_interpolated_real_space_rotation():
    """A smooth random image rotated by spline interpolation about pixel N//2."""
    from scipy.ndimage import affine_transform, gaussian_filter

    rng = np.random.default_rng(11)
    N, grid = 64, PolarGrid(K=20)
    x = (np.arange(N) - N // 2) * (2.0 / N)
    mask = (x[:, None] ** 2 + x[None, :] ** 2) < 0.6
    tgt = gaussian_filter(rng.standard_normal((N, N)), 2.5) * mask
    out = []
    gammas = [0.9, 4.1]
    for gam in gammas:
        c, s = np.cos(gam), np.sin(gam)
        # out[o] = in[M o + off]: sample the target at R_{-γ}(x - c) + c in (iy, ix) order
        M = np.array([[c, -s], [s, c]])
        ctr = np.array([N // 2, N // 2], float)
        out.append(affine_transform(tgt, M, offset=ctr - M @ ctr, order=3))
    fa = images_to_fb(np.stack(out), grid)
    fb = images_to_fb(tgt, grid)
    dg = 2 * np.pi / grid.Q
    r = align_images(fa, fb, grid)
    rr = align_images(fa, fb, grid, refine=True)
    e0 = np.abs(np.angle(np.exp(1j * (r.angle - gammas))))
    e1 = np.abs(np.angle(np.exp(1j * (rr.angle - gammas))))
    assert np.all(e0 <= dg / 2 + 1e-12)
    # spline interpolation errors limit the refined estimate; still well inside a grid step
    assert np.all(e1 < 0.1 * dg)


@pytest.mark.parametrize("make", ["svd", "fm", "pca"])
def test_full_rank_equals_full(case, make):
    g = case["grid"]
    basis = dict(svd=lambda: radial_svd(case["fb"], g), fm=lambda: frequency_marching(g),
                 pca=lambda: energy_pca(case["fb"], g))[make]()
    X = landscapes(case["fa"], case["fb"], g)
    XR = landscapes(case["fa"], case["fb"], g, basis=basis, rank=g.R)
    # orthonormal U: Σ_h ã_h b̃_h = Σ_r η_r² a_r b_r up to rounding (a few ulps × R)
    assert np.max(np.abs(XR - X)) <= 1e-13 * np.max(np.abs(X))


def test_compressed_landscape_equals_eq84_directly(case):
    g = case["grid"]
    basis = radial_svd(case["fb"], g)
    H = 3
    XH = landscapes(case["fa"], case["fb"], g, basis=basis, rank=H)
    ca, cb = basis.compress(case["fa"], H), basis.compress(case["fb"], H)
    # full q spectrum from the symmetry, then eq. 84 with an explicit complex exponential sum
    def full(c):
        Q = g.Q
        f = np.zeros(c.shape[:-1] + (Q,), complex)
        f[..., : Q // 2 + 1] = c
        for q in range(1, Q // 2):
            f[..., Q - q] = (-1) ** q * np.conj(c[..., q])
        return f
    fa, fbb = full(ca), full(cb)
    q = np.fft.fftfreq(g.Q, 1.0 / g.Q)
    E = np.exp(-1j * np.outer(g.gamma, q))        # (γ, q)
    ref = (2 * np.pi / g.dpsi) * np.einsum("mq,ahq,bhq->abm", E, fa.conj(), fbb).real
    assert np.max(np.abs(XH - ref)) <= 1e-12 * np.max(np.abs(ref))


def test_streaming_equals_whole_array_any_tile(case):
    g = case["grid"]
    X = landscapes(case["fa"], case["fb"], g)
    ref_val, ref_idx = X.max(-1), X.argmax(-1)
    results = [align_images(case["fa"], case["fb"], g, all_pairs=True, tile=t, sub=s)
               for t, s in (((2, 3), 4), ((5, 7), 1024), ((1, 1), 1))]
    for r in results:
        assert np.array_equal(r.angles, ref_idx * g.dpsi)
        assert np.max(np.abs(r.scores - ref_val)) <= 1e-13 * np.max(np.abs(ref_val))
        assert np.array_equal(r.best_target, np.argmax(ref_val, axis=1))
    # per-image reduction over tiles equals the all-pairs one (same tile: identical bits)
    r1 = align_images(case["fa"], case["fb"], g, tile=(2, 3), sub=4)
    assert np.array_equal(r1.score, results[0].score)
    assert np.array_equal(r1.score, results[0].scores.max(axis=1))


def test_thread_count_determinism(case):
    g = case["grid"]
    basis = radial_svd(case["fb"], g)
    out = {}
    for n in (1, 2):
        with threads(n):
            out[n] = [align_images(case["fa"], case["fb"], g, all_pairs=True, tile=(2, 3)),
                      align_images(case["fa"], case["fb"], g, basis=basis, rank=4,
                                   refine=True, tile=(2, 3))]
    for a, b in zip(out[1], out[2]):
        for k in ("best_target", "angle", "score"):
            assert np.array_equal(getattr(a, k), getattr(b, k))
    assert np.array_equal(out[1][0].scores, out[2][0].scores)


def test_single_precision_compressed_path_close_to_double(case):
    g = case["grid"]
    basis = radial_svd(case["fb"], g)
    d = landscapes(case["fa"], case["fb"], g, basis=basis, rank=5, precision="double")
    s = landscapes(case["fa"], case["fb"], g, basis=basis, rank=5, precision="single")
    # float32 GEMMs over ≤ 2·(Q/2+1)·H terms: relative error ≲ 1e-6 of the largest value
    assert np.max(np.abs(s - d)) <= 1e-5 * np.max(np.abs(d))


@pytest.mark.parametrize("kw, match", [
    (dict(rank=0), "out of range"),
    (dict(rank=99), "out of range"),
    (dict(rank=2.5), "integer"),
    (dict(precision="half"), "precision"),
    (dict(tile=(0, 4)), "tile"),
])
def test_bad_rank_and_options(case, kw, match):
    g = case["grid"]
    basis = radial_svd(case["fb"], g)
    with pytest.raises(InputError, match=match):
        align_images(case["fa"], case["fb"], g, basis=basis, **kw)


def test_bad_coefficients(case):
    g = case["grid"]
    fa = case["fa"].copy()
    fa[1, 2, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        align_images(fa, case["fb"], g)
    with pytest.raises(InputError, match="shape"):
        align_images(case["fa"][:, :-1], case["fb"], g)
    with pytest.raises(InputError, match="empty"):
        align_images(case["fa"][:0], case["fb"], g)
    with pytest.raises(InputError, match="needs a basis"):
        align_images(case["fa"], case["fb"], g, rank=3)
    with pytest.raises(InputError, match="another grid"):
        align_images(case["fa"], case["fb"], g, basis=frequency_marching(PolarGrid(K=10)), rank=2)
    with pytest.raises(InputError, match="GiB"):
        landscapes(case["fa"], case["fb"], g, max_bytes=10)


def test_all_pairs_refined(case):
    g = case["grid"]
    r0 = align_images(case["fa"], case["fb"], g, all_pairs=True)
    r1 = align_images(case["fa"], case["fb"], g, all_pairs=True, refine=True, tile=(2, 3))
    dg = g.dpsi
    d = np.abs(np.angle(np.exp(1j * (r1.angles - r0.angles))))
    assert np.all(d <= dg + 1e-12)             # refinement stays within one grid step
    assert np.all(r1.scores >= r0.scores - 1e-12 * np.abs(r0.scores).max())
    assert np.array_equal(r1.best_target, np.argmax(r1.scores, axis=1))
    rows = np.arange(len(r1.best_target))
    assert np.array_equal(r1.score, r1.scores[rows, r1.best_target])
    assert np.array_equal(r1.angle, r1.angles[rows, r1.best_target])
    # the refined maximum is a stationary point of the trigonometric polynomial (eq. 23)
    ca, cb = case["fa"] * g.eta[None, :, None], case["fb"] * g.eta[None, :, None]
    q = np.arange(g.n_freq)
    w = np.where((q == 0) | (q == g.Q // 2), 1.0, 2.0) * g.Q
    for i in range(2):
        for j in range(3):
            z = np.sum(ca[i].conj() * cb[j], axis=0)
            gam = r1.angles[i, j]
            dX = np.sum(w * q * (z.imag * np.cos(q * gam) - z.real * np.sin(q * gam)))
            scale = np.sum(w * q * np.abs(z))
            assert abs(dX) < 1e-9 * scale


@pytest.mark.parametrize("Q", [2, 4, 6, 8, 10, 98, 100])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reduction_kernel_first_argmax_against_numpy(Q, dtype):
    """The quarter-DFT reduction equals max/argmax (first maximum) of the assembled landscape,
    including exact ties (integer-valued landscapes)."""
    from radsvd.images import _kernels as kernels

    rng = np.random.default_rng(Q)
    J = Q // 2
    Jh1 = J // 2 + 1
    P = 301
    arrs = [rng.integers(-2, 3, (Jh1, P)).astype(dtype) for _ in range(4)]
    arrs[1][0] = 0  # sin(0) = 0 rows, as in the engine's tables
    arrs[3][0] = 0
    if J % 2 == 0:  # at γ = π/2: sin(qπ/2) = 0 for even q, cos(qπ/2) = 0 for odd q
        arrs[1][-1] = 0
        arrs[2][-1] = 0
    X = np.empty((P, Q), dtype)
    kernels._assemble4(*arrs, J, X)
    val = np.empty(P, dtype)
    idx = np.empty(P, np.int64)
    kernels._best4(*arrs, J, val, idx)
    assert np.array_equal(idx, np.argmax(X, axis=1))
    assert np.array_equal(val, X.max(axis=1))
