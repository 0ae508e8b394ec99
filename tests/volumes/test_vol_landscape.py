"""SO(3) landscapes: brute force at grid points, both step-3 transforms, compression at full
rank, recovery of known rotations, thread determinism, streaming metrics."""

import numpy as np
import pytest
import vol_helpers as hv

from radsvd import threads
from radsvd.data.molecules import GaussianMolecule
from radsvd.volumes import (ShellGrid, align_volume_maps, align_volumes, landscapes, prepare,
                            rank_sweep, rotate, rotation_matrix, volume_svd)
from radsvd._validate import InputError
from radsvd.volumes.shells import coefficient_norms

EPS = np.finfo(float).eps


def _brute(a, b, grid, tau):
    """<Â, R_τ B̂> = Σ_r w_r Σ_{l,|m|≤l} conj(A) (R_τ B) (eq. 98), by rotating B (eq. 97)."""
    rb = rotate(b, grid, tau)
    mult = np.where(grid.orders == 0, 1.0, 2.0)
    return float(np.real(np.einsum("rj,rj,r,j->", a.conj(), rb, grid.w, mult)))


@pytest.mark.parametrize("M,n_beta", [(None, None), (16, 9), (15, 12)])
def test_landscape_equals_brute_force(M, n_beta):
    grid = ShellGrid(K=6, R=4, L=6)
    A, B = hv.coefficients(grid, 2, 0), hv.coefficients(grid, 1, 1)
    plan = prepare(grid, B, n_beta=n_beta, M=M)
    X = plan(A)
    assert X.shape == (2, plan.n_beta, plan.M, plan.M)
    rng = np.random.default_rng(2)
    scale = np.sqrt(coefficient_norms(A, grid).max() * coefficient_norms(B, grid)[0])
    points = [(1, b, 3, 2) for b in range(plan.n_beta)]           # every β (mirrors, 0, -π)
    points += [tuple(rng.integers(s) for s in X.shape) for _ in range(12)]
    for a, b, i, j in points:
        tau = (plan.gammas[j], plan.betas[b], plan.alphas[i])
        # Cauchy–Schwarz bounds |X| by the norms; rounding is O(n_terms ε) of that
        assert abs(X[a, b, i, j] - _brute(A[a], B[0], grid, tau)) < 1e4 * EPS * scale


def test_even_and_odd_M_agree():
    grid = ShellGrid(K=5, R=3, L=5)
    A, B = hv.coefficients(grid, 2, 3), hv.coefficients(grid, 1, 4)
    even = prepare(grid, B, M=12)    # mirrored β by the half-period shift, distinct β only
    odd = prepare(grid, B, M=13)     # every β transformed, the sign (-1)^{m1-m2} folded in
    assert (even.n_slices, odd.n_slices) == (even.wigner.betas.size, odd.n_beta)
    Xe, Xo = even(A), odd(A)
    # both sample the same degree-L trigonometric polynomial: compare at the common point α = γ = 0
    np.testing.assert_allclose(Xe[:, :, 0, 0], Xo[:, :, 0, 0], rtol=1e-12,
                               atol=1e-12 * np.abs(Xe).max())


def test_default_M_is_even_and_fft_friendly():
    from radsvd.volumes.landscape.layout import default_M, largest_prime_factor

    assert default_M(48) == 98 and default_M(5) == 12 and default_M(10) == 24
    for L in range(1, 80):
        M = default_M(L)
        assert M % 2 == 0 and M >= 2 * L + 1 and largest_prime_factor(M) <= 7
        assert not any(m % 2 == 0 and largest_prime_factor(m) <= 7 for m in range(2 * L + 1, M))


