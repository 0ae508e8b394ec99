"""Volume-alignment benchmark (paper §4.10): 96 volumes aligned to one target at K = 48
(R = 49, L = 48, n_β = 98; M = default_M(48) = 98, the smallest even 7-smooth size
≥ 2L+1), measured in one run.

Records (``measure``):
* ``volumes.wigner``: Wigner-d table (distinct β only) time and memory.  It depends only
  on (L, β grid), so it is computed once and shared by every plan below; speedups are
  given without it (``speedup_vs_full``) and with it added to both sides (``*_with_wigner``).
* ``volumes.numpy_baseline``: a straightforward numpy implementation kept here (dense
  (m1, m2) arrays, einsum for steps 1–2, numpy complex 2D FFT of size M for step 3, every
  β), per pair, on the same grid as the engine.
* ``volumes.full``: the engine's full path (best rotation per volume), per pair, ratio to
  numpy, time split over steps 1, 2 and 3 (step 3 fused with the grid search,
  :meth:`LandscapePlan.step3_best`: the argmax is part of step 3), the share of step 3's
  work its branch and bound leaves (``step3_m2_fraction``: slices through the whole pass
  over m2; ``step3_m1_fraction``: columns through the pass over m1);
  ``compressible_fraction`` = (per-target precomputation + steps 1–2) / total, the only
  part compression can shrink.
* ``volumes.rank{H}``: compressed path at H_C = H_D = H (single-precision steps 2 and 3,
  the default for compressed plans), total time with per-target precomputation (kernels
  C, D and their eigenvectors, [vᵀd] tables, compression of the target), speedup over the
  full path (same run), split over steps 0 (compression of the volumes), 1, 1b, 2 and 3
  (steps 1 and 1b run fused for H_C ≤ 16: reported together as step 1, step 1b = 0), the
  speedup of steps 0–2 alone, ``bound_speedup_if_steps012_free`` = full time / step 3 of
  this path, the paper's ideal K/H, and the accuracy metrics (Frobenius, correlation, f)
  over the grid.  ``volumes.rank{H}.double``: the same in double.
* ``volumes.*.M{2L+1}``: the paper's odd grid (97, prime): no mirrored-β shift, every β
  transformed, Bluestein FFT.
* ``volumes.full.unpruned``, ``volumes.rank{H}.unpruned``: the full path and rank 8 with
  every step-3 transform made (no branch and bound; ``pruning_speedup`` = their time over
  the pruned one, ``same_best_as_pruned`` = 1 when every best index agrees and every score
  to the rounding of step 3).
* ``volumes.full.1thread``, ``volumes.rank{H}.1thread``: both paths with one thread: the
  per-core speedup, and ``threads_speedup`` (1-thread time / all-thread time) of each path,
  whose ratio turns the per-core speedup into the all-thread one (machine-dependent).
Rounds are interleaved over the configurations and the fastest of ``ROUNDS`` is kept.
``OPENBLAS_THREAD_TIMEOUT=4`` must be in the environment before numpy loads (``radsvd``
sets it, and OMP_WAIT_POLICY=PASSIVE, when it is imported first, as by ``radsvd bench``):
otherwise OpenBLAS worker threads spin after each GEMM and slow the numba kernels that
follow (and vice versa), by up to 10× on two cores.  OpenMP workers spin likewise after
each parallel region: the passive wait policy saved ~0.1 ms/pair in step 3 here.

Every configuration runs :meth:`LandscapePlan.best_rotations` (the path of align_volumes),
with its per-step timer.  Where the time goes, the decisions these records supported and
what was tried and dropped: docs/decisions-engine.md.

Volumes: a Gaussian pseudo-molecule's exact shells (closed-form Fourier transform), randomly
rotated (eq. 97), plus white noise on the coefficients (signal-to-noise 1 per shell energy)
— timings do not depend on the values, the metrics do.
"""

from __future__ import annotations

import time

import numpy as np

