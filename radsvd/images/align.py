"""Best rotations (and shifts) and landscapes of image stacks against targets: the functions
over :class:`~radsvd.images.plan.ImagePlan`, which holds the engine (eq. 35–36, 84, §5).

:func:`align_images` builds the plan (or takes one, ``plan=``) and runs
:meth:`~ImagePlan.best_poses` or, with ``max_shift``, :meth:`~ImagePlan.best_poses_shifted`;
:func:`landscapes` and :func:`landscape_tiles` give whole landscapes X(γ_j; A, B) (eq. 35,
84), :func:`rank_sweep` the accuracy of the compressed ones against the full (§3.5).
Conventions: docs/design.md (the angle rotates the TARGET counter-clockwise; the shift moves
the image's density by +shift).
"""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

from radsvd._timer import StageTimer
from radsvd._validate import InputError, grid_of, rank as check_rank
from radsvd.grids import PolarGrid
from radsvd.images.basis import RadialBasis
from radsvd.images.plan import (IMAGE_TILE, SUB, TARGET_TILE, AlignResult, ImagePlan,
                                check_fb_source, load, prepare)
from radsvd.images.shifts import check_shift_options

__all__ = ["AlignResult", "ImagePlan", "align_images", "landscapes", "landscape_tiles",
           "prepare", "rank_sweep"]


def _tile_pair(tile) -> tuple[int, int]:
    return (IMAGE_TILE, TARGET_TILE) if tile is None else (int(tile[0]), int(tile[1]))


def align_images(fb_a, fb_b, grid: PolarGrid | None = None, basis: RadialBasis | None = None,
                 rank=None, *, plan: ImagePlan | None = None, refine: bool = False,
                 all_pairs: bool = False, progress: bool = False, precision: str = "auto",
                 tile: tuple[int, int] | None = None, sub: int | None = None,
                 max_shift: float = 0.0, shift_step: float = 1.0, box: int | None = None,
                 timer: dict | None = None) -> AlignResult:
    """Best rotation (and shift) and target for every image, streaming over tiles of pairs
    (eq. 35–36, 84; shifts §5).

    X(γ) = <Â, R_γ B̂> with R_γ rotating the TARGET counter-clockwise; with shifts
    X(γ, δ) = <Â, T_δ R_γ B̂>, the image being the target rotated by γ then moved by +δ.
    Ties go to the lowest target, then the lowest shift, then the lowest γ.

    Parameters
    ----------
    fb_a : array_like
        (N_A, R, Q//2+1) FB coefficients of the images: an array, a memmap or any object
        with ``.shape`` and slicing (e.g. :class:`~radsvd.images.FBSource`), read one tile
        of images at a time.
    fb_b : array_like
        (N_B, R, Q//2+1) FB coefficients of the targets.
    grid : PolarGrid, optional
        The grid (not with ``plan``).
    basis : RadialBasis, optional
        None for the full landscape, or a basis for the compressed one (not with ``plan``).
    rank : int or "full", optional
        H, 1 ≤ H ≤ R (not with ``plan``).
    plan : ImagePlan, optional
        A plan to use instead of grid, basis, rank and precision.
    refine : bool
        Off-grid angle (eq. 23); with shifts off-grid (γ, δ)
        (:func:`radsvd.images.shifts.refine_poses`).
    all_pairs : bool
        Also every pair's angle and score (and shift).
    progress : bool
        A progress bar on stderr.
    precision : {"auto", "single", "double"}
        As for :class:`ImagePlan`.
    tile : (int, int), optional
        Images and targets per tile (default 64 × 128).
    sub : int, optional
        Pairs per DFT piece (default 1024).
    max_shift : float
        Radius of the disc of shifts searched, pixels (0: rotations only).
    shift_step : float
        Step of the shift grid, pixels.
    box : int, optional
        N, the images' pixels per side (an :class:`~radsvd.images.FBSource` knows it).
    timer : dict, optional
        Seconds per stage ('targets', 'images', 'pairs', 'refine', summed over tasks, and
        'total' wall time) are added to it.

    Returns
    -------
    AlignResult
        best_target, angle, score (and shift; angles, scores with all_pairs).

    Examples
    --------
    >>> grid = radsvd.PolarGrid(K=16)
    >>> x = (np.arange(32) - 16) / 16.0
    >>> blob = np.exp(-((x[None, :] - 0.3) ** 2 + x[:, None] ** 2) / 0.02)   # at (0.3, 0)
    >>> turned = np.exp(-(x[None, :] ** 2 + (x[:, None] - 0.3) ** 2) / 0.02)  # at (0, 0.3)
    >>> result = radsvd.align_images(radsvd.images_to_fb(turned, grid),
    ...                              radsvd.images_to_fb(blob, grid), grid, refine=True)
    >>> round(float(np.degrees(result.angle[0])), 1)     # the target turned by +90°
    90.0
    """
    clock = StageTimer(timer)
    if plan is None:
        if grid is None:
            raise InputError("align_images: give grid= (and basis=, rank=) or plan=")
        plan = ImagePlan(grid, basis, rank=rank, precision=precision)
    elif not isinstance(plan, ImagePlan):
        raise InputError(f"plan: expected an ImagePlan, got {type(plan).__name__}")
    elif grid is not None or basis is not None or rank is not None or precision != "auto":
        raise InputError("align_images: give plan= or grid/basis/rank/precision, not both")
    image_tile, target_tile = _tile_pair(tile)
    options = dict(refine=refine, all_pairs=all_pairs, tile=image_tile,
                   sub=SUB if sub is None else sub, progress=progress, timer=timer)
    fb_a = check_fb_source(fb_a, plan.grid, "fb_a")
    fb_b = check_fb_source(fb_b, plan.grid, "fb_b")
    if max_shift is not None and max_shift != 0:
        if box is None:
            box = getattr(fb_a, "N", None)
        if box is None:
            raise InputError("max_shift needs the image box N (box=...) to convert pixels")
        check_shift_options(max_shift, shift_step, int(box))
    elif max_shift is not None:
        check_shift_options(max_shift, shift_step)
    with clock.stage("targets"):
        targets = plan.targets(fb_b, tile=target_tile)
    if max_shift:
        result = plan.best_poses_shifted(fb_a, targets, max_shift=max_shift,
                                         shift_step=shift_step, box=box, **options)
    else:
        result = plan.best_poses(fb_a, targets, **options)
    clock.lap("total")
    return result


