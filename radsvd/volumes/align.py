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
    to superimpose it on the target; ``score`` = X at the optimum (:func:`align_volumes`: the
    Fourier inner product <Â, R_τ B̂>, full landscape if refined, else the landscape that was
    searched; :func:`align_volume_maps`: normalised to a correlation); ``tau`` the landscape
    maximiser (target → volume).  ``landscapes``: (n, n_β, M, M) if requested.  Maps
    (:func:`align_volume_maps`) also get ``shift`` (n, 3) Å, ``transform`` (n, 4, 4),
    ``mirrored`` (n,) and ``candidates`` (n, c, 8)."""

    euler: np.ndarray
    matrix: np.ndarray
    score: np.ndarray
    tau: np.ndarray
    landscapes: np.ndarray | None = None
    info: dict = field(default_factory=dict)
    shift: np.ndarray | None = None
    transform: np.ndarray | None = None
    mirrored: np.ndarray | None = None
    candidates: np.ndarray | None = None

    def save(self, path, **extra) -> None:
        """Write an .npz atomically (:func:`radsvd._files.save_npz`); ``info`` entries as
        ``info_<key>``, ``extra`` arrays under their names."""
        arrays = dict(euler=self.euler, score=self.score, matrix=self.matrix, tau=self.tau,
                      **extra)
        for key in ("landscapes", "shift", "transform", "mirrored", "candidates"):
            if getattr(self, key) is not None:
                arrays[key] = getattr(self, key)
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


def _map_stack(volumes, name: str) -> list:
    """Real cubic maps as a list (one (N, N, N) map, a stack (n, N, N, N), or a list of
    maps of any boxes), each validated (finite, cubic)."""
    from radsvd._validate import real_stack

    if isinstance(volumes, (list, tuple)):
        if not volumes:
            raise InputError(f"{name}: no maps given")
        return [real_stack(np.asarray(v), f"{name}[{i}]", ndim=3, dtype=None)[0]
                for i, v in enumerate(volumes)]
    v = np.asarray(volumes)
    return list(real_stack(v[None] if v.ndim == 3 else v, name, ndim=3, dtype=None))


def _positive_sizes(sizes, n: int, name: str) -> np.ndarray:
    s = np.broadcast_to(np.asarray(sizes, dtype=float), (n,))
    bad = np.flatnonzero(~(np.isfinite(s) & (s > 0)))
    if bad.size:
        raise InputError(f"{name}: voxel size of map {bad[0]} is {s[bad[0]]!r}; give a "
                         "positive size in Å")
    return s


def align_volume_maps(volumes, target, K: float | None = None, rank=None,
                      L: int | None = None, R: int | None = None, voxel_sizes=None,
                      refine: bool = True, return_landscapes: bool = False,
                      progress: bool = False, eps: float | None = None,
                      precision: str = "auto", transform_precision: str | None = None, *,
                      max_shift: float | None = None, mirror="no", lowpass: float | None = None,
                      mask_radius: float | None = None, target_mask=None,
                      n_candidates: int = 4, origins=None, names=None) -> VolumeAlignResult:
    """Fit real-space maps onto a target: rotation, translation and (``mirror``) hand, for
    maps of any box and voxel size (:mod:`radsvd.volumes.fit` states the model).

    volumes: one map (N, N, N), a stack (n, N, N, N) or a list of cubic maps of any boxes;
    target (N_B, N_B, N_B).  voxel_sizes: (target's, [volumes']) in Å (default 1 Å each):
    every map is sampled at the target's physical frequencies, no resampling.  K: maximum
    frequency in the target's box units (default min(48, half the smallest Nyquist
    frequency of the maps)).  rank: None/"full", H, (H_C, H_D) or "auto": the rotation
    search's landscape (the radial/degree-SVD of the target); a rank whose spectrum keeps
    too little falls back to full (:func:`~radsvd.volumes.fit.choose_rank`, reported in
    ``info``).  Candidates, translations and scores always use the full landscape, so the
    scores compare between ranks.

    max_shift (Å, default a tenth of the target's box): both maps are centred on their
    centres of mass and the translation searched within this radius; 0: no centring and
    no translation (rotation about the box centres).  mirror: "no", "yes" (only the
    mirrored map) or "auto" (both hands; the better is kept, both scores in ``info``).
    lowpass (Å): Gaussian low-pass, half amplitude at that resolution; mask_radius (Å): a
    soft sphere about each map's centre of mass; target_mask: an array on the target's
    box multiplying the target.  n_candidates: rotation peaks examined per hand; those
    within 5% of the best score are refined too, and the best of the other hand unless it
    scores below 80% of the best; all are returned (``candidates``).
    refine: joint off-grid refinement (:func:`~radsvd.volumes.fit.refine_pose`).
    origins: (target's, [volumes']) (x, y, z) Å of voxel 0 (MRC origin) for ``transform``.
    names: the volumes' names in error messages (default volumes[i]).

    Result: ``euler``/``matrix``/``tau`` as :func:`align_volumes` (proper rotation);
    ``score`` the normalised correlation X/(||Â|| ||B̂||) at the optimum; ``shift`` (n, 3) Å
    and ``transform`` (n, 4, 4), ``mirrored`` (n,), ``candidates`` (n, c, 8): rot, tilt,
    psi (°), shift x, y, z (Å), mirrored, correlation (see ``info['convention']``).
    """
    from radsvd._nufft import transform_precision as _tp
    from radsvd.volumes import fit
    from radsvd.volumes.shells import sht

    tgt = _map_stack(target, "target")
    if len(tgt) != 1:
        raise InputError(f"target: expected one volume, got {len(tgt)}")
    tgt = tgt[0]
    vols = _map_stack(volumes, "volumes")
    n = len(vols)
    names = [f"volumes[{i}]" for i in range(n)] if names is None else list(names)
    if voxel_sizes is None:
        t_size, v_sizes = 1.0, np.ones(n)
    else:
        t_size, v_sizes = voxel_sizes
    t_size = float(_positive_sizes(t_size, 1, "voxel_sizes (target)")[0])
    v_sizes = _positive_sizes(v_sizes, n, "voxel_sizes (volumes)")
    if mirror not in ("no", "yes", "auto"):
        raise InputError(f"mirror must be 'no', 'yes' or 'auto', got {mirror!r}")
    if isinstance(n_candidates, bool) or int(n_candidates) != n_candidates or n_candidates < 1:
        raise InputError(f"n_candidates must be a positive integer, got {n_candidates!r}")
    NB = tgt.shape[0]
    unit = 0.5 * NB * t_size                            # Å per target box unit
    dxs = 2.0 * v_sizes / (NB * t_size)                 # the maps' voxel spacings, box units
    nyquist = float(np.pi / max(dxs.max(), 2.0 / NB))
    if K is None:
        K = min(48.0, 0.5 * nyquist)
    radius = 0.1 * NB * t_size if max_shift is None else fit.check_max_shift(max_shift)
    radius /= unit
    lowpass_k = None
    if lowpass is not None:
        if not float(lowpass) > 0:
            raise InputError(f"lowpass must be a resolution in Å > 0, got {lowpass!r}")
        lowpass_k = np.pi * NB * t_size / float(lowpass)        # k = π N p s
    if mask_radius is not None and not float(mask_radius) > 0:
        raise InputError(f"mask_radius must be a radius in Å > 0, got {mask_radius!r}")
    if target_mask is not None and np.shape(target_mask) != tgt.shape:
        raise InputError(f"target_mask: shape {np.shape(target_mask)} differs from the "
                         f"target's {tgt.shape}")
    grid = ShellGrid(K=K, R=R, L=L)
    dtype = np.result_type(tgt.dtype, *(v.dtype for v in vols))
    prec, eps = _tp(dtype, eps, transform_precision)
    transforms = {}

    def samples(vol, dx, size, mask=None):
        key = (vol.shape[0], float(dx))
        if key not in transforms:
            transforms[key] = ShellTransform(grid, vol.shape[0], dtype, eps, prec, dx=dx)
        s = fit.map_samples(vol, grid, transforms[key], voxel_size=size, lowpass_k=lowpass_k,
                            mask_radius=None if mask_radius is None else mask_radius / size,
                            mask=mask)
        if radius == 0:                  # no translation: rotation about the box centres
            s.samples = s.samples * np.exp(-1j * (s.centre @ fit._nodes(grid))).reshape(
                s.samples.shape)
            s.centre = np.zeros(3)
        return s

    b = samples(tgt, 2.0 / NB, t_size, target_mask)
    t_vol = tgt if target_mask is None else tgt * target_mask
    if mask_radius is not None:
        t_vol = t_vol * fit.soft_sphere(NB, fit.centre_of_mass(t_vol), mask_radius / t_size)
    rotated_target = fit.RotatedTarget(t_vol, grid, transforms[(NB, 2.0 / NB)], b, lowpass_k)
    coef_b = sht(b.samples[None], grid)[0]
    degenerate_targets(coef_b[None], grid.degrees == 0, "target", flat="error")
    rank_info = dict(rank_requested="full", rank_used="full", rank_reason="full requested")
    search_rank = None
    basis = None
    if rank is not None and not (isinstance(rank, str) and rank == "full"):
        from radsvd._validate import rank as _rank

        if rank == "auto":
            basis = volume_svd(coef_b[None], grid)
            search_rank, rank_info = fit.choose_rank(basis, grid, "auto")
            pair = None if search_rank is None else (search_rank, search_rank)
        else:
            pair = rank_pair(rank)
            basis = volume_svd(coef_b[None], grid, H_C=_rank(pair[0], grid.R, "radial rank H_C"))
            _rank(pair[1], grid.L + 1, "degree rank H_D")
            chosen, rank_info = fit.choose_rank(basis, grid, max(pair))
            if chosen is None:
                pair = None
        search_rank = pair
    plan = prepare(grid, coef_b, basis if search_rank is not None else None, search_rank,
                   precision=precision)
    full_plan = plan if not plan.compressed else prepare(
        grid, coef_b, n_beta=plan.n_beta, M=plan.M, wigner=plan.wigner)
    nodes = fit.half_nodes(grid)
    h = 2.0 / NB                                        # translation grid: one target voxel
    step = 2.0 * np.pi / max(plan.M, plan.n_beta)
    hands = {"no": [False], "yes": [True], "auto": [False, True]}[mirror]
    n_c = len(hands) * int(n_candidates)
    tau = np.zeros((n, 3))
    shift = np.zeros((n, 3))
    score = np.zeros(n)
    mirrored = np.zeros(n, dtype=bool)
    transform = np.zeros((n, 4, 4))
    cands = np.full((n, n_c, 8), np.nan)
    hand_scores = np.full((n, 2), np.nan)
    land = (np.empty((n, plan.n_beta, plan.M, plan.M), dtype=plan.real_dtype)
            if return_landscapes else None)
    o_b, o_v = (np.zeros(3), np.zeros((n, 3))) if origins is None else origins
    o_v = np.broadcast_to(np.asarray(o_v, float), (n, 3))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, unit="map", desc="align-volumes")
    for v, vol in enumerate(vols):
        a = samples(vol, dxs[v], v_sizes[v])
        if not a.norm > 1e-10 * b.norm:
            raise InputError(f"{names[v]}: the map has no energy within K = {grid.K:g} "
                             "(empty or constant); nothing to align")
        found = []                       # [hand, tau, t, X, refined]
        for hand in hands:
            X = plan(a.coefficients(grid, None, hand)[None])[0]
            if land is not None and hand == hands[0]:
                land[v] = X
            taus, _ = fit.rotation_candidates(X, plan, int(n_candidates))
            for tc in taus:
                c = fit._phase_sum(a, rotated_target, tc, hand)
                if radius > 0:
                    t, val = fit.translation_grid(c, nodes, h, radius)
                else:
                    t, val = np.zeros(3), fit.translation_value(c, nodes, np.zeros(3))
                found.append([hand, tc, t, val, False])
        if refine:
            top = max(f[3] for f in found)
            best_of_hand = {hd: max((f for f in found if f[0] == hd), key=lambda f: f[3])[1]
                            .tolist() for hd in hands}
            for f in found:
                # near-equal peaks (within 5%), and the best of each hand unless it is far
                # behind (below 80%: its grid score is reported unrefined)
                if f[3] >= top - 0.05 * abs(top) or (f[1].tolist() == best_of_hand[f[0]]
                                                      and f[3] >= 0.8 * top):
                    f[1], f[2], f[3] = fit.refine_pose(a, rotated_target, grid, full_plan, f[1], f[2],
                                                       mirrored=f[0], radius=radius, step=step)
                    f[4] = True
        found.sort(key=lambda f: -f[3])
        hand, tau[v], t, val, _ = found[0]
        mirrored[v] = hand
        score[v] = val / (a.norm * b.norm)
        for hd in hands:
            hand_scores[v, int(hd)] = max(f[3] for f in found if f[0] == hd) / (a.norm * b.norm)
        Rm, tv = fit.pose_transform(tau[v], t, a, b, hand)
        shift[v] = tv * unit
        transform[v] = fit.chimerax_matrix(Rm, tv * unit, vol.shape[0], v_sizes[v], o_v[v],
                                           NB, t_size, o_b)
        for k, f in enumerate(found):
            e = np.degrees(canonical_euler(invert_euler(f[1])))
            Rc, tvc = fit.pose_transform(f[1], f[2], a, b, f[0])
            cands[v, k] = [e[2], e[1], e[0], *(tvc * unit), float(f[0]),
                           f[3] / (a.norm * b.norm)]
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    tau = canonical_euler(tau)
    euler = canonical_euler(invert_euler(tau))
    info = dict(H_C=plan.H_C, H_D=plan.H_D, compressed=plan.compressed, n_beta=plan.n_beta,
                precision=plan.precision, M=plan.M, K=grid.K, R=grid.R, L=grid.L,
                refined=bool(refine), max_shift=radius * unit, mirror=mirror,
                score_unmirrored=hand_scores[:, 0], score_mirrored=hand_scores[:, 1],
                voxel_size=t_size, transform_precision=prec, **rank_info)
    return VolumeAlignResult(euler=euler, matrix=rotation_matrix(euler), score=score, tau=tau,
                             landscapes=land, info=info, shift=shift, transform=transform,
                             mirrored=mirrored, candidates=cands)


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