from radsvd.volumes.align import landscape_blocks
from radsvd.volumes.basis import volume_svd
from radsvd.volumes.landscape import STEPS, beta_grid, default_M, prepare
from radsvd.volumes.shells import ShellGrid, sht
from radsvd.volumes.wigner import WignerTable, rotate

BLOCK = 8


# ----------------------------------------------------------------------------- data
def bench_volumes(grid: ShellGrid, n: int, seed: int = 0):
    """(target (R, n_lm), volumes (n, R, n_lm)): exact shells of a synthetic molecule and
    noisy randomly rotated copies."""
    from radsvd.data.molecules import synthetic_molecule

    mol = synthetic_molecule("trpv1-like", n_atoms=60)
    kx, ky, kz = grid.points()
    F = mol.fourier(np.stack([kx, ky, kz], -1).reshape(-1, 3)).reshape(kx.shape)
    target = sht(F, grid)
    rng = np.random.default_rng(seed)
    vols = np.empty((n,) + target.shape, dtype=np.complex128)
    energy = np.sqrt(np.mean(np.abs(target) ** 2, axis=1, keepdims=True))   # per shell
    l, m = grid.degrees, grid.orders
    for a in range(n):
        tau = rng.uniform(-np.pi, np.pi, 3)
        noise = (rng.standard_normal(target.shape) + 1j * rng.standard_normal(target.shape))
        z = m == 0
        noise[:, z] = np.where(l[z] % 2 == 0, noise[:, z].real, 1j * noise[:, z].imag)
        vols[a] = rotate(target, grid, tau) + energy * noise / np.sqrt(2)
    return target, vols


# ----------------------------------------------------------------------------- baseline
def _dense_orders(c: np.ndarray, grid: ShellGrid) -> np.ndarray:
    """(..., R, n_lm) → (..., R, L+1, 2L+1) dense [l, m + L] with zeros for |m| > l."""
    L = grid.L
    out = np.zeros(c.shape[:-1] + (L + 1, 2 * L + 1), dtype=np.complex128)
    for m in range(L + 1):
        ls = np.arange(m, L + 1)
        v = c[..., grid.index(ls, m)]
        out[..., ls, L + m] = v
        if m:
            out[..., ls, L - m] = ((-1.0) ** (ls + m)) * np.conj(v)
    return out


def dense_wigner(L: int, betas) -> np.ndarray:
    """d^l_{m1,m2}(β) dense: (n_β, L+1, 2L+1, 2L+1), zeros for |m| > l."""
    t = WignerTable(L, betas)
    nb = len(betas)
    d = np.zeros((nb, L + 1, 2 * L + 1, 2 * L + 1))
    for m1 in range(L + 1):
        for m2 in range(-L, L + 1):
            l0, blk = t.block(m1, m2)
            d[:, l0:, L + m1, L + m2] = blk.T
            if m1:
                d[:, l0:, L - m1, L - m2] = blk.T * (-1.0) ** (m1 - m2)
    d[:, 0, L, L] = 1.0 if L >= 0 else 0.0
    return d


def numpy_baseline(coef_volumes, coef_target, grid: ShellGrid, n_beta=None, d=None, M=None):
    """Straightforward landscapes (eq. 103–104): dense arrays over (l, m1, m2), einsum for
    steps 1–2, numpy's complex 2D FFT of size M (default: the engine's, default_M(L)) for
    step 3.  Returns (best index, best score) per volume."""
    L = grid.L
    M = default_M(L) if M is None else int(M)
    m = np.arange(-L, L + 1) % M                                # m = -L..L → periodic index
    n_beta = 2 * (L + 1) if n_beta is None else n_beta
    if d is None:
        d = dense_wigner(L, beta_grid(n_beta))
    B = _dense_orders(coef_target, grid)                       # (R, L+1, M)
    best_i, best_v = [], []
    for a in range(coef_volumes.shape[0]):
        A = _dense_orders(coef_volumes[a], grid)
        Xt = np.einsum("r,rlm,rln->lmn", grid.w, A.conj(), B)   # step 1
        Xh = np.einsum("blmn,lmn->bmn", d, Xt)                  # step 2
        Xp = np.zeros((Xh.shape[0], M, M), dtype=np.complex128)
        Xp[:, m[:, None], m[None, :]] = Xh
        X = np.fft.fft2(Xp, axes=(1, 2)).real                  # step 3: Σ e^{-i m α}
        j = int(np.argmax(X))
        best_i.append(j)
        best_v.append(X.flat[j])
    return np.array(best_i), np.array(best_v)


