import numpy as np
import pytest

import img_helpers as hb
from radsvd import InputError, PolarGrid
from radsvd.images import (energy_pca, frequency_marching, images_to_fb, landscape_tiles,
                           landscapes, radial_kernel, radial_svd, rank_sweep, to_polar)
from radsvd.metrics import LandscapeMetrics, sweep


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(21)
    N, grid = 32, PolarGrid(K=14)
    ib = np.stack([hb.image(hb.random_blobs(rng, 4), N) for _ in range(9)])
    ia = np.stack([hb.image(hb.random_blobs(rng, 4), N) for _ in range(6)])
    ia += 0.3 * rng.standard_normal(ia.shape)
    return dict(grid=grid, ia=ia, ib=ib, fa=images_to_fb(ia, grid), fb=images_to_fb(ib, grid))


def naive_kernel(polar, grid, skip_zero=True):
    """eq. 83/85 from the full periodic FFT spectrum (all Q frequencies, no symmetry used)."""
    full = np.fft.fft(polar, axis=-1) / grid.Q          # a(k_r, q), q periodic
    bt = full * grid.eta[None, :, None]
    qs = range(1, grid.Q) if skip_zero else range(grid.Q)
    C = sum(np.einsum("nr,ns->rs", bt[:, :, q].conj(), bt[:, :, q]) for q in qs)
    assert np.max(np.abs(C.imag)) < 1e-12 * np.max(np.abs(C))
    return C.real / polar.shape[0]


def test_radial_kernel_matches_eq83_naive(data):
    g = data["grid"]
    C = radial_kernel(data["fb"], g)
    ref = naive_kernel(to_polar(data["ib"], g), g)
    assert np.max(np.abs(C - ref)) <= 1e-12 * np.max(np.abs(ref))


def test_ctf_group_kernel(data):
    g = data["grid"]
    rng = np.random.default_rng(2)
    ctf = np.cos(rng.uniform(0.1, 0.4, (3, 1)) * g.k[None, :] ** 1.5)
    n = np.array([5.0, 1.0, 2.0])
    C = radial_kernel(data["fb"], g, ctf=ctf, group_sizes=n)
    # independent: CTF applied to the target rings, kernel per group, weighted average
    p = to_polar(data["ib"], g)
    ref = sum(n[c] * naive_kernel(p * ctf[c][None, :, None], g) for c in range(3)) / n.sum()
    assert np.max(np.abs(C - ref)) <= 1e-12 * np.max(np.abs(ref))
    with pytest.raises(InputError, match="ctf"):
        radial_kernel(data["fb"], g, ctf=np.ones((2, g.R + 1)))
    with pytest.raises(InputError, match="group_sizes"):
        radial_kernel(data["fb"], g, ctf=ctf, group_sizes=[1.0, 2.0])


def test_bases_orthonormal_and_ordered(data):
    g = data["grid"]
    for b in (radial_svd(data["fb"], g), energy_pca(data["fb"], g), frequency_marching(g)):
        V = b.vectors
        assert np.allclose(V.T @ V, np.eye(g.R), atol=1e-12)
        assert np.all(np.diff(b.values) <= 1e-12 * np.max(np.abs(b.values)))
    svd = radial_svd(data["fb"], g)
    C = radial_kernel(data["fb"], g)
    assert np.allclose(C @ svd.vectors, svd.vectors * svd.values, atol=1e-10 * svd.values[0])


def test_energy_pca_includes_q0(data):
    g = data["grid"]
    pca = energy_pca(data["fb"], g)
    ref = naive_kernel(to_polar(data["ib"], g), g, skip_zero=False)
    w, V = np.linalg.eigh(ref)
    assert np.allclose(pca.values, w[::-1], rtol=1e-10, atol=1e-12 * w.max())


def test_frequency_marching_keeps_lowest_rings(data):
    g = data["grid"]
    fm = frequency_marching(g)
    c = fm.compress(data["fb"], 4)
    assert np.allclose(c, data["fb"][:, :4] * g.eta[None, :4, None], rtol=0, atol=0)
    assert np.all(np.diff(g.k) > 0)


def test_compress_rank_errors(data):
    g = data["grid"]
    b = radial_svd(data["fb"], g)
    for H in (0, g.R + 1, -1):
        with pytest.raises(InputError, match="out of range"):
            b.compress(data["fb"], H)
    with pytest.raises(InputError, match="shape"):
        radial_svd(data["fb"][:, :3], g)