def landscape_tiles(fb_a, fb_b, grid: PolarGrid, bases=((None, None),), *, precision="auto",
                    tile: tuple[int, int] | None = None):
    """Yield ``(a0, a1, b0, b1, [X_tile per (basis, rank)])``, each X (na·nb, Q) float64.

    ``bases``: sequence of (basis, rank) or (basis, rank, precision) entries, e.g.
    ((None, None), (svd, 2), (svd, 6)); ``precision`` applies to entries without their own.
    Streaming (serial) generator for metrics next to the full calculation
    (:meth:`ImagePlan.landscape_tiles` per entry).
    """
    grid = grid_of(grid, PolarGrid)
    fb_a = check_fb_source(fb_a, grid, "fb_a")
    fb_b = check_fb_source(fb_b, grid, "fb_b")
    plans = [ImagePlan(grid, e[0], rank=e[1], precision=e[2] if len(e) > 2 else precision)
             for e in bases]
    image_tile, target_tile = _tile_pair(tile)
    fb = load(fb_b, 0, int(fb_b.shape[0]), "fb_b")
    streams = [p.landscape_tiles(fb_a, p.targets(fb, tile=target_tile), tile=image_tile)
               for p in plans]
    for parts in zip(*streams):
        a0, a1, b0, b1, _ = parts[0]
        yield a0, a1, b0, b1, [X for *_, X in parts]


def landscapes(fb_a, fb_b, grid: PolarGrid, basis: RadialBasis | None = None, rank=None, *,
               precision: str = "double", max_bytes: float = 2 * 2**30, shifts=None,
               box: int | None = None) -> np.ndarray:
    """The whole landscape array X(γ_j; A, B), shape (N_A, N_B, Q) float64 (eq. 35 / 84).

    X[i, j, m] = <Â_i, R_γm B̂_j>, γ_m = 2πm/Q, R_γ rotating the target counter-clockwise.
    ``shifts`` (S, 2) pixels of an N = ``box`` image: X[i, j, s, m] = <Â_i, T_δs R_γm B̂_j>,
    shape (N_A, N_B, S, Q).  Refuses arrays above ``max_bytes`` (use :func:`align_images`).
    """
    plan = ImagePlan(grid, basis, rank=rank, precision=precision)
    fb_a = check_fb_source(fb_a, plan.grid, "fb_a")
    fb_b = check_fb_source(fb_b, plan.grid, "fb_b")
    NA, NB, Q = int(fb_a.shape[0]), int(fb_b.shape[0]), plan.grid.Q
    S = 1 if shifts is None else len(np.asarray(shifts).reshape(-1, 2))
    nbytes = 8.0 * NA * NB * S * Q
    if nbytes > max_bytes:
        raise InputError(f"the landscape array would need {nbytes / 2**30:.2f} GiB (> "
                         f"max_bytes); use align_images, which streams over tiles")
    X = np.empty((NA, S, NB, Q))
    with threadpool_limits(limits=1, user_api="blas"):
        for a0, a1, b0, b1, Xt in plan.landscape_tiles(fb_a, fb_b, shifts=shifts, box=box):
            X[a0:a1, :, b0:b1] = Xt.reshape(a1 - a0, S, b1 - b0, Q)
    return X[:, 0] if shifts is None else X.transpose(0, 2, 1, 3)


def rank_sweep(fb_a, fb_b, grid: PolarGrid, basis: RadialBasis, ranks, *, precision="double",
               tile: tuple[int, int] | None = None) -> dict:
    """Accuracy of the compressed landscapes at several ranks, next to the full calculation.

    For every H in ``ranks``: relative Frobenius error, correlation and backward-error fraction
    f of X^H against the full X (docs/design.md), computed tile by tile (memory independent of
    N_A × N_B × Q).  The full X is always float64; ``precision`` is that of the X^H.
    Returns {H: {'rel_frobenius', 'correlation', 'f', 'n_pairs'}}.
    """
    from radsvd.metrics import sweep

    if not isinstance(basis, RadialBasis):
        raise InputError(f"basis: expected a RadialBasis, got {type(basis).__name__}")
    grid = grid_of(grid, PolarGrid)
    Hs = [check_rank(h, grid.R) for h in ranks]
    if not Hs:
        raise InputError("ranks is empty")
    bases = [(None, None, "double")] + [(basis, h, precision) for h in Hs]
    with threadpool_limits(limits=1, user_api="blas"):
        stream = ((Xs[0], Xs[1:]) for *_, Xs in
                  landscape_tiles(fb_a, fb_b, grid, bases, precision=precision, tile=tile))
        results = sweep(stream, len(Hs))
    return dict(zip(Hs, results))