# ----------------------------------------------------------------------------- engine runs
def _run(plan, vols, block=BLOCK, prune=True):
    """Best rotation per volume by :meth:`LandscapePlan.best_rotations` (the path users get),
    with its per-step timers (``calls``: step 3's columns through the pass over m1, slices
    through the whole pass over m2, and slices in all, as
    :attr:`LandscapePlan.step3_calls`)."""
    tm = dict.fromkeys(STEPS, 0.0)
    calls = np.zeros(3, dtype=np.int64)
    best_i = np.empty(vols.shape[0], dtype=np.int64)
    best_v = np.empty(vols.shape[0])
    for a0 in range(0, vols.shape[0], block):
        a1 = min(a0 + block, vols.shape[0])
        b, i, j, best_v[a0:a1] = plan.best_rotations(vols[a0:a1], timer=tm, prune=prune)
        calls += plan.step3_calls
        best_i[a0:a1] = np.ravel_multi_index((b, i, j), (plan.n_beta, plan.M, plan.M))
    return best_i, best_v, tm, calls


ROUNDS = 5   # best of, rounds interleaved over configurations (the machines are shared)


def _result(plan, vols, pre, prune, **extra):
    """One configuration's run: plan, best indices and scores, timers, precomputation,
    total seconds and the fractions of the step-3 work done: columns transformed over m1,
    slices transformed over m2 (all rows)."""
    bi, bv, tm, calls = _run(plan, vols, prune=prune)
    return dict(plan=plan, best_i=bi, best_v=bv, tm=tm, pre=pre, total=pre + sum(tm.values()),
                step3_fraction=calls[0] / (calls[2] * plan.M),
                step3_m2_fraction=calls[1] / calls[2], **extra)


def _same_best(r1, r2) -> float:
    """1.0 when two runs found the same best index for every volume and scores that agree
    to the rounding of step 3, else 0.0.  The pruned search transforms a slice in other
    calls than the unpruned one (other SIMD grouping: the last bits differ), each value
    within margin_2d·l1 of the exact one, and l1 ≤ 2·score for these peaked landscapes
    (the best slice's peak is 0.83–0.89 of its l1 norm at K = 48)."""
    tol = 2.0 * r1["plan"].margins.two_passes * 2.0
    return float(np.array_equal(r1["best_i"], r2["best_i"])
                 and np.allclose(r1["best_v"], r2["best_v"], rtol=tol, atol=0.0))


def _full(grid, target, vols, M=None, precision="double", wigner=None, prune=True):
    t = time.perf_counter()
    plan = prepare(grid, target, M=M, precision=precision, wigner=wigner)
    return _result(plan, vols, time.perf_counter() - t, prune)


def _compressed(grid, target, vols, H, M=None, precision="auto", wigner=None, prune=True):
    t = time.perf_counter()
    basis = volume_svd(target, grid, H_C=H)
    t_basis = time.perf_counter() - t
    plan = prepare(grid, target, basis, rank=(H, H), M=M, precision=precision, wigner=wigner)
    return _result(plan, vols, time.perf_counter() - t, prune, t_basis=t_basis)


def _one_thread(fn, *args, **kwargs):
    from radsvd._jit import threads

    with threads(1):
        return fn(*args, **kwargs)


