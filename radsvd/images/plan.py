"""The 2D engine's plan: best rotations (and shifts) and landscapes for all image–target pairs.

Landscape (eq. 35–36, 84): for images A and targets B with (compressed) rings ã_h, b̃_h,
    X(γ_j; A, B) = <Â, R_γj B̂> = (2π/Δψ) Σ_q e^{-iqγ_j} Σ_h conj(ã_h(q)) b̃_h(q),  γ_j = 2πj/Q,
where R_γ rotates the TARGET B counter-clockwise by γ (in the (x, y) plane, x = last array
axis, y = first array axis, about pixel (N//2, N//2)).  So `angle` is the rotation to apply to
the target to match the image; equivalently the image is the target rotated by `angle`.
Full path: ã_r = η_r a(k_r, ·) (identity basis, H = R).  Compressed path: a RadialBasis.

:class:`ImagePlan` holds what does not depend on the images: the grid, the basis and rank,
the precision and the DFT tables.  :meth:`ImagePlan.targets` prepares a set of targets once
(:class:`Targets`), and the plan then runs on any number of image stacks.

How it runs.  Real images need only q = 0 … Q/2.  Per tile of ta × tb pairs:
1. contraction Z(q) = Σ_h conj(ã_h(q)) b̃_h(q) as real GEMMs, [Re ã | Im ã] against
   [[Re b̃, Im b̃], [Im b̃, -Re b̃]] for every q (output rows (q, re/im), pairs contiguous);
2. the real length-Q inverse DFT (X is real: only q = 0 … Q/2 enter) as four small real GEMMs
   with quarter DFT matrices: cos and sin parts of even and odd q on j = 0 … ⌊Q/4⌋; parity
   gives γ + π and the sign of the sine gives −γ, so each product yields four landscape values
   (≈ Q²/4 multiply-adds per pair instead of Q²);
3. a compiled one-pass scan that forms the four values and keeps the max and first argmax
   over γ (optional off-grid refinement, eq. 23: parabola through the grid maximum, then
   Newton on the trigonometric polynomial).
Pieces of ``sub`` pairs keep step 2–3 buffers in cache.
Tiles are independent tasks run by a pool of ``numba.get_num_threads()`` threads with BLAS
single-threaded, and merged in a fixed order: results are bitwise identical for any thread
count.  Memory: the prepared targets, one image tile per task and per-worker tile buffers,
plus O(N_A) results (O(N_A·N_B) with all_pairs) — never N_A × N_B × Q.

Shifts (paper §5): every (image, shift) is a row of side A.  Its principal rings come from
the image's polar samples times the phases e^{+ik·δ} (the image moved by −δ), compressed over
r, then one FFT along ψ per principal ring (:class:`ShiftedRows`): a (pair, shift) costs
what a pair costs without shifts.  The best poses and the shifted landscapes share it.

Precision: ``precision="double"`` (float64 GEMMs) or ``"single"`` (float32 GEMMs; FB
coefficients, compression and refinement stay float64).  Default ("auto"): double on the
full path (and for H = R), single on the compressed path H < R (tests and the benchmark check
that f and the correlation agree with double to 1e-4).

Measured throughput and speedups: docs/performance.md (generated from ``radsvd bench``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
import scipy.fft

from radsvd._files import save_npz
from radsvd._pool import pool_map
from radsvd._precision import Precision
from radsvd._timer import StageTimer
from radsvd._validate import (InputError, all_finite, degenerate_targets, grid_of,
                              rank as check_rank)
from radsvd.grids import PolarGrid
from radsvd.images import _kernels as kernels
from radsvd.images._radial import polar_samples
from radsvd.images.basis import RadialBasis
from radsvd.images.shifts import check_shift_options, refine_poses, shift_grid, shift_phases

__all__ = ["AlignResult", "ImagePlan", "ShiftedRows", "Targets", "prepare"]

IMAGE_TILE = 64     # images per tile: 64 × 128 was the fastest measured for the full path
TARGET_TILE = 128   # and for H = 6 (2-core Xeon, K = 48); larger tiles push Z out of L2
SUB = 1024          # pairs per DFT piece: the quarter-DFT buffers stay in L2


# ----------------------------------------------------------------------------- tables
class _Tables:
    """q ordering (even q first), quarter DFT matrices and refinement weights."""

    def __init__(self, Q: int, dtype):
        nf = Q // 2 + 1
        J = Q // 2
        q = np.arange(nf)
        self.perm = np.concatenate([q[q % 2 == 0], q[q % 2 == 1]])
        self.n_even = int(np.sum(q % 2 == 0))
        w = np.full(nf, 2.0)
        w[0] = 1.0
        w[-1] = 1.0  # q = Q/2: cos(Q/2 γ_j) = (-1)^j, its sine vanishes on the grid
        self.cw = np.ascontiguousarray(Q * w[self.perm])
        self.qs = np.ascontiguousarray(self.perm.astype(np.int64))
        gam = 2.0 * np.pi * np.arange(J) / Q
        M = np.empty((J, 2 * nf))
        for i, qq in enumerate(self.perm):
            M[:, 2 * i] = self.cw[i] * np.cos(qq * gam)
            M[:, 2 * i + 1] = self.cw[i] * np.sin(qq * gam)
        ne2 = 2 * self.n_even
        # quarter DFTs (cos/sin × even/odd q) on j = 0 … ⌊J/2⌋, see _kernels._best4
        Jh1 = J // 2 + 1
        self.CE = np.ascontiguousarray(M[:Jh1, 0:ne2:2], dtype=dtype)
        self.SE = np.ascontiguousarray(M[:Jh1, 1:ne2:2], dtype=dtype)
        self.CO = np.ascontiguousarray(M[:Jh1, ne2::2], dtype=dtype)
        self.SO = np.ascontiguousarray(M[:Jh1, ne2 + 1::2], dtype=dtype)
        self.Jh1 = Jh1
        self.Q, self.J, self.nf, self.dtype = Q, J, nf, dtype


_TABLE_CACHE: dict = {}


def _tables(Q: int, dtype) -> _Tables:
    key = (Q, np.dtype(dtype).str)
    if key not in _TABLE_CACHE:
        _TABLE_CACHE[key] = _Tables(Q, dtype)
    return _TABLE_CACHE[key]


# ----------------------------------------------------------------------------- inputs
def check_fb_source(fb, grid: PolarGrid, name: str):
    """Accept an (n, R, Q//2+1) complex array or any sliceable source with .shape."""
    if not hasattr(fb, "shape") or not hasattr(fb, "__getitem__"):
        fb = np.asarray(fb)
    shape = tuple(fb.shape)
    if len(shape) == 2:
        fb = np.asarray(fb)[None]
        shape = fb.shape
    if len(shape) != 3 or shape[1:] != (grid.R, grid.n_freq):
        raise InputError(f"{name}: expected Fourier–Bessel coefficients of shape "
                         f"(n, R={grid.R}, Q//2+1={grid.n_freq}), got {shape}")
    if shape[0] == 0:
        raise InputError(f"{name}: the stack is empty")
    return fb


def load(fb, a0: int, a1: int, name: str) -> np.ndarray:
    """Items a0 … a1−1 of a coefficient source as complex128, refusing NaN and inf."""
    x = np.ascontiguousarray(fb[a0:a1], dtype=np.complex128)
    if not all_finite(x):
        raise InputError(f"{name}: NaN or inf in coefficients of items {a0}..{a1 - 1}")
    return x


def check_tile(size, what: str) -> int:
    """A positive tile or piece size."""
    if int(size) < 1:
        raise InputError(f"tile sizes must be positive, got {what} = {size}")
    return int(size)


def tile_ranges(n: int, size: int) -> list[tuple[int, int]]:
    return [(i, min(n, i + size)) for i in range(0, n, size)]


def _apply_basis(M: np.ndarray, fb: np.ndarray) -> np.ndarray:
    """ã = Mᵀ a per image, as one real batched GEMM: (H×R) @ (R × 2n_freq) per image."""
    n, R, nf = fb.shape
    ar = fb.view(np.float64).reshape(n, R, 2 * nf)
    out = np.matmul(np.ascontiguousarray(M.T), ar)
    return out.reshape(n, M.shape[1], 2 * nf).view(np.complex128)


# ----------------------------------------------------------------------------- results
@dataclass
class AlignResult:
    """Best rotations (and shifts) of every image over all targets.

    Parameters
    ----------
    best_target : ndarray
        (N_A,) index of the target that matches image i best.
    angle : ndarray
        (N_A,) the angle γ (radians, in [0, 2π)) by which that TARGET must be rotated
        counter-clockwise about pixel (N//2, N//2) (x = last axis, y = first axis) to match
        image i.
    score : ndarray
        (N_A,) X(γ) = <Â, R_γ B̂> (with shifts <Â, T_δ R_γ B̂>).
    angles, scores : ndarray, optional
        (N_A, N_B) for every pair (``all_pairs``).
    info : dict
        rank, R, Q, K, precision, method, refine (and the shift search's parameters).
    shift : ndarray, optional
        (N_A, 2) = (sx, sy) pixels, the translation applied after the rotation (image ≈
        T_shift R_angle target, its density moved by +shift).
    shifts : ndarray, optional
        (N_A, N_B, 2) per pair (``all_pairs`` with shifts).

    Examples
    --------
    >>> grid = radsvd.PolarGrid(K=8)
    >>> fb = radsvd.images_to_fb(np.random.default_rng(0).standard_normal((4, 16, 16)), grid)
    >>> result = radsvd.align_images(fb, fb, grid)
    >>> result.best_target.tolist(), result.info["method"]
    ([0, 1, 2, 3], 'full')
    """

    best_target: np.ndarray
    angle: np.ndarray
    score: np.ndarray
    angles: np.ndarray | None = None
    scores: np.ndarray | None = None
    info: dict = field(default_factory=dict)
    shift: np.ndarray | None = None
    shifts: np.ndarray | None = None

    def save(self, path) -> None:
        """Write an .npz atomically (temporary file in the same directory, then os.replace)."""
        arrays = dict(best_target=self.best_target, angle=self.angle, score=self.score)
        if self.angles is not None:
            arrays.update(angles=self.angles, scores=self.scores)
        if self.shift is not None:
            arrays.update(shift=self.shift)
        if self.shifts is not None:
            arrays.update(shifts=self.shifts)
        for k, v in self.info.items():
            arrays[f"info_{k}"] = np.asarray(v)
        save_npz(path, **arrays)


# ----------------------------------------------------------------------------- plan
@dataclass
class Targets:
    """Targets prepared for one :class:`ImagePlan`: the coefficients as given (``fb``,
    complex128), their principal rings (``rings``, (N_B, H, Q//2+1)) and side B of the
    contraction per tile of ``tile`` targets."""

    fb: np.ndarray
    rings: np.ndarray
    tiles: list
    tile: int
    plan: ImagePlan

    def __len__(self) -> int:
        return self.fb.shape[0]


class _Buffers:
    """Per-worker tile buffers: Z, the four quarter DFTs of a piece, per-pair max and argmax."""

    def __init__(self, plan: ImagePlan, rows: int, cols: int, sub: int):
        pairs = rows * cols
        t = plan.tables
        self.sub = sub
        self.Z = np.empty(2 * t.nf * pairs, dtype=plan.dtype)
        self.Q4 = np.empty((4, t.Jh1 * sub), dtype=plan.dtype)
        self.val = np.empty(pairs, dtype=plan.dtype)
        self.idx = np.empty(pairs, dtype=np.int64)


class _WorkerBuffers:
    """One :class:`_Buffers` per pool thread."""

    def __init__(self, plan: ImagePlan, rows: int, cols: int, sub: int):
        self.args = (plan, rows, cols, sub)
        self._local = threading.local()

    def get(self) -> _Buffers:
        buf = getattr(self._local, "buffers", None)
        if buf is None:
            buf = self._local.buffers = _Buffers(*self.args)
        return buf


class ImagePlan:
    """The 2D engine's plan: grid, radial basis and rank H, precision and DFT tables
    (eq. 35–36, 84; :mod:`radsvd.images.plan`).

    Build it once, prepare each set of targets once (:meth:`targets`), then run
    :meth:`best_poses`, :meth:`best_poses_shifted` or :meth:`landscape_tiles` on any number
    of image stacks.  :func:`align_images` does all of it in one call.

    Parameters
    ----------
    grid : PolarGrid
        The polar grid of the images and targets.
    basis : RadialBasis, optional
        None for the full landscape (H = R), or a basis of the grid for the compressed one.
    rank : int or "full", optional
        H, 1 ≤ H ≤ R (H < R needs a basis); None or "full" for H = R.
    precision : {"auto", "single", "double"}
        Of the products: "auto" is single for H < R, else double
        (:class:`radsvd._precision.Precision`).

    Attributes
    ----------
    grid, basis : PolarGrid, RadialBasis or None
        As given.
    rank : int
        H.
    precision : str
        "single" or "double".
    dtype : type
        np.float32 or np.float64.

    Examples
    --------
    >>> grid = radsvd.PolarGrid(K=8)
    >>> rng = np.random.default_rng(0)
    >>> targets = radsvd.images_to_fb(rng.standard_normal((6, 16, 16)), grid)
    >>> plan = radsvd.ImagePlan(grid, radsvd.radial_svd(targets, grid), rank=4)
    >>> prepared = plan.targets(targets)
    >>> plan.best_poses(targets[[2, 5]], prepared).best_target.tolist()
    [2, 5]
    >>> plan.precision
    'single'
    """

    def __init__(self, grid: PolarGrid, basis: RadialBasis | None = None, *, rank=None,
                 precision: str = "auto"):
        grid = grid_of(grid, PolarGrid)
        if basis is None:
            if rank not in (None, "full") and check_rank(rank, grid.R) != grid.R:
                raise InputError("a rank H < R needs a basis (radial_svd, frequency_marching "
                                 "or energy_pca); the full path uses all R rings")
            H = grid.R
        else:
            if not isinstance(basis, RadialBasis):
                raise InputError(f"basis: expected a RadialBasis, got {type(basis).__name__}")
            if basis.R != grid.R or not np.allclose(basis.eta, grid.eta):
                raise InputError(f"basis was built for another grid (R={basis.R}); rebuild it "
                                 f"for R={grid.R}, Q={grid.Q}")
            H = grid.R if rank in (None, "full") else check_rank(rank, grid.R)
        resolved = Precision.of(precision, compressed=basis is not None and H < grid.R)
        self.grid, self.basis, self.rank, self.precision = grid, basis, H, resolved.name
        self.dtype = resolved.real
        self.tables = _tables(grid.Q, self.dtype)
        self.eta = grid.eta

    def __repr__(self) -> str:
        method = "full" if self.basis is None else self.basis.method
        return (f"ImagePlan(R={self.grid.R}, Q={self.grid.Q}, rank={self.rank}, "
                f"method={method!r}, precision={self.precision!r})")

    @property
    def info(self) -> dict:
        """The plan's part of an :class:`AlignResult`'s ``info``."""
        return dict(rank=self.rank, R=self.grid.R, Q=self.grid.Q, K=self.grid.K,
                    precision=self.precision,
                    method="full" if self.basis is None else self.basis.method)

    # ------------------------------------------------------------------ both sides
    def rings(self, fb: np.ndarray) -> np.ndarray:
        """Principal rings (n, H, n_freq) complex128 (η-weighted rings on the full path)."""
        if self.basis is None:
            return fb * self.eta[None, :, None]
        return _apply_basis(self.basis.matrix(self.rank), fb)

    def _side_a(self, rings: np.ndarray) -> np.ndarray:
        """(n_freq, n, 2H) real: [Re ã | Im ã] per q (even q first)."""
        t = np.transpose(rings[:, :, self.tables.perm], (2, 0, 1))
        return np.ascontiguousarray(np.concatenate([t.real, t.imag], axis=2), dtype=self.dtype)

    def _side_b(self, rings: np.ndarray) -> np.ndarray:
        """(n_freq, 2, 2H, n) real: [[Re b̃; Im b̃], [Im b̃; -Re b̃]] per q."""
        t = np.transpose(rings[:, :, self.tables.perm], (2, 1, 0))
        H = t.shape[1]
        out = np.empty((t.shape[0], 2, 2 * H, t.shape[2]), dtype=self.dtype)
        out[:, 0, :H] = t.real
        out[:, 0, H:] = t.imag
        out[:, 1, :H] = t.imag
        out[:, 1, H:] = -t.real
        return out

    def targets(self, fb_b, *, tile: int = TARGET_TILE) -> Targets:
        """Prepare targets (N_B, R, Q//2+1) once: their principal rings and side B per tile of
        ``tile`` targets.  Warns about targets the landscape cannot tell apart."""
        if isinstance(fb_b, Targets):
            if fb_b.plan is not self:
                raise InputError("targets were prepared by another ImagePlan")
            return fb_b
        fb_b = check_fb_source(fb_b, self.grid, "fb_b")
        tile = check_tile(tile, "target tile")
        fb = load(fb_b, 0, int(fb_b.shape[0]), "fb_b")
        rings = self.rings(fb)
        degenerate_targets(rings, np.arange(rings.shape[-1]) == 0, "targets (fb_b)")
        tiles = [(b0, b1, self._side_b(rings[b0:b1])) for b0, b1 in tile_ranges(len(fb), tile)]
        return Targets(fb, rings, tiles, tile, self)

    def _projected(self, fb_b: np.ndarray) -> np.ndarray:
        """Targets as the compressed landscape sees them: b' = η⁻¹ U_H U_Hᵀ η b, so that
        X^H(γ, δ; A, B) = X(γ, δ; A, B') (the full formula); b' = b on the full path."""
        if self.basis is None:
            return fb_b
        U = self.basis.vectors[:, :self.rank]
        P = (U @ U.T) * self.eta[None, :] / self.eta[:, None]
        return np.einsum("rs,nsq->nrq", P, fb_b, optimize=True)

    # ------------------------------------------------------------------ tiles
    def _tile_Z(self, side_a, side_b, buf: _Buffers) -> np.ndarray:
        """Step 1 for one tile: Z (2·n_freq, P), rows (q, re/im), pairs (a, b) row-major."""
        nf = self.tables.nf
        na, nb = side_a.shape[1], side_b.shape[3]
        P = na * nb
        Z4 = buf.Z[: 2 * nf * P].reshape(nf, 2, na, nb)
        np.matmul(side_a[:, None], side_b, out=Z4)
        return Z4.reshape(2 * nf, P)

    def _quarters(self, Z: np.ndarray, c0: int, c1: int, buf: _Buffers):
        """Step 2 for pairs c0:c1 of a tile: four real GEMMs with the quarter DFT matrices,
        EC, ES, OC, OS of shape (⌊J/2⌋+1, c1 − c0); cache-sized pieces of the tile."""
        t = self.tables
        n = c1 - c0
        EC, ES, OC, OS = (buf.Q4[i, : t.Jh1 * n].reshape(t.Jh1, n) for i in range(4))
        ne2 = 2 * t.n_even
        np.matmul(t.CE, Z[0:ne2:2, c0:c1], out=EC)
        np.matmul(t.SE, Z[1:ne2:2, c0:c1], out=ES)
        np.matmul(t.CO, Z[ne2::2, c0:c1], out=OC)
        np.matmul(t.SO, Z[ne2 + 1::2, c0:c1], out=OS)
        return EC, ES, OC, OS

    def _tile_best(self, side_a, side_b, buf: _Buffers):
        """Steps 1–3 for one tile: Z and the per-pair (max, first argmax) views into ``buf``."""
        Z = self._tile_Z(side_a, side_b, buf)
        P = Z.shape[1]
        for c0 in range(0, P, buf.sub):
            c1 = min(P, c0 + buf.sub)
            EC, ES, OC, OS = self._quarters(Z, c0, c1, buf)
            kernels._best4(EC, ES, OC, OS, self.tables.J, buf.val[c0:c1], buf.idx[c0:c1])
        return Z, buf.val[:P], buf.idx[:P]

    def _tile_landscape(self, side_a, side_b, buf: _Buffers) -> np.ndarray:
        """Whole landscapes of one tile, (na·nb, Q) float64."""
        Z = self._tile_Z(side_a, side_b, buf)
        P = Z.shape[1]
        J = self.tables.J
        X = np.empty((P, 2 * J), dtype=self.dtype)
        for c0 in range(0, P, buf.sub):
            c1 = min(P, c0 + buf.sub)
            EC, ES, OC, OS = self._quarters(Z, c0, c1, buf)
            kernels._assemble4(EC, ES, OC, OS, J, X[c0:c1])
        return X.astype(np.float64, copy=False)

    def _refine(self, Z: np.ndarray, index: np.ndarray):
        """Off-grid γ and value (eq. 23) of every pair of Z near its grid argmax ``index``."""
        angle = np.empty(len(index))
        value = np.empty(len(index))
        kernels._refine(np.ascontiguousarray(Z, dtype=np.float64), self.tables.qs,
                        self.tables.cw, index, self.grid.Q, angle, value)
        return angle, value

    def _z_pairs(self, rings_a: np.ndarray, rings_b: np.ndarray) -> np.ndarray:
        """Z for pairs (rings_a[i], rings_b[i]) in the engine's (2 n_freq, n) layout, float64."""
        z = np.einsum("nhq,nhq->qn", rings_a.conj(), rings_b)[self.tables.perm]
        out = np.empty((2 * z.shape[0], z.shape[1]))
        out[0::2] = z.real
        out[1::2] = z.imag
        return out

    def _run(self, task, items, progress: bool):
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(items), desc="align", unit="tile", file=None, leave=False)
        try:
            return pool_map(task, items, progress=bar)
        finally:
            if bar is not None:
                bar.close()

    def _prepared(self, fb_a, targets, tile, clock: StageTimer):
        """Checked images, prepared targets (timed as 'targets') and image tile."""
        fb_a = check_fb_source(fb_a, self.grid, "fb_a")
        if isinstance(targets, Targets):
            return fb_a, self.targets(targets), check_tile(tile, "image tile")
        fb_b = check_fb_source(targets, self.grid, "fb_b")
        tile = check_tile(tile, "image tile")
        with clock.stage("targets"):
            targets = self.targets(fb_b)
        return fb_a, targets, tile

    # ------------------------------------------------------------------ best poses
    def best_poses(self, fb_a, targets, *, refine: bool = False, all_pairs: bool = False,
                   tile: int = IMAGE_TILE, sub: int = SUB, progress: bool = False,
                   timer: dict | None = None) -> AlignResult:
        """Best rotation and target for every image (eq. 35–36, 84), streaming over tiles.

        ``fb_a``: (N_A, R, Q//2+1) coefficients of the images (an array, a memmap or any
        object with ``.shape`` and slicing, e.g. :class:`~radsvd.images.FBSource`, read one
        tile of ``tile`` images at a time); ``targets``: :meth:`targets` or their
        coefficients.  ``refine``: off-grid angle (eq. 23); ``all_pairs``: also every pair's
        angle and score; ``sub``: pairs per DFT piece; ``timer``: a dict to which the seconds
        of the stages 'targets', 'images', 'pairs' and 'refine' (summed over tasks) are added.
        Ties go to the lowest target, then the lowest γ.
        """
        clock = StageTimer(timer)
        fb_a, targets, tile = self._prepared(fb_a, targets, tile, clock)
        buffers = _WorkerBuffers(self, tile, targets.tile, check_tile(sub, "sub"))
        NA, NB = int(fb_a.shape[0]), len(targets)
        scores = np.empty((NA, NB)) if all_pairs else None
        angles = np.empty((NA, NB)) if all_pairs else None
        dg = 2.0 * np.pi / self.grid.Q

        def task(rng):
            a0, a1 = rng
            ck = StageTimer({})
            buf = buffers.get()
            ck.restart()
            rings_a = self.rings(load(fb_a, a0, a1, "fb_a"))
            side_a = self._side_a(rings_a)
            ck.lap("images")
            n = a1 - a0
            best_score = np.full(n, -np.inf)
            best_target = np.zeros(n, dtype=np.int64)
            best_index = np.zeros(n, dtype=np.int64)
            best_angle = None
            for b0, b1, side_b in targets.tiles:
                Z, val, idx = self._tile_best(side_a, side_b, buf)
                nb = b1 - b0
                if all_pairs:
                    angle, value = self._refine(Z, idx) if refine else (idx * dg, val)
                    scores[a0:a1, b0:b1] = value.reshape(n, nb)
                    angles[a0:a1, b0:b1] = angle.reshape(n, nb)
                    if refine:
                        # the best target by refined score (strict '>' in target order)
                        value = value.reshape(n, nb)
                        j = np.argmax(value, axis=1)
                        vj = value[np.arange(n), j]
                        better = vj > best_score
                        best_score[better] = vj[better]
                        best_target[better] = b0 + j[better]
                        if best_angle is None:
                            best_angle = np.zeros(n)
                        best_angle[better] = angle.reshape(n, nb)[np.arange(n), j][better]
                        continue
                kernels._row_best(val.reshape(n, nb), idx.reshape(n, nb), b0, best_score,
                                  best_target, best_index)
            ck.lap("pairs")
            if best_angle is None:
                best_angle = best_index * dg
            if refine and not all_pairs:
                Z = self._z_pairs(rings_a, targets.rings[best_target])
                best_angle, best_score = self._refine(Z, best_index)
                ck.lap("refine")
            return best_target, best_angle, best_score, ck

        parts = self._run(task, tile_ranges(NA, tile), progress)
        for part in parts:
            clock.merge(part[3])
        return AlignResult(np.concatenate([p[0] for p in parts]),
                           np.concatenate([p[1] for p in parts]),
                           np.concatenate([p[2] for p in parts]), angles, scores,
                           dict(self.info, refine=refine))

    def best_poses_shifted(self, fb_a, targets, *, max_shift: float, shift_step: float = 1.0,
                           box: int | None = None, refine: bool = False,
                           all_pairs: bool = False, tile: int = IMAGE_TILE, sub: int = SUB,
                           progress: bool = False, timer: dict | None = None) -> AlignResult:
        """Best rotation, shift and target for every image (paper §5), streaming over tiles.

        X(γ, δ) = <Â, T_δ R_γ B̂> over the disc of shifts of radius ``max_shift`` and step
        ``shift_step`` (pixels of the N = ``box`` image; an :class:`FBSource` knows N): the
        image is the target rotated by γ, then moved by +δ.  The result has ``shift``
        (N_A, 2) = (sx, sy) pixels (and ``shifts`` (N_A, N_B, 2) with ``all_pairs``; the
        per-pair values stay on the grid).  ``refine``: off-grid (γ, δ) by
        :func:`radsvd.images.shifts.refine_poses`.  Ties go to the lowest target, then the
        lowest shift, then the lowest γ.  Other options: :meth:`best_poses`.
        """
        clock = StageTimer(timer)
        fb_a, targets, tile = self._prepared(fb_a, targets, tile, clock)
        if box is None:
            box = getattr(fb_a, "N", None)
        if box is None:
            raise InputError("max_shift needs the image box N (box=...) to convert pixels")
        max_shift, shift_step = check_shift_options(max_shift, shift_step, int(box))
        with clock.stage("images"):
            rows = ShiftedRows(self, shift_grid(max_shift, shift_step, int(box)), int(box))
        ns = rows.n_shifts
        buffers = _WorkerBuffers(self, tile, targets.tile, check_tile(sub, "sub"))
        NA, NB = int(fb_a.shape[0]), len(targets)
        scores = np.empty((NA, NB)) if all_pairs else None
        angles = np.empty((NA, NB)) if all_pairs else None
        pair_shifts = np.empty((NA, NB, 2)) if all_pairs else None
        dg = 2.0 * np.pi / self.grid.Q

        def task(rng):
            a0, a1 = rng
            ck = StageTimer({})
            buf = buffers.get()
            ck.restart()
            fa = load(fb_a, a0, a1, "fb_a")
            n = a1 - a0
            side_a = rows.side_a(fa)                                # (nf, n·ns, 2H)
            ck.lap("images")
            best_score = np.full(n, -np.inf)
            best_target = np.full(n, NB, dtype=np.int64)
            best_index = np.zeros(n, dtype=np.int64)
            best_shift = np.full(n, ns, dtype=np.int64)
            if all_pairs:
                pair_score = np.full((n, NB), -np.inf)
                pair_index = np.zeros((n, NB), dtype=np.int64)
                pair_shift = np.full((n, NB), ns, dtype=np.int64)
            ck.restart()
            for v0 in range(0, n * ns, tile):
                row = np.arange(v0, min(n * ns, v0 + tile))
                image, shift = row // ns, row % ns
                for b0, b1, side_b in targets.tiles:
                    _, val, idx = self._tile_best(side_a[:, v0:v0 + len(row)], side_b, buf)
                    val = val.reshape(len(row), b1 - b0)
                    idx = idx.reshape(len(row), b1 - b0)
                    kernels._shift_row_best(val, idx, b0, image, shift, best_score,
                                            best_target, best_index, best_shift)
                    if all_pairs:
                        kernels._shift_pair_best(val, idx, b0, image, shift, pair_score,
                                                 pair_index, pair_shift)
            ck.lap("pairs")
            if all_pairs:
                scores[a0:a1] = pair_score
                angles[a0:a1] = pair_index * dg
                pair_shifts[a0:a1] = rows.shifts_px[pair_shift]
            best_angle, shift_px = best_index * dg, rows.shifts_px[best_shift]
            if refine:
                ck.restart()
                best_angle, shift_px, best_score = refine_poses(
                    fa, self._projected(targets.fb[best_target]), self.grid, best_angle,
                    shift_px, int(box), float(shift_step))
                ck.lap("refine")
            return best_target, best_angle, best_score, shift_px, ck

        n_img = max(1, (4 * tile) // ns)
        parts = self._run(task, tile_ranges(NA, n_img), progress)
        for part in parts:
            clock.merge(part[4])
        info = dict(self.info, refine=refine, max_shift=max_shift, shift_step=shift_step,
                    n_shifts=ns, box=int(box))
        return AlignResult(np.concatenate([p[0] for p in parts]),
                           np.concatenate([p[1] for p in parts]),
                           np.concatenate([p[2] for p in parts]), angles, scores, info,
                           np.concatenate([p[3] for p in parts]), pair_shifts)

    # ------------------------------------------------------------------ landscapes
    def landscape_tiles(self, fb_a, targets, *, tile: int = IMAGE_TILE, shifts=None,
                        box: int | None = None):
        """Yield ``(a0, a1, b0, b1, X)`` for every tile of images a0:a1 and targets b0:b1,
        X (n_rows·(b1 − b0), Q) float64 with rows the images, or with ``shifts`` (S, 2)
        pixels of an N = ``box`` image the (image, shift) pairs image-major:
        X[(i·S + s)·nb + j, m] = <Â_i, T_δs R_γm B̂_j> (eq. 35, 84; serial, streaming)."""
        fb_a = check_fb_source(fb_a, self.grid, "fb_a")
        targets = self.targets(targets)
        tile = check_tile(tile, "image tile")
        rows = None
        if shifts is not None:
            sh = np.asarray(shifts, np.float64).reshape(-1, 2)
            if box is None or not np.all(np.isfinite(sh)):
                raise InputError("landscapes: shifts need finite values and the image box N")
            rows = ShiftedRows(self, sh, int(box))
            tile = max(1, tile // rows.n_shifts)
        n_rows = tile * (1 if rows is None else rows.n_shifts)
        buf = _Buffers(self, n_rows, targets.tile, SUB)
        for a0, a1 in tile_ranges(int(fb_a.shape[0]), tile):
            fa = load(fb_a, a0, a1, "fb_a")
            side_a = self._side_a(self.rings(fa)) if rows is None else rows.side_a(fa)
            for b0, b1, side_b in targets.tiles:
                yield a0, a1, b0, b1, self._tile_landscape(side_a, side_b, buf)


class ShiftedRows:
    """Side A of the contraction for (image, shift) rows (paper §5): the images' polar samples
    times e^{+ik·δ_s} (the image moved by −δ_s), compressed over r, one FFT along ψ per
    principal ring — O(RQ + HRQ) + H FFTs of length Q per (image, shift).

    The phases are kept in complex64 on single-precision plans (half the memory traffic of
    the phase product, which dominates this step)."""

    def __init__(self, plan: ImagePlan, shifts_px: np.ndarray, box: int,
                 rows_per_step: int = 128):
        self.plan, self.shifts_px, self.n_shifts = plan, shifts_px, len(shifts_px)
        self.cdt = np.complex64 if plan.dtype == np.float32 else np.complex128
        phases = shift_phases(plan.grid, shifts_px, box, +1.0)              # (S, R, Q)
        self.phases_t = np.ascontiguousarray(np.transpose(phases, (1, 0, 2)), dtype=self.cdt)
        self.matrix_t = None if plan.basis is None else np.asfortranarray(
            plan.basis.matrix(plan.rank).T, dtype=plan.dtype)
        self.rows_per_step = rows_per_step

    def side_a(self, fb: np.ndarray) -> np.ndarray:
        """(n_freq, n·S, 2H) real for the images ``fb`` (n, R, Q//2+1), rows image-major."""
        plan, t = self.plan, self.plan.tables
        polar = polar_samples(fb, plan.grid.Q)
        n, R, Q = polar.shape
        S, H = self.n_shifts, plan.rank
        out = np.empty((t.nf, n * S, 2 * H), dtype=plan.dtype)
        polar_t = np.ascontiguousarray(np.transpose(polar, (1, 0, 2)), dtype=self.cdt)
        full = self.matrix_t is None
        scale = (plan.eta if full else np.ones(R)).astype(polar_t.real.dtype)
        step = max(1, self.rows_per_step // S)
        P = np.empty((R, step * S, Q), dtype=self.cdt)
        perm = t.perm.astype(np.int64)
        for i0 in range(0, n, step):
            i1 = min(n, i0 + step)
            m = (i1 - i0) * S
            Pm = P[:, :m]
            kernels._phase_rows(polar_t, self.phases_t, scale, i0, i1, Pm)
            if full:
                C = Pm
            else:
                C = (self.matrix_t @ Pm.reshape(R, -1).view(self.matrix_t.dtype)).view(
                    self.cdt).reshape(H, m, Q)
            F = scipy.fft.fft(C, axis=-1, workers=1, overwrite_x=True)
            kernels._split_rows(F, perm, 1.0 / Q, i0 * S, out)
        return out


def prepare(grid: PolarGrid, basis: RadialBasis | None = None, rank=None,
            precision: str = "auto") -> ImagePlan:
    """``ImagePlan(grid, basis, rank=rank, precision=precision)``."""
    return ImagePlan(grid, basis, rank=rank, precision=precision)
