"""Volume alignment: best rotations over the SO(3) grid, off-grid refinement, streaming
blocks of landscapes for the metrics (paper §4.4, §4.9–4.10).

Two conventions, both precise:

* landscapes (paper eq. 98): X(τ; A, B) = <Â, R_τ B̂> with A a volume and B the target;
  ``tau`` is its maximiser, i.e. the rotation that carries the TARGET onto the volume.
* alignment results (``euler``, ``matrix``): the rotation R to apply to each VOLUME so that
  it best superimposes on the TARGET, R = R_τ^{-1}.  Active rotation of the density,
  A_rot(x) = A(R^{-1} x), with x = (x, y, z) = (last, middle, first) array axis;
  R = R^z_α R^y_β R^z_γ for euler = (γ, β, α) (ZYZ; extrinsic: γ about z first, then β
  about the fixed y, then α about the fixed z — equivalently intrinsic z-y'-z'' with α
  first), canonicalised to β ∈ [0, π].
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from radsvd._files import save_npz
from radsvd._timer import StageTimer
from radsvd._validate import InputError, degenerate_targets, rank_pair
from radsvd.volumes.basis import VolumeBasis, check_coefficients, volume_svd
from radsvd.volumes.landscape import LandscapePlan, prepare
from radsvd.volumes.shells import ShellGrid, ShellTransform
from radsvd.volumes.wigner import (WignerTable, euler_from_matrix, invert_euler,
                                   rotation_matrix)

__all__ = ["VolumeAlignResult", "align_volume_maps", "align_volumes",
           "canonical_euler", "landscape_blocks", "landscape_value", "rank_sweep"]

def canonical_euler(euler) -> np.ndarray:
    """Same rotation with β ∈ [0, π], α, γ ∈ (-π, π]."""
    return euler_from_matrix(rotation_matrix(euler))


@dataclass
class VolumeAlignResult:
    """Per volume: ``euler`` (γ, β, α) and ``matrix`` R of the rotation to apply to the volume
    to superimpose it on the target; ``score`` = X at the optimum (the Fourier inner product
    <Â, R_τ B̂>, full landscape if refined, else the landscape that was searched); ``tau`` the
    landscape maximiser (target → volume).  ``landscapes``: (n, n_β, M, M) if requested."""

    euler: np.ndarray
    matrix: np.ndarray
    score: np.ndarray
    tau: np.ndarray
    landscapes: np.ndarray | None = None
    info: dict = field(default_factory=dict)

    def save(self, path) -> None:
        """Write an .npz atomically (:func:`radsvd._files.save_npz`); ``info`` entries as
        ``info_<key>``."""
        arrays = dict(euler=self.euler, score=self.score, matrix=self.matrix, tau=self.tau)
        if self.landscapes is not None:
            arrays["landscapes"] = self.landscapes
        for k, v in self.info.items():
            arrays[f"info_{k}"] = np.asarray(v)
        save_npz(path, **arrays)


def landscape_blocks(coef_volumes, plans, block: int = 8, reuse: bool = False):
    """Yield (a0, a1, [X_plan for plan in plans]) over blocks of volumes: the streaming form
    used for the metrics (full and compressed landscapes of the same volumes, one block at a
    time; each X is (a1-a0, n_β, M, M)).  reuse=True: the yielded arrays are the plans' work
    arrays, overwritten by the next block (faster: no fresh pages per block)."""
    plans = list(plans)
    if not plans:
        raise InputError("plans: need at least one LandscapePlan")
    grid = plans[0].grid
    a = check_coefficients(coef_volumes, grid, "coef_volumes")
    if int(block) < 1:
        raise InputError(f"block must be a positive integer, got {block!r}")
    for a0 in range(0, a.shape[0], int(block)):
        a1 = min(a0 + int(block), a.shape[0])
        yield a0, a1, [p(a[a0:a1], out=p.work_array(a1 - a0) if reuse else None)
                       for p in plans]


def _full_T(coef: np.ndarray, plan: LandscapePlan) -> np.ndarray:
    """Full-radial step-1 output of one volume in row order (m1, m2, l) (for refinement)."""
    T = plan.step1(coef[None])
    return np.take(T, plan.tidx, axis=1)[0]


def landscape_value(T_rows: np.ndarray, plan: LandscapePlan, tau) -> float:
    """X(τ) at an arbitrary τ = (γ, β, α) from step-1 sums in row order (eq. 103)."""
    gamma, beta, alpha = (float(t) for t in tau)
    L = plan.L
    d = WignerTable(L, [beta]).data
    xh = np.add.reduceat(T_rows * d, plan.row_start[:-1])       # X̂(m1, m2), p-major
    xh = xh.reshape(L + 1, 2 * L + 1)
    m1 = np.arange(L + 1)
    m2 = np.arange(-L, L + 1)
    c = np.where(m1 == 0, 1.0, 2.0) * np.exp(-1j * m1 * alpha)
    return float(np.real(c @ xh @ np.exp(-1j * m2 * gamma)))


def _refine(T_rows, plan, tau0, step):
    from scipy.optimize import minimize

    res = minimize(lambda t: -landscape_value(T_rows, plan, t), np.asarray(tau0, float),
                   method="Nelder-Mead",
                   options=dict(initial_simplex=np.asarray(tau0)[None, :] + np.vstack(
                       [np.zeros(3), 0.5 * step * np.eye(3)]), xatol=1e-4 * step + 1e-9,
                       fatol=1e-12, maxiter=400))
    val0 = landscape_value(T_rows, plan, tau0)
    if -res.fun >= val0:
        return res.x, -res.fun
    return np.asarray(tau0, float), val0


def align_volumes(coef_volumes, coef_target, grid: ShellGrid, basis: VolumeBasis | None = None,
                  rank=None, n_beta: int | None = None, M: int | None = None,
                  refine: bool = False, return_landscapes: bool = False, block: int = 8,
                  progress: bool = False, plan: LandscapePlan | None = None,
                  precision: str = "auto", timer: dict | None = None) -> VolumeAlignResult:
    """Best rotation of every volume onto the target (see the module docstring).

    coef_volumes (n, R, n_lm), coef_target (R, n_lm): shell coefficients (:func:`to_shells`).
    rank=None (or "full"): full landscape; rank=H or (H_C, H_D) with ``basis``
    (:func:`volume_svd` of the target): compressed (eq. 117).  refine: polish each grid maximum off-grid on the FULL
    landscape (Nelder–Mead on eq. 103).  Streams over blocks of ``block`` volumes; without
    landscapes the grid maximum comes from the pruned search
    (:meth:`LandscapePlan.step3_best`), exact for the values it computes: scores may differ
    in the last bits between block sizes (never between thread counts).
    precision: "auto" (double for the full path, single for compressed plans), "double" or
    "single" (step 2's output and step 3; see :func:`prepare`).  timer: optional dict;
    seconds per stage are added to it: 'plan' (when made here), the steps of
    :data:`~radsvd.volumes.landscape.STEPS`, or 'landscapes' with return_landscapes, and
    'refine' (as ``align_images(timer=...)``).
    """
    rank = rank_pair(rank)
    degenerate_targets(check_coefficients(coef_target, grid, "coef_target"), grid.degrees == 0,
                       "coef_target", flat="error")
    clock = StageTimer(timer)
    if plan is None:
        plan = prepare(grid, coef_target, basis, rank, n_beta, M, precision=precision)
        clock.lap("plan")
    a = check_coefficients(coef_volumes, grid, "coef_volumes")
    if isinstance(block, bool) or int(block) != block or block < 1:
        raise InputError(f"block must be a positive integer, got {block!r}")
    n = a.shape[0]
    tau = np.empty((n, 3))
    score = np.empty(n)
    land = (np.empty((n, plan.n_beta, plan.M, plan.M), dtype=plan.real_dtype)
            if return_landscapes else None)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, unit="vol", desc="align-volumes")
    full_plan = None
    for a0, a1 in ((a0, min(a0 + int(block), n)) for a0 in range(0, n, int(block))):
        clock.restart()
        if land is None:                      # first grid maximiser, as a full argmax
            b, i, j, score[a0:a1] = plan.best_rotations(a[a0:a1], timer=timer)
        else:
            S = plan.slices(a[a0:a1])         # distinct β only (mirrors: index shifts)
            b, i, j, score[a0:a1] = plan.best(S)
            plan.expand(S, out=land[a0:a1])
            clock.lap("landscapes")
        tau[a0:a1] = np.stack([plan.gammas[j], plan.betas[b], plan.alphas[i]], -1)
        if refine:
            if full_plan is None:
                full_plan = plan if not plan.compressed else prepare(
                    grid, coef_target, n_beta=plan.n_beta, M=plan.M, wigner=plan.wigner)
            step = 2.0 * np.pi / max(plan.M, plan.n_beta)
            clock.restart()
            for v in range(a0, a1):
                tau[v], score[v] = _refine(_full_T(a[v], full_plan), full_plan, tau[v], step)
            clock.lap("refine")
        if bar is not None:
            bar.update(a1 - a0)
    if bar is not None:
        bar.close()
    tau = canonical_euler(tau)
    euler = canonical_euler(invert_euler(tau))
    info = dict(H_C=plan.H_C, H_D=plan.H_D, compressed=plan.compressed, n_beta=plan.n_beta,
                precision=plan.precision,
                M=plan.M, K=grid.K, R=grid.R, L=grid.L, refined=bool(refine))
    return VolumeAlignResult(euler=euler, matrix=rotation_matrix(euler), score=score, tau=tau,
                             landscapes=land, info=info)


def align_volume_maps(volumes, target, K: float = 48.0, rank=None, L: int | None = None,
                      R: int | None = None, voxel_sizes=None, refine: bool = False,
                      return_landscapes: bool = False, progress: bool = False,
                      eps: float | None = None, precision: str = "auto",
                      transform_precision: str | None = None) -> VolumeAlignResult:
    """Align real-space volumes (n, N, N, N) (or one (N, N, N)) onto a target (N, N, N)
    (see the module docstring): shell coefficients of both at frequency K (one
    :class:`ShellTransform`, as :func:`to_shells`), then :func:`align_volumes`.

    rank: None or "full", or H (H_C = H_D = H, the paper's choice) or (H_C, H_D), with the
    radial- and degree-SVD of the target (:func:`volume_svd`).  voxel_sizes: optional
    (target_size, [sizes of volumes]) in Å; they must all agree.  The transforms run at
    the data's precision (single at eps 1e-6 when target and volumes are float32 or
    narrower, else double at 1e-12); ``eps`` and ``transform_precision`` override it
    (:func:`radsvd._nufft.transform_precision`).  ``precision``: the landscapes', as
    :func:`align_volumes`.
    """
    from radsvd._validate import real_stack

    tgt = real_stack(np.asarray(target), "target", ndim=3, dtype=None)
    vols = np.asarray(volumes)
    vols = real_stack(vols[None] if vols.ndim == 3 else vols, "volumes", ndim=3, dtype=None)
    if tgt.shape[0] != 1:
        raise InputError(f"target: expected one volume, got {tgt.shape[0]}")
    if vols.shape[1:] != tgt.shape[1:]:
        raise InputError(f"volumes have box {vols.shape[1:]} but the target has "
                         f"{tgt.shape[1:]}: resample them to the same box first")
    if voxel_sizes is not None:
        t_size, v_sizes = voxel_sizes
        v_sizes = np.broadcast_to(np.asarray(v_sizes, float), (vols.shape[0],))
        bad = np.flatnonzero(~np.isclose(v_sizes, float(t_size), rtol=1e-4, atol=0))
        if bad.size:
            raise InputError(f"voxel size mismatch: target {float(t_size):g} Å, volume {bad[0]} "
                             f"{v_sizes[bad[0]]:g} Å; resample to a common pixel size first")
    grid = ShellGrid(K=K, R=R, L=L)
    # one transform (one finufft plan per thread, points set once) for target and volumes,
    # at the wider of their precisions; it checks K against the box's Nyquist frequency
    transform = ShellTransform(grid, tgt.shape[1], np.result_type(tgt.dtype, vols.dtype),
                               eps, transform_precision)
    ranks = rank_pair(rank)
    cb = transform(tgt)
    ca = transform(vols)
    basis = None
    if ranks is not None:
        from radsvd._validate import rank as _rank

        basis = volume_svd(cb, grid, H_C=_rank(ranks[0], grid.R, "radial rank H_C"))
    return align_volumes(ca, cb[0], grid, basis, ranks, refine=refine,
                         return_landscapes=return_landscapes, progress=progress,
                         precision=precision)


def rank_sweep(coef_volumes, coef_target, grid: ShellGrid, ranks, basis: VolumeBasis | None = None,
               n_beta: int | None = None, M: int | None = None, block: int = 8) -> list[dict]:
    """Metrics of compressed landscapes against the full one over the whole SO(3) grid
    (relative Frobenius error, correlation, backward-error fraction f; radsvd.metrics),
    streaming over blocks of volumes.  ranks: list of H or (H_C, H_D).  basis: default, for each
    pair, the radial/degree-SVD of the target with D formed at radial rank H_C (eq. 111, 116).
    Returns one dict per rank pair (with 'H_C', 'H_D' added)."""
    from radsvd.metrics import sweep

    ranks = [rank_pair(r) for r in ranks]
    if not ranks or any(r is None for r in ranks):
        raise InputError("ranks: need one or more ranks, each H or (H_C, H_D)")
    # double precision throughout: the metrics measure compression alone (full ranks give
    # the full landscape to rounding)
    full = prepare(grid, coef_target, n_beta=n_beta, M=M)
    plans = []
    for r in ranks:
        b = basis
        if b is None:
            from radsvd._validate import rank as _rank

            b = volume_svd(coef_target, grid, H_C=_rank(r[0], grid.R, "radial rank H_C"))
        plans.append(prepare(grid, coef_target, b, r, n_beta, M, wigner=full.wigner,
                             precision="double"))

    def tiles():
        for a0, a1, (X, *XH) in landscape_blocks(coef_volumes, [full] + plans, block,
                                                  reuse=True):
            n = a1 - a0
            yield X.reshape(n, -1), [x.reshape(n, -1) for x in XH]

    out = sweep(tiles(), len(plans))
    for d, (hc, hd) in zip(out, ranks):
        d.update(H_C=hc, H_D=hd)
    return out