def _metrics(plans, vols):
    from radsvd.metrics import LandscapeMetrics

    acc = [LandscapeMetrics() for _ in plans[1:]]
    for a0, a1, (X, *XH) in landscape_blocks(vols, plans, BLOCK, reuse=True):
        n = a1 - a0
        for m, x in zip(acc, XH):
            m.update(X.reshape(n, -1), x.reshape(n, -1))
    return [m.result() for m in acc]


def measure(quick: bool = False) -> list[dict]:
    K, n_vol, n_np, ranks = (16.0, 16, 4, (4, 6)) if quick else (48.0, 96, 8, (6, 8, 12))
    rounds = 1 if quick else ROUNDS
    grid = ShellGrid(K=K)
    L = grid.L
    t = time.perf_counter()
    target, vols = bench_volumes(grid, n_vol)
    t_setup = time.perf_counter() - t
    # warm-up (numba compilation is cached, but the first calls still load it)
    small = ShellGrid(K=4)
    st, sv = bench_volumes(small, 2)
    for plan in (prepare(small, st), prepare(small, st, volume_svd(st, small, H_C=2),
                                             rank=(2, 2))):
        _run(plan, sv)
        plan.fft_chunk = 1                   # several step-3 calls: the pruned search
        _run(plan, sv)
    _run(prepare(small, st, M=2 * small.L + 1), sv)
    _run(prepare(small, st, volume_svd(st, small, H_C=2), rank=(2, 2), precision="double"), sv)
    _run(prepare(small, st, volume_svd(st, small, H_C=2), rank=(2, 2), M=2 * small.L + 1), sv)

    params = dict(K=K, R=grid.R, L=L, M=default_M(L), n_beta=2 * (L + 1), n_volumes=n_vol,
                  block=BLOCK, rounds=rounds)
    recs = []
    # Wigner table (distinct β: β ≥ 0 and β = -π)
    t = time.perf_counter()
    plan_w = prepare(grid, target)
    t_plan = time.perf_counter() - t
    t_w = np.inf
    for _ in range(rounds):
        t = time.perf_counter()
        W = WignerTable(L, plan_w.wigner.betas)
        t_w = min(t_w, time.perf_counter() - t)
    recs.append(dict(name="volumes.wigner", seconds=t_w, megabytes=W.nbytes / 1e6,
                     n_beta_distinct=float(W.betas.size),
                     params=dict(params, layout="(m1>=0, m2) pairs x l x distinct beta")))
    # numpy baseline on a subset (per-pair time)
    t = time.perf_counter()
    d_dense = dense_wigner(L, beta_grid(2 * (L + 1)))
    t_dense = time.perf_counter() - t
    t = time.perf_counter()
    np_i, np_v = numpy_baseline(vols[:n_np], target, grid, d=d_dense)
    t_np = (time.perf_counter() - t) / n_np
    recs.append(dict(name="volumes.numpy_baseline", seconds=t_np * n_vol, per_pair_ms=1e3 * t_np,
                     wigner_dense_seconds=t_dense, wigner_dense_megabytes=d_dense.nbytes / 1e6,
                     params=dict(params, measured_on=n_np, what="einsum steps 1-2, numpy FFT")))
    del d_dense
    # all engine configurations, rounds interleaved (load on a shared machine drifts):
    # the fastest round of each configuration is kept.  The Wigner table depends only on
    # (L, β grid), not on the target: computed once above, shared by every plan, and added
    # to both sides for the "with Wigner" speedups.
    W_odd = W               # same β grid, hence the same distinct β
    M_odd = 2 * L + 1       # the paper's odd grid (no mirrored-β shift; 97 is prime)
    H2 = 8 if 8 in ranks else ranks[-1]
    configs = {"full": lambda: _full(grid, target, vols, wigner=W)}
    for H in ranks:
        configs[f"rank{H}"] = (lambda H=H: _compressed(grid, target, vols, H, wigner=W))
    configs["rank.double"] = lambda: _compressed(grid, target, vols, H2, precision="double",
                                                 wigner=W)
    configs["full.odd"] = lambda: _full(grid, target, vols, M=M_odd, wigner=W_odd)
    configs["rank.odd"] = lambda: _compressed(grid, target, vols, H2, M=M_odd, wigner=W_odd)
    configs["full.unpruned"] = lambda: _full(grid, target, vols, wigner=W, prune=False)
    configs["rank.unpruned"] = lambda: _compressed(grid, target, vols, H2, wigner=W,
                                                   prune=False)
    # one thread: what the second vCPU adds to each path (machine-dependent, see below)
    configs["full.1thread"] = lambda: _one_thread(_full, grid, target, vols, wigner=W)
    configs["rank.1thread"] = lambda: _one_thread(_compressed, grid, target, vols, H2, wigner=W)
    best = {}
    for _ in range(rounds):
        for key, fn in configs.items():
            r = fn()
            if key not in best or r["total"] < best[key]["total"]:
                best[key] = r
    # full path
    rf = best["full"]
    total_f, plan_f, tm_f, pre_f = rf["total"], rf["plan"], rf["tm"], rf["pre"]
    agree = np.allclose(rf["best_v"][:n_np], np_v, rtol=1e-9,
                        atol=1e-12 * np.abs(np_v).max())
    steps_f = tm_f["step1"] + tm_f["step2"]
    recs.append(dict(name="volumes.full", seconds=total_f, per_pair_ms=1e3 * total_f / n_vol,
                     ratio_vs_numpy=t_np * n_vol / total_f,
                     ratio_vs_numpy_with_wigner=t_np * n_vol / (total_f + t_w),
                     precompute_seconds=pre_f, wigner_seconds=t_w,
                     step1_seconds=tm_f["step1"], step2_seconds=tm_f["step2"],
                     step3_seconds=tm_f["step3"], step3_m1_fraction=rf["step3_fraction"],
                     step3_m2_fraction=rf["step3_m2_fraction"],
                     compressible_fraction=(pre_f + steps_f) / total_f,
                     best_scores_match_numpy=float(agree),
                     params=dict(params, step3=plan_f.transform, n_slices=plan_f.n_slices)))

    def rank_record(name, key, H):
        rc = best[key]
        total_c, plan_c, tm_c = rc["total"], rc["plan"], rc["tm"]
        met = _metrics([plan_f, plan_c], vols)[0]
        return dict(
            name=name, seconds=total_c, per_pair_ms=1e3 * total_c / n_vol,
            speedup_vs_full=total_f / total_c,
            speedup_vs_full_with_wigner=(total_f + t_w) / (total_c + t_w),
            ideal_speedup=K / H,
            steps012_speedup_vs_full=steps_f / (
                tm_c["step0"] + tm_c["step1"] + tm_c["step1b"] + tm_c["step2"]),
            bound_speedup_if_steps012_free=total_f / tm_c["step3"],
            precompute_seconds=rc["pre"], kernels_eigen_seconds=rc["t_basis"],
            step0_seconds=tm_c["step0"], step1_seconds=tm_c["step1"], step1b_seconds=tm_c["step1b"],
            step2_seconds=tm_c["step2"], step3_seconds=tm_c["step3"],
            step3_m1_fraction=rc["step3_fraction"],
            step3_m2_fraction=rc["step3_m2_fraction"],
            rel_frobenius=met["rel_frobenius"], correlation=met["correlation"], f=met["f"],
            same_best_as_full=float(np.mean(rc["best_i"] == rf["best_i"])),
            params=dict(params, H_C=H, H_D=H, step3=plan_c.transform, precision=plan_c.precision,
                        includes="C, D, eigenvectors, [v^T d] tables, compression"))

    for H in ranks:
        recs.append(rank_record(f"volumes.rank{H}", f"rank{H}", H))
    recs.append(rank_record(f"volumes.rank{H2}.double", "rank.double", H2))
    # the paper's odd grid M = 2L+1 (prime at L = 48): every β transformed, slower FFT
    ro_f, ro_c = best["full.odd"], best["rank.odd"]
    recs.append(dict(name=f"volumes.full.M{M_odd}", seconds=ro_f["total"],
                     per_pair_ms=1e3 * ro_f["total"] / n_vol, step1_seconds=ro_f["tm"]["step1"],
                     step2_seconds=ro_f["tm"]["step2"], step3_seconds=ro_f["tm"]["step3"],
                     step3_m1_fraction=ro_f["step3_fraction"],
                     params=dict(params, M=M_odd, step3=ro_f["plan"].transform,
                                 n_slices=ro_f["plan"].n_slices)))
    recs.append(dict(name=f"volumes.rank{H2}.M{M_odd}", seconds=ro_c["total"],
                     per_pair_ms=1e3 * ro_c["total"] / n_vol,
                     speedup_vs_full=ro_f["total"] / ro_c["total"],
                     step3_seconds=ro_c["tm"]["step3"], step3_m1_fraction=ro_c["step3_fraction"],
                     params=dict(params, M=M_odd, H_C=H2, H_D=H2,
                                 step3=ro_c["plan"].transform)))
    # every step-3 call made (no branch and bound): what the pruning saves on each path
    ru_f, ru_c = best["full.unpruned"], best["rank.unpruned"]
    recs.append(dict(name="volumes.full.unpruned", seconds=ru_f["total"],
                     per_pair_ms=1e3 * ru_f["total"] / n_vol, step3_seconds=ru_f["tm"]["step3"],
                     pruning_speedup=ru_f["total"] / total_f,
                     same_best_as_pruned=_same_best(ru_f, rf),
                     params=dict(params, prune=False)))
    rc = best[f"rank{H2}"]
    recs.append(dict(name=f"volumes.rank{H2}.unpruned", seconds=ru_c["total"],
                     per_pair_ms=1e3 * ru_c["total"] / n_vol, step3_seconds=ru_c["tm"]["step3"],
                     pruning_speedup=ru_c["total"] / rc["total"],
                     speedup_vs_full_unpruned=ru_f["total"] / ru_c["total"],
                     same_best_as_pruned=_same_best(ru_c, rc),
                     params=dict(params, H_C=H2, H_D=H2, prune=False)))
    # per core: the rank-H2 speedup over full with one thread, and what the other threads
    # give each path (``threads_speedup`` = 1-thread time / all-thread time).  The speedup
    # with all threads is the 1-thread one × rank's threads_speedup / full's: these records
    # say which of the two factors differs between machines.
    r1f, r1c = best["full.1thread"], best["rank.1thread"]
    recs.append(dict(name="volumes.full.1thread", seconds=r1f["total"],
                     per_pair_ms=1e3 * r1f["total"] / n_vol,
                     threads_speedup=r1f["total"] / total_f,
                     step1_seconds=r1f["tm"]["step1"], step2_seconds=r1f["tm"]["step2"],
                     step3_seconds=r1f["tm"]["step3"], params=dict(params, threads=1)))
    recs.append(dict(name=f"volumes.rank{H2}.1thread", seconds=r1c["total"],
                     per_pair_ms=1e3 * r1c["total"] / n_vol,
                     speedup_vs_full=r1f["total"] / r1c["total"],
                     threads_speedup=r1c["total"] / rc["total"],
                     precompute_seconds=r1c["pre"], step0_seconds=r1c["tm"]["step0"],
                     step1_seconds=r1c["tm"]["step1"], step2_seconds=r1c["tm"]["step2"],
                     step3_seconds=r1c["tm"]["step3"],
                     params=dict(params, H_C=H2, H_D=H2, threads=1)))
    recs.append(dict(name="volumes.setup", seconds=t_setup, plan_seconds=t_plan,
                     params=dict(params, what="synthetic shells (not part of the timings)")))
    return recs