# ------------------------------------------------------------------------- metrics
def test_metrics_streaming_equal_naive():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((40, 16)) + 3.0
    XH = X + 0.3 * rng.standard_normal(X.shape)
    XH[5] = X[5]                                   # exact pair: f_pair = 1
    ref = hb.naive_metrics(X, XH)
    m = LandscapeMetrics()
    for a, b in ((0, 7), (7, 8), (8, 31), (31, 40)):   # uneven tiles
        m.update(X[a:b], XH[a:b])
    r = m.result()
    # float64 sums of 640 O(1) numbers: agreement to ~1e-14 relative
    assert r["rel_frobenius"] == pytest.approx(ref[0], rel=1e-12)
    assert r["correlation"] == pytest.approx(ref[1], rel=1e-12)
    assert r["f"] == pytest.approx(ref[2], rel=1e-12)
    assert r["n_pairs"] == 40
    out = sweep(iter([(X[:20], [XH[:20], X[:20]]), (X[20:], [XH[20:], X[20:]])]))
    assert out[0]["f"] == pytest.approx(ref[2], rel=1e-12)
    assert out[1]["rel_frobenius"] == 0.0 and out[1]["f"] == 1.0
    assert out[1]["correlation"] == pytest.approx(1.0, rel=1e-14)


def test_metrics_shards_merge_to_the_whole():
    """Shards accumulated separately, saved as state vectors and merged = one stream."""
    rng = np.random.default_rng(5)
    X = rng.standard_normal((30, 12)) - 2.0
    XH = 0.5 * X + 0.4 * rng.standard_normal(X.shape)
    ref = hb.naive_metrics(X, XH)
    shards = [LandscapeMetrics().update(X[a:b], XH[a:b]) for a, b in ((0, 4), (4, 19), (19, 30))]
    merged = LandscapeMetrics()
    for s in shards:
        merged.merge(LandscapeMetrics.from_state(s.state()))
    r = merged.result()
    assert r["n_pairs"] == 30
    # same float64 sums as the naive whole-array formulas, up to summation order (~1e-14)
    assert r["rel_frobenius"] == pytest.approx(ref[0], rel=1e-12)
    assert r["correlation"] == pytest.approx(ref[1], rel=1e-12)
    assert r["f"] == pytest.approx(ref[2], rel=1e-12)
    with pytest.raises(InputError, match="state"):
        LandscapeMetrics.from_state(np.zeros(3))


def test_metrics_errors():
    with pytest.raises(InputError, match="shape"):
        LandscapeMetrics().update(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(InputError, match="NaN"):
        LandscapeMetrics().update(np.full((1, 3), np.nan), np.zeros((1, 3)))
    with pytest.raises(InputError, match="no landscapes"):
        LandscapeMetrics().result()
    with pytest.raises(InputError, match="empty"):
        sweep(iter([]))


def test_rank_sweep_equals_naive_on_whole_arrays(data):
    g = data["grid"]
    basis = radial_svd(data["fb"], g)
    ranks = [1, 3, g.R]
    res = rank_sweep(data["fa"], data["fb"], g, basis, ranks, tile=(4, 5))
    X = landscapes(data["fa"], data["fb"], g).reshape(-1, g.Q)
    for H in ranks:
        XH = landscapes(data["fa"], data["fb"], g, basis=basis, rank=H).reshape(-1, g.Q)
        rel, corr, f = hb.naive_metrics(X, XH)
        assert res[H]["rel_frobenius"] == pytest.approx(rel, rel=1e-10, abs=1e-13)
        assert res[H]["correlation"] == pytest.approx(corr, rel=1e-12)
        assert res[H]["f"] == pytest.approx(f, rel=1e-12)
    assert res[g.R]["rel_frobenius"] < 1e-13 and res[g.R]["f"] == 1.0


def test_single_precision_leaves_f_and_correlation_unchanged(data):
    """The float32 compressed path (default for H < R) moves f and the correlation < 1e-4."""
    g = data["grid"]
    basis = radial_svd(data["fb"], g)
    ranks = [2, 4, 6]
    d = rank_sweep(data["fa"], data["fb"], g, basis, ranks, precision="double")
    s = rank_sweep(data["fa"], data["fb"], g, basis, ranks, precision="single")
    for H in ranks:
        assert abs(d[H]["f"] - s[H]["f"]) <= 1e-4
        assert abs(d[H]["correlation"] - s[H]["correlation"]) <= 1e-4


def test_landscape_tiles_cover_all_pairs(data):
    g = data["grid"]
    seen = np.zeros((6, 9), int)
    X = landscapes(data["fa"], data["fb"], g)
    for a0, a1, b0, b1, Xs in landscape_tiles(data["fa"], data["fb"], g, tile=(4, 5)):
        seen[a0:a1, b0:b1] += 1
        assert np.max(np.abs(Xs[0] - X[a0:a1, b0:b1].reshape(-1, g.Q))) < 1e-13 * np.abs(X).max()
    assert np.all(seen == 1)


def test_all_finite_helper():
    from radsvd._validate import all_finite

    x = np.full((3, 4), 1e308)          # finite, but the sum overflows
    assert all_finite(x)
    for bad in (np.nan, np.inf, -np.inf):
        y = np.zeros((2, 3), complex)
        y[1, 2] = complex(0, bad)
        assert not all_finite(y)
    with pytest.raises(InputError, match="NaN"):
        radial_svd(np.full((1, 15, 16), np.nan, complex), PolarGrid(K=14))