@pytest.mark.parametrize("M", [12, 13])
def test_best_picks_first_maximiser_of_whole_landscape(M):
    """best() on the step-3 slices equals np.argmax over the expanded landscape, also with
    exact ties planted in a mirrored slice (whose first occurrence moves under the shift)."""
    grid = ShellGrid(K=5, R=3, L=5)
    plan = prepare(grid, hv.coefficients(grid, 1, 20), n_beta=12, M=M)
    rng = np.random.default_rng(21)
    S = rng.standard_normal((4, plan.n_slices, M, M))
    # volume 1: ties inside one slice; volume 2: ties across slices; volume 3: all equal
    top = S.max() + 1.0
    S[1, 2, 0, 0] = S[1, 2, M - 1, M - 1] = S[1, 2, 3, 4] = top
    S[2, 0, 5, 1] = S[2, plan.n_slices - 1, 1, 5] = top
    S[3] = 0.0
    for s in range(plan.n_slices):     # every slice in turn holds two ties
        S[0] = rng.standard_normal(S[0].shape)
        S[0, s, 1, M - 2] = S[0, s, M - 2, 1] = top
        b, i, j, score = plan.best(S)
        X = plan.expand(S).reshape(4, -1)
        k = np.argmax(X, axis=1)
        np.testing.assert_array_equal(np.ravel_multi_index((b, i, j), (plan.n_beta, M, M)), k)
        np.testing.assert_array_equal(score, X[np.arange(4), k])


def _second_best_gap(X):
    """Per volume: the maximum minus the largest value elsewhere (flattened step-3 slices:
    mirrored β of even M would repeat every value)."""
    k = np.argmax(X, axis=1)
    Y = X.copy()
    Y[np.arange(X.shape[0]), k] = -np.inf
    return X.max(axis=1) - Y.max(axis=1)


def _rounding(plan, norms):
    """Largest difference two computations of one step-3 value can show: each is within
    margin_2d · l1 of the exact value (l1: the slice's norm, at most the largest one)."""
    return 2.0 * plan.margins.two_passes * norms.sum(axis=2).max(axis=1)


@pytest.mark.parametrize("M", [12, 13])
def test_fused_step3_best_equals_argmax_of_landscape(M):
    """step3_best without row norms (every slice, the calls of step3) gives the argmax of
    the whole landscape bit for bit, for the full and a compressed plan, 1 or 2 threads;
    the pruned search (best_rotations) gives it to the rounding of step 3; both apply the
    tie rule on planted ties."""
    grid = ShellGrid(K=5, R=4, L=5)
    A, B = hv.coefficients(grid, 5, 22), hv.coefficients(grid, 1, 23)
    basis = volume_svd(B, grid)
    for plan in (prepare(grid, B, n_beta=12, M=M),
                 prepare(grid, B, basis, rank=(2, 3), n_beta=12, M=M)):
        for n, chunk in ((1, plan.n_slices), (2, plan.n_slices), (2, 1), (1, 2)):
            plan.fft_chunk = chunk             # slices per step-3 call (both paths)
            X = plan(A).reshape(A.shape[0], -1)
            k = np.argmax(X, axis=1)
            with threads(n):
                b, i, j, score = plan.step3_best(plan.spectra(A))
                got = plan.best_rotations(A)
            np.testing.assert_array_equal(
                np.ravel_multi_index((b, i, j), (plan.n_beta, M, M)), k)
            np.testing.assert_array_equal(score, X[np.arange(A.shape[0]), k])
            norms = np.empty((A.shape[0], plan.table.shape[1], plan.L + 1))
            plan.spectra(A, norms)
            tol = _rounding(plan, norms)
            gap = _second_best_gap(plan.slices(A).reshape(A.shape[0], -1))
            assert np.all(gap > 2 * tol)                   # no near-ties in this data
            np.testing.assert_array_equal(
                np.ravel_multi_index(got[:3], (plan.n_beta, M, M)), k)
            assert np.all(np.abs(got[3] - score) <= tol)
    # ties: a half-spectrum whose transform is constant (only m1 = m2 = 0) makes every grid
    # point a maximiser; the first one is (b, i, j) = (0, 0, 0), whichever slice holds it
    Xc = np.zeros((3, plan.wigner.betas.size, M // 2 + 1, M), dtype=plan.complex_dtype)
    Xc[:, :, 0, 0] = 1.0
    norms = np.zeros((3, Xc.shape[1], plan.L + 1))
    norms[:, :, 0] = 1.0
    ref = plan.best(plan.step3(Xc.copy()))
    assert np.all(ref[0] == 0) and np.all(ref[1] == 0) and np.all(ref[2] == 0)
    for n, chunk in ((1, 3), (2, 2), (2, 1)):
        plan.fft_chunk = chunk
        with threads(n):
            for nm in (None, norms):
                got = plan.step3_best(Xc.copy(), nm)
                for x, y in zip(got, ref):
                    np.testing.assert_array_equal(x, y)


def _peaked(grid, B, n, seed):
    """Randomly rotated copies of the target B plus 10% noise: one clear peak each."""
    rng = np.random.default_rng(seed)
    noise = 0.1 * np.sqrt(np.mean(np.abs(B) ** 2)) * hv.coefficients(grid, n, seed)
    return np.stack([rotate(B[0], grid, rng.uniform(-np.pi, np.pi, 3)) for _ in range(n)]) + noise


@pytest.mark.parametrize("M", [16, 17])
def test_pruned_search_skips_work_and_finds_the_maximum(M):
    """Branch and bound in step3_best skips most of step 3 on peaked landscapes and finds
    the maximiser of the search over every slice, its score to the rounding of step 3
    (full and compressed plans, even and odd M); the same bits for 1 and 2 threads.
    best_rotations runs these steps; for compressed plans from L = HEAD_ONLY_MIN_L (here
    asked for by head_only=True) with step 2 of the first rows only."""
    from radsvd.volumes.landscape.tail import HEAD_ONLY_MIN_L

    grid = ShellGrid(K=8, R=5, L=7)
    B = hv.coefficients(grid, 1, 30)
    A = _peaked(grid, B, 9, 31)                        # 3 units of the pruned search
    basis = volume_svd(B, grid)
    head_only = prepare(grid, B, basis, rank=(3, 4), n_beta=16, M=M, head_only=True)
    for plan in (prepare(grid, B, n_beta=16, M=M),
                 prepare(grid, B, basis, rank=(3, 4), n_beta=16, M=M), head_only):
        plan.fft_chunk = 1
        norms = np.empty((A.shape[0], plan.table.shape[1], plan.L + 1))
        Xc = plan.spectra(A, norms)
        ref = plan.step3_best(Xc.copy())
        slices = A.shape[0] * plan.n_slices
        assert plan.step3_calls == (slices * M, slices, slices)
        runs = []
        for n in (1, 2):
            with threads(n):
                runs.append(plan.step3_best(Xc.copy(), norms))
            columns, whole, total = plan.step3_calls
            assert total == slices and whole < slices / 2 and columns < slices * M / 10
        for x, y in zip(*runs):
            np.testing.assert_array_equal(x, y)
        for x, y in zip(runs[0][:3], ref[:3]):
            np.testing.assert_array_equal(x, y)
        assert np.all(np.abs(runs[0][3] - ref[3]) <= _rounding(plan, norms))
        got = plan.best_rotations(A)
        if plan is head_only:
            # step 2 forms the first rows only (bounds for the others): other calls, the
            # same maximisers, scores to the rounding of step 3; the same bits per thread
            # count as the explicit steps
            Z = plan.operands(plan.step1_project(plan.radial_compress(A)))
            head = []
            for n in (1, 2):
                with threads(n):
                    hn = np.empty_like(norms)
                    head.append(plan.step3_best(plan.step2(Z, hn, head_only=True).copy(), hn, Z))
            for x, y, z in zip(got, *head):
                np.testing.assert_array_equal(x, y)
                np.testing.assert_array_equal(x, z)
            for x, y in zip(got[:3], ref[:3]):
                np.testing.assert_array_equal(x, y)
            assert np.all(np.abs(got[3] - ref[3]) <= _rounding(plan, norms))
        else:
            for x, y in zip(got, runs[0]):
                np.testing.assert_array_equal(x, y)
    assert head_only.head_only
    grid32 = ShellGrid(K=5, R=2, L=HEAD_ONLY_MIN_L)
    B32 = hv.coefficients(grid32, 1, 32)
    small = prepare(grid, B, basis, rank=(3, 4), n_beta=16, M=M)
    large = prepare(grid32, B32, volume_svd(B32, grid32), rank=(2, 2), n_beta=4)
    assert not small.head_only and large.head_only


def test_column_bound_holds_and_is_attained():
    """_column_bounds (after the transform over m2) bounds every value of its slice, and
    equals the slice maximum when all coefficients are real and positive (at α = γ = 0);
    rows added in two calls give the same sums as in one."""
    from radsvd.volumes.landscape.search import _column_bounds
    from radsvd.volumes.landscape.transforms import transform_m2

    grid = ShellGrid(K=5, R=3, L=5)
    plan = prepare(grid, hv.coefficients(grid, 1, 40), n_beta=8, M=12)
    L, M, ns = plan.L, plan.M, plan.n_slices
    rng = np.random.default_rng(41)
    used = np.zeros((M // 2 + 1, M), dtype=bool)
    used[:L + 1, :L + 1] = used[:L + 1, M - L:] = True             # m1 ≤ L, |m2| ≤ L
    zero = np.zeros(ns)
    for positive in (False, True):
        Xc = rng.standard_normal((1, ns, M // 2 + 1, M)) + 0j
        if not positive:
            Xc = Xc + 1j * rng.standard_normal(Xc.shape)
        Xc = np.abs(Xc) if positive else Xc
        Xc = (Xc * used).astype(np.complex128)
        X = plan.step3(Xc.copy())[0].reshape(ns, -1)
        Y = Xc[0].copy()
        transform_m2(Y)
        bound, col = np.empty(ns), np.empty((ns, M))
        _column_bounds(Y, 0, L + 1, col, zero, bound)
        assert np.all(X.max(axis=1) <= bound * (1 + plan.margins.one_pass))
        split, col2 = np.empty(ns), np.empty((ns, M))
        _column_bounds(Y, 0, 2, col2, zero, split)
        _column_bounds(Y, 2, L + 1, col2, zero, split)
        np.testing.assert_allclose(split, bound, rtol=1e-15)
        if positive:
            np.testing.assert_allclose(X[:, 0], bound, rtol=1e-13)
            assert np.all(X.max(axis=1) == X[:, 0])


def test_step2_row_norms_bound_the_slices():
    """step2(Z, norms) returns the same spectra and fills the weighted l1 norm of every row
    m1 of every (Hermitian) spectrum: their sum bounds the slice, and so do the column
    norms of the rows m1 < row_split (after the pass over m2) plus the norms of the others
    (the bound of the pruned search); it is never below the full column bounds."""
    from radsvd.volumes.landscape.search import _column_bounds
    from radsvd.volumes.landscape.transforms import transform_m2

    grid = ShellGrid(K=6, R=4, L=6)
    A, B = hv.coefficients(grid, 3, 50), hv.coefficients(grid, 1, 51)
    basis = volume_svd(B, grid)
    for plan in (prepare(grid, B, n_beta=10, M=14), prepare(grid, B, n_beta=10, M=13),
                 prepare(grid, B, basis, rank=(2, 3), n_beta=10)):
        L, r = plan.L, plan.row_split
        assert 1 <= r <= L
        c = plan.radial_compress(A)
        Z = plan.step1_project(c) if plan.compressed else plan.step1(c)
        Xc = plan.step2(Z).copy()
        norms = np.full((3, Xc.shape[1], L + 1), np.nan)
        np.testing.assert_array_equal(plan.step2(Z, norms), Xc)
        w = np.where(np.arange(L + 1) == 0, 1.0, 2.0)
        ref = np.abs(Xc[:, :, :L + 1].astype(np.complex128)).sum(axis=3) * w
        np.testing.assert_allclose(norms, ref, rtol=1e-12)
        assert np.all(Xc[:, :, L + 1:] == 0)
        S = plan.step3(Xc.copy())
        smax = S.reshape(3, S.shape[1], -1).max(axis=2)
        per_slice = norms[:, plan.layout.slice_src]
        assert np.all(smax <= per_slice.sum(axis=2) * (1 + plan.margins.two_passes))
        Y = plan.layout.fold_mirrors(Xc.copy(), np.empty((3, plan.n_beta) + Xc.shape[2:],
                                                          Xc.dtype))
        zero = np.zeros(plan.n_slices)
        for a in range(3):
            transform_m2(Y[a])
            col = np.empty((plan.n_slices, plan.M))
            full, part = np.empty(plan.n_slices), np.empty(plan.n_slices)
            _column_bounds(Y[a], 0, L + 1, col, zero, full)
            tails = per_slice[a, :, r:].sum(axis=1) * (1 + plan.margins.one_pass)
            _column_bounds(Y[a], 0, r, col, tails, part)
            assert np.all(smax[a] <= part * (1 + plan.margins.one_pass))
            assert np.all(full <= part * (1 + plan.margins.one_pass))
            assert np.all(full <= per_slice[a].sum(axis=1) * (1 + plan.margins.one_pass))
    with pytest.raises(InputError, match="norms"):
        plan.step2(Z, np.empty((2, Xc.shape[1], plan.L + 1)))
    with pytest.raises(InputError, match="norms"):
        plan.step3_best(Xc.copy(), np.empty((3, Xc.shape[1])))


@pytest.mark.parametrize("M", [14, 13, 64])
def test_head_only_step2_bounds_and_forms_the_other_rows(M):
    """Compressed plans, step2(..., head_only=True): the rows m1 < row_split and their norms
    are those of the whole step 2, bit for bit; the other rows get a bound of their norms'
    sum; step 3 forms those rows (_tail_rows) to the values of the whole step 2 (the same
    sums), and the search finds the maximiser of every slice's values (M = 64: row_split
    = L + 1, no rows left out); bad calls are refused by name."""
    from radsvd.volumes.landscape.tail import _tail_rows

    grid = ShellGrid(K=6, R=4, L=6)
    A, B = hv.coefficients(grid, 3, 52), hv.coefficients(grid, 1, 53)
    basis = volume_svd(B, grid)
    for precision in ("single", "double"):
        plan = prepare(grid, B, basis, rank=(2, 3), n_beta=10, M=M, precision=precision)
        L, r, nu = plan.L, plan.row_split, plan.table.shape[1]
        Z = plan.operands(plan.step1_project(plan.radial_compress(A)))
        norms = np.empty((3, nu, L + 1))
        Xc = plan.step2(Z, norms).copy()
        hn = np.full_like(norms, np.nan)
        Xh = plan.step2(Z, hn, head_only=True)
        assert Xh.shape == (3, nu, r, M)
        np.testing.assert_array_equal(Xh, Xc[:, :, :r])
        np.testing.assert_array_equal(hn[:, :, :r], norms[:, :, :r])
        assert np.all(hn[:, :, r:].sum(axis=2) >= norms[:, :, r:].sum(axis=2))
        assert np.all(hn[:, :, r + 1:] == 0)
        # all slices of all volumes, the mirror sign of odd M included
        ns = plan.n_slices
        vols = np.repeat(np.arange(3), ns)
        slices = np.tile(np.arange(ns), 3)
        out = np.zeros((vols.size, M // 2 + 1, M), dtype=plan.complex_dtype)
        _tail_rows(Z, 0, vols, slices, plan.layout.slice_src, plan.layout.slice_flip, plan.layout.mirror_sign,
                   plan.tail_tables().table, r, L, out)
        src = plan.layout.fold_mirrors(Xc.copy(), np.empty((3, plan.n_beta) + Xc.shape[2:],
                                                           Xc.dtype))
        src = src.reshape(vols.size, M // 2 + 1, M)
        eps = float(np.finfo(plan.table.dtype).eps)
        scale = plan.H_D * np.abs(plan.table).max() * np.abs(Z).max()
        np.testing.assert_allclose(out[:, r:], src[:, r:], rtol=0, atol=4 * eps * scale)
        ref = plan.step3_best(Xc.copy())
        got = plan.step3_best(Xh.copy(), hn, Z)
        for x, y in zip(got[:3], ref[:3]):
            np.testing.assert_array_equal(x, y)
        assert np.all(np.abs(got[3] - ref[3]) <= _rounding(plan, norms))
    full = prepare(grid, B, n_beta=10, M=M)
    for x, y in zip(full.best_rotations(A)[:3], full.step3_best(full.spectra(A))[:3]):
        np.testing.assert_array_equal(x, y)
    with pytest.raises(InputError, match="head_only"):
        full.step2(full.step1(A), np.empty((3, nu, L + 1)), head_only=True)
    with pytest.raises(InputError, match="head_only"):
        plan.step2(Z, head_only=True)
    with pytest.raises(InputError, match="operands of step2"):
        plan.step3_best(Xh.copy(), hn)
    with pytest.raises(InputError, match="Z has shape"):
        plan.step3_best(Xh.copy(), hn, Z[:2])


def test_full_ranks_equal_full_and_low_ranks_differ():
    grid = ShellGrid(K=6, R=5, L=6)
    A, B = hv.coefficients(grid, 3, 5), hv.coefficients(grid, 1, 6)
    X = landscapes(A, B, grid)
    basis = volume_svd(B, grid)
    XH = landscapes(A, B, grid, basis, rank=(grid.R, grid.L + 1), precision="double")
    # u and v orthonormal to ~ε: the compressed sums equal the full ones to rounding
    np.testing.assert_allclose(XH, X, rtol=0, atol=1e3 * EPS * np.abs(X).max())
    assert landscapes(A, B, grid, basis, rank=(2, 3)).dtype == np.float64     # the default
    # "auto" for compressed plans: single-precision steps 2 and 3, rounding
    # ~ (L+1+M)·2⁻²⁴ of max |X|
    X1 = landscapes(A, B, grid, basis, rank=(grid.R, grid.L + 1), precision="auto")
    assert X1.dtype == np.float32
    np.testing.assert_allclose(X1, X, rtol=0, atol=1e-5 * np.abs(X).max())
    X2 = landscapes(A, B, grid, basis, rank=(2, 3))
    assert np.abs(X2 - X).max() > 1e-3 * np.abs(X).max()


def test_basis_kernels_are_real_symmetric_and_exclude_l0():
    grid = ShellGrid(K=6, R=5, L=6)
    B = hv.coefficients(grid, 1, 8)
    basis = volume_svd(B, grid)
    assert np.allclose(basis.U.T @ basis.U, np.eye(grid.R), atol=1e-13)
    assert np.allclose(basis.V.T @ basis.V, np.eye(grid.L + 1), atol=1e-13)
    # D has a zero row/column at l = 0: e_0 is an eigenvector with eigenvalue 0
    assert np.isclose(basis.D_values[-1], 0.0, atol=1e-12 * basis.D_values[0])
    assert np.isclose(np.abs(basis.V[0, -1]), 1.0)
    # C ignores l = 0: changing B_0^0 leaves it unchanged
    B2 = B.copy()
    B2[..., 0] += 10.0
    assert np.allclose(volume_svd(B2, grid).C_values, basis.C_values)


def _molecule(seed=3):
    rng = np.random.default_rng(seed)
    return GaussianMolecule(centers=rng.uniform(-0.35, 0.35, (12, 3)),
                            sigmas=rng.uniform(0.06, 0.1, 12), weights=rng.uniform(0.5, 1.5, 12))


def _angle_deg(R1, R2):
    return np.degrees(np.arccos(np.clip((np.trace(R1.T @ R2) - 1) / 2, -1, 1)))


@pytest.mark.parametrize("rank", ["full", 5])
def test_recovers_closed_form_rotation(rank):
    mol = _molecule()
    N = 32
    R_true = rotation_matrix([0.4, 1.1, -2.0])
    vol = mol.rotated(R_true).volume(N)              # vol(x) = target(R_trueᵀ x)
    res = align_volume_maps(vol, mol.volume(N), K=10, rank=rank)
    # grid spacing: α, γ step 2π/21, β step 2π/22; a grid point lies within half a step in
    # each angle, i.e. within (3/2)·(2π/21) rad of rotation angle of the truth
    spacing = np.degrees(2 * np.pi / 21)
    assert _angle_deg(res.matrix[0], R_true.T) < 1.5 * spacing
    fine = align_volume_maps(vol, mol.volume(N), K=10, rank=rank, refine=True)
    # off-grid refinement on the exact landscape: the maximum is the true rotation up to the
    # discretisation of the volume (the landscape is smooth, its maximum well separated)
    assert _angle_deg(fine.matrix[0], R_true.T) < 0.01


def test_recovers_real_space_resampled_rotation():
    from scipy.ndimage import map_coordinates

    mol = _molecule(5)
    N = 40
    tgt = mol.volume(N)
    R_true = rotation_matrix([-0.9, 0.6, 2.5])
    # resample: vol(x) = tgt(R_trueᵀ x), cubic splines on the voxel grid (x = last axis)
    x = (np.arange(N) - N // 2) * (2.0 / N)
    Z, Y, X = np.meshgrid(x, x, x, indexing="ij")
    p = np.stack([X, Y, Z], -1) @ R_true               # rows: R_trueᵀ x
    idx = p / (2.0 / N) + N // 2
    vol = map_coordinates(tgt, [idx[..., 2], idx[..., 1], idx[..., 0]], order=3, mode="constant")
    res = align_volume_maps(vol, tgt, K=10, rank="full", refine=True)
    # interpolation error leaves a small bias; within a tenth of the grid spacing (1.7°)
    assert _angle_deg(res.matrix[0], R_true.T) < 1.7


def test_thread_count_does_not_change_results():
    grid = ShellGrid(K=6, R=5, L=7)
    A, B = hv.coefficients(grid, 3, 9), hv.coefficients(grid, 1, 10)
    basis = volume_svd(B, grid)
    out = []
    for n in (1, 2):
        with threads(n):
            out.append((landscapes(A, B, grid), landscapes(A, B, grid, basis, rank=(3, 4)),
                        landscapes(A, B, grid, M=15)))
    for x1, x2 in zip(*out):
        assert np.array_equal(x1, x2)


def test_rank_sweep_metrics():
    grid = ShellGrid(K=6, R=5, L=6)
    A, B = hv.coefficients(grid, 4, 11), hv.coefficients(grid, 1, 12)
    res = rank_sweep(A, B, grid, [(2, 2), (grid.R, grid.L + 1)], block=3)
    assert res[1]["rel_frobenius"] < 1e-12 and np.isclose(res[1]["correlation"], 1.0)
    assert res[1]["f"] == 1.0 and res[1]["n_pairs"] == 4
    assert res[0]["rel_frobenius"] > 1e-3


def test_align_volumes_landscapes_on_request_and_scores():
    grid = ShellGrid(K=5, R=4, L=5)
    A, B = hv.coefficients(grid, 3, 13), hv.coefficients(grid, 1, 14)
    res = align_volumes(A, B[0], grid, return_landscapes=True, block=2)
    X = landscapes(A, B, grid)
    np.testing.assert_array_equal(res.landscapes, X)
    np.testing.assert_array_equal(res.score, X.reshape(3, -1).max(1))
    # the returned rotation, applied to the volume, attains the score against the target
    for a in range(3):
        assert np.isclose(_brute(A[a], B[0], grid, res.tau[a]), res.score[a], rtol=1e-10)


def test_single_precision_compressed_metrics_unchanged():
    """Issue 2/4 rule: single-precision steps 2-3 on the compressed path leave the metrics
    against the full (double) landscape unchanged to 1e-4."""
    from radsvd.metrics import LandscapeMetrics

    grid = ShellGrid(K=8, R=6, L=8)
    A, B = hv.coefficients(grid, 6, 22), hv.coefficients(grid, 1, 23)
    basis = volume_svd(B, grid)
    X = landscapes(A, B, grid).reshape(6, -1)
    res = []
    for precision in ("double", "single"):
        XH = landscapes(A, B, grid, basis, rank=(3, 3), precision=precision).reshape(6, -1)
        m = LandscapeMetrics()
        m.update(X, XH.astype(np.float64))
        res.append(m.result())
    for key in ("correlation", "f", "rel_frobenius"):
        assert abs(res[0][key] - res[1][key]) < 1e-4, key


@pytest.mark.parametrize("M", [None, 15])
def test_single_precision_step3(M):
    grid = ShellGrid(K=6, R=5, L=7)
    A, B = hv.coefficients(grid, 2, 15), hv.coefficients(grid, 1, 16)
    X = landscapes(A, B, grid, M=M)
    X32 = landscapes(A, B, grid, M=M, precision="single")
    assert X32.dtype == np.float32
    # float32 transform of ~M² terms: error ≲ sqrt(M²)·2⁻²⁴ of the largest |X̂| sum, << 1e-5
    assert np.abs(X32 - X).max() < 1e-5 * np.abs(X).max()


def test_step1_kernel_equals_blas(monkeypatch):
    """Step 1 by the numba kernel equals the per-degree matrix products (BLAS)."""
    import radsvd.volumes.landscape.plan as land

    grid = ShellGrid(K=7, R=5, L=7)
    A, B = hv.coefficients(grid, 3, 24), hv.coefficients(grid, 1, 25)
    basis = volume_svd(B, grid)
    for plan in (prepare(grid, B), prepare(grid, B, basis, rank=(3, 4))):
        c = plan.radial_compress(A)
        T_kernel = plan.step1(c)
        monkeypatch.setattr(land, "SMALL_RANK", 0)
        T_blas = plan.step1(c)
        monkeypatch.setattr(land, "SMALL_RANK", 10**6)
        # same sums of ≤ R products in another order: rounding ~ R ε of Σ|a||b|
        scale = np.abs(c).max() * np.abs(np.concatenate(plan.target, axis=1)).max() * c.shape[1]
        np.testing.assert_allclose(T_kernel, T_blas, rtol=0, atol=10 * EPS * scale)


def test_fused_step1_projection_equals_two_steps(monkeypatch):
    """Steps 1 + 1b fused (numba, few shells) equal step 1b after step 1 and the BLAS path,
    and a direct sum Σ_l V[l, j] T_l(m1, m2) from step 1's output."""
    import radsvd.volumes.landscape.plan as land

    grid = ShellGrid(K=7, R=5, L=7)
    L = grid.L
    A, B = hv.coefficients(grid, 3, 26), hv.coefficients(grid, 1, 27)
    plan = prepare(grid, B, volume_svd(B, grid), rank=(3, 4), precision="double")
    c = plan.radial_compress(A)
    Y = plan.step1_project(c).reshape(3, L + 1, 4, 2 * L + 1)       # [a, m1, j, m2 + L]
    # single-precision plans store the same sums rounded once to complex64
    single = prepare(grid, B, volume_svd(B, grid), rank=(3, 4))
    Y32 = single.step1_project(c).reshape(Y.shape)
    assert Y32.dtype == np.complex64
    np.testing.assert_allclose(Y32, Y, rtol=2.0 ** -24, atol=0)
    T = plan.step1(c)
    ref = np.zeros_like(Y)
    for l in range(L + 1):
        Tl = T[:, plan.base[l]:plan.base[l + 1]].reshape(3, l + 1, 2 * l + 1)
        ref[:, :l + 1, :, L - l:L + l + 1] += Tl[:, :, None, :] * plan.degree_vectors[l][:, None]
    monkeypatch.setattr(land, "SMALL_RANK", 0)
    Y_blas = plan.step1_project(c).reshape(Y.shape)
    # same ≤ H_C·(L+1) products summed in another order: rounding ~ H_C (L+1) ε of Σ|a||b||v|
    scale = (np.abs(c).max() * np.abs(np.concatenate(plan.target, axis=1)).max()
             * c.shape[1] * (L + 1))
    np.testing.assert_allclose(Y, ref, rtol=0, atol=10 * EPS * scale)
    np.testing.assert_allclose(Y, Y_blas, rtol=0, atol=10 * EPS * scale)
    full = prepare(grid, B)
    with pytest.raises(InputError, match="compressed"):
        full.step1_project(c)


def test_search_over_columns_merges_calls():
    """_search_lines keeps a slice's first maximiser across calls: a larger maximum found
    later replaces it, an equal one merges (first position in plain and in shifted order)."""
    from radsvd.volumes.landscape.search import _search_lines

    M, h = 6, 3
    vols, slices = np.array([0]), np.array([2])
    smax = np.full((1, 4), -np.inf)
    top = np.full(1, -np.inf)
    first = np.full((1, 4, 2), -1, dtype=np.int64)

    def call(columns, peak):
        vals = np.zeros((len(columns), M))
        for n, (c, alphas) in enumerate(columns):
            vals[n, alphas] = peak
        where = np.array([[0, c] for c, _ in columns], dtype=np.int64)
        _search_lines(vals, where, vols, slices, smax, top, first)

    def shifted(a, c):
        return ((a + h) % M) * M + (c + h) % M

    call([(4, [5])], 2.0)                              # (α, γ) = (5, 4)
    assert top[0] == 2.0 and tuple(first[0, 2]) == (5 * M + 4, shifted(5, 4))
    call([(1, [3]), (5, [0])], 3.0)                    # larger: replaces
    assert top[0] == 3.0 and smax[0, 2] == 3.0
    assert tuple(first[0, 2]) == (min(3 * M + 1, 0 * M + 5), min(shifted(3, 1), shifted(0, 5)))
    call([(0, [2]), (3, [4])], 3.0)                    # equal: merges
    k = [3 * M + 1, 5, 2 * M + 0, 4 * M + 3]
    ks = [shifted(3, 1), shifted(0, 5), shifted(2, 0), shifted(4, 3)]
    assert tuple(first[0, 2]) == (min(k), min(ks))
    call([(2, [1])], 1.0)                              # smaller: no change
    assert smax[0, 2] == 3.0 and tuple(first[0, 2]) == (min(k), min(ks))
