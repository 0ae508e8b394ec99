"""The 2D engine: rotational landscapes and best rotations for all image–target pairs.

Landscape (eq. 35–36, 84): for images A and targets B with (compressed) rings ã_h, b̃_h,
    X(γ_j; A, B) = <Â, R_γj B̂> = (2π/Δψ) Σ_q e^{-iqγ_j} Σ_h conj(ã_h(q)) b̃_h(q),  γ_j = 2πj/Q,
where R_γ rotates the TARGET B counter-clockwise by γ (in the (x, y) plane, x = last array
axis, y = first array axis, about pixel (N//2, N//2)).  So `angle` is the rotation to apply to
the target to match the image; equivalently the image is the target rotated by `angle`.
Full path: ã_r = η_r a(k_r, ·) (identity basis, H = R).  Compressed path: a RadialBasis.

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

Measured throughput and speedups: docs/performance.md (generated from ``radsvd bench``).

Precision: ``precision="double"`` (float64 GEMMs) or ``"single"`` (float32 GEMMs; FB
coefficients, compression and refinement stay float64).  Default ("auto"): double on the
full path (and for H = R), single on the compressed path H < R (tests and the benchmark check
that f and the correlation agree with double to 1e-4).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.fft

from radsvd._files import save_npz
from radsvd._validate import InputError, degenerate_targets, grid_of, rank as _rank
from radsvd.grids import PolarGrid
from radsvd.images import _kernels as K
from radsvd._pool import pool_map
from radsvd._validate import all_finite
from radsvd.images.basis import RadialBasis

__all__ = ["AlignResult", "align_images", "landscapes", "landscape_tiles", "prepare"]

DEFAULT_TILE = None  # auto, see _auto_tile
DEFAULT_SUB = 1024  # pairs per DFT piece: E, O stay in L2


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
def _check_fb_source(fb, grid: PolarGrid, name: str):
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


def _load(fb, a0: int, a1: int, name: str) -> np.ndarray:
    x = np.ascontiguousarray(fb[a0:a1], dtype=np.complex128)
    if not all_finite(x):
        raise InputError(f"{name}: NaN or inf in coefficients of items {a0}..{a1 - 1}")
    return x


def _precision(precision: str, compressed: bool):
    if precision == "auto":
        precision = "single" if compressed else "double"
    if precision not in ("single", "double"):
        raise InputError(f"precision must be 'auto', 'single' or 'double', got {precision!r}")
    return precision, (np.float32 if precision == "single" else np.float64)


def _apply_basis(M: np.ndarray, fb: np.ndarray) -> np.ndarray:
    """ã = Mᵀ a per image, as one real batched GEMM: (H×R) @ (R × 2n_freq) per image."""
    n, R, nf = fb.shape
    ar = fb.view(np.float64).reshape(n, R, 2 * nf)
    out = np.matmul(np.ascontiguousarray(M.T), ar)
    return out.reshape(n, M.shape[1], 2 * nf).view(np.complex128)


@dataclass
class _Plan:
    grid: PolarGrid
    basis: RadialBasis | None
    H: int
    dtype: type
    precision: str
    tables: _Tables
    eta: np.ndarray

    def coeffs(self, fb_chunk: np.ndarray) -> np.ndarray:
        """Principal rings (n, H, n_freq) complex128 (η-weighted rings on the full path)."""
        if self.basis is None:
            return fb_chunk * self.eta[None, :, None]
        return _apply_basis(self.basis.matrix(self.H), fb_chunk)

    def side_a(self, c: np.ndarray) -> np.ndarray:
        """(n_freq, n, 2H) real: [Re ã | Im ã] per q (even q first)."""
        t = np.transpose(c[:, :, self.tables.perm], (2, 0, 1))
        return np.ascontiguousarray(np.concatenate([t.real, t.imag], axis=2), dtype=self.dtype)

    def side_b(self, c: np.ndarray) -> np.ndarray:
        """(n_freq, 2, 2H, n) real: [[Re b̃; Im b̃], [Im b̃; -Re b̃]] per q."""
        t = np.transpose(c[:, :, self.tables.perm], (2, 1, 0))
        out = np.empty((t.shape[0], 2, 2 * t.shape[1], t.shape[2]), dtype=self.dtype)
        H = t.shape[1]
        out[:, 0, :H] = t.real
        out[:, 0, H:] = t.imag
        out[:, 1, :H] = t.imag
        out[:, 1, H:] = -t.real
        return out


def prepare(grid: PolarGrid, basis: RadialBasis | None = None, rank=None,
            precision: str = "auto") -> _Plan:
    """Validate the (grid, basis, rank, precision) choice; returns the engine's plan."""
    grid = grid_of(grid, PolarGrid)
    if basis is None:
        if rank not in (None, "full") and _rank(rank, grid.R) != grid.R:
            raise InputError("a rank H < R needs a basis (radial_svd, frequency_marching or "
                             "energy_pca); the full path uses all R rings")
        H = grid.R
    else:
        if not isinstance(basis, RadialBasis):
            raise InputError(f"basis: expected a RadialBasis, got {type(basis).__name__}")
        if basis.R != grid.R or not np.allclose(basis.eta, grid.eta):
            raise InputError(f"basis was built for another grid (R={basis.R}); rebuild it for "
                             f"R={grid.R}, Q={grid.Q}")
        H = grid.R if rank in (None, "full") else _rank(rank, grid.R)
    precision, dtype = _precision(precision, basis is not None and H < grid.R)
    return _Plan(grid, basis, H, dtype, precision, _tables(grid.Q, dtype), grid.eta)


# ----------------------------------------------------------------------------- tiles
class _Buffers:
    def __init__(self, plan: _Plan, ta: int, tb: int, sub: int):
        P = ta * tb
        t = plan.tables
        self.sub = sub
        self.Z = np.empty(2 * t.nf * P, dtype=plan.dtype)
        self.Q4 = np.empty((4, t.Jh1 * sub), dtype=plan.dtype)
        self.val = np.empty(P, dtype=plan.dtype)
        self.idx = np.empty(P, dtype=np.int64)


def _tile_Z(plan: _Plan, Aq: np.ndarray, Bq: np.ndarray, buf: _Buffers) -> np.ndarray:
    """Step 1 for one tile: Z (2·n_freq, P), rows (q, re/im), pairs (a, b) row-major."""
    t = plan.tables
    na, nb = Aq.shape[1], Bq.shape[3]
    P = na * nb
    Z4 = buf.Z[: 2 * t.nf * P].reshape(t.nf, 2, na, nb)
    np.matmul(Aq[:, None], Bq, out=Z4)
    return Z4.reshape(2 * t.nf, P)


def _quarters(plan: _Plan, Z: np.ndarray, c0: int, c1: int, buf: _Buffers):
    """Step 2 for pairs c0:c1 of a tile: four real GEMMs with the quarter DFT matrices,
    EC, ES, OC, OS of shape (⌊J/2⌋+1, c1 − c0); cache-sized pieces of the tile."""
    t = plan.tables
    n = c1 - c0
    EC, ES, OC, OS = (buf.Q4[i, : t.Jh1 * n].reshape(t.Jh1, n) for i in range(4))
    ne2 = 2 * t.n_even
    np.matmul(t.CE, Z[0:ne2:2, c0:c1], out=EC)
    np.matmul(t.SE, Z[1:ne2:2, c0:c1], out=ES)
    np.matmul(t.CO, Z[ne2::2, c0:c1], out=OC)
    np.matmul(t.SO, Z[ne2 + 1::2, c0:c1], out=OS)
    return EC, ES, OC, OS


def _tile_best(plan: _Plan, Aq, Bq, buf: _Buffers):
    """Steps 1–3 for one tile: Z and the per-pair (val, idx) views into ``buf``."""
    Z = _tile_Z(plan, Aq, Bq, buf)
    P = Z.shape[1]
    J = plan.tables.J
    for c0 in range(0, P, buf.sub):
        c1 = min(P, c0 + buf.sub)
        EC, ES, OC, OS = _quarters(plan, Z, c0, c1, buf)
        K._best4(EC, ES, OC, OS, J, buf.val[c0:c1], buf.idx[c0:c1])
    return Z, buf.val[:P], buf.idx[:P]


def _tile_landscape(plan: _Plan, Aq, Bq, buf) -> np.ndarray:
    """Full landscapes of one tile, (na·nb, Q) float64."""
    Z = _tile_Z(plan, Aq, Bq, buf)
    P = Z.shape[1]
    J = plan.tables.J
    X = np.empty((P, 2 * J), dtype=plan.dtype)
    for c0 in range(0, P, buf.sub):
        c1 = min(P, c0 + buf.sub)
        EC, ES, OC, OS = _quarters(plan, Z, c0, c1, buf)
        K._assemble4(EC, ES, OC, OS, J, X[c0:c1])
    return X.astype(np.float64, copy=False)


def _auto_tile(plan: _Plan) -> tuple[int, int]:
    """Tile (images, targets): 64 × 128 was the fastest measured for the full path and for
    H = 6 (2-core Xeon, K = 48); larger tiles push Z out of L2."""
    return (64, 128)


def _tile_ranges(n: int, t: int):
    return [(i, min(n, i + t)) for i in range(0, n, t)]


# ----------------------------------------------------------------------------- results
@dataclass
class AlignResult:
    """Best rotations of every image over all targets.

    best_target[i]: index of the target that matches image i best; angle[i]: the angle γ
    (radians, in [0, 2π)) by which that TARGET must be rotated counter-clockwise about pixel
    (N//2, N//2) (x = last axis, y = first axis) to match image i; score[i] = X(γ) = <Â, R_γ B̂>.
    With all_pairs: angles, scores of shape (N_A, N_B) for every pair.
    With shifts: shift[i] = (sx, sy) pixels, the translation applied after the rotation
    (image ≈ T_shift R_angle target, its density moved by +shift); score = <Â, T_δ R_γ B̂>;
    with all_pairs also shifts (N_A, N_B, 2).
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


def _z_pairs(plan: _Plan, ca: np.ndarray, cb: np.ndarray) -> np.ndarray:
    """Z for pairs (ca[i], cb[i]) in the engine's (2 n_freq, n) layout, float64."""
    z = np.einsum("nhq,nhq->qn", ca.conj(), cb)[plan.tables.perm]
    out = np.empty((2 * z.shape[0], z.shape[1]))
    out[0::2] = z.real
    out[1::2] = z.imag
    return out


def _projected_targets(plan: _Plan, fb_b: np.ndarray) -> np.ndarray:
    """Targets as the compressed landscape sees them: b' = η⁻¹ U_H U_Hᵀ η b, so that
    X^H(γ, δ; A, B) = X(γ, δ; A, B') (the full formula); b' = b on the full path."""
    if plan.basis is None:
        return fb_b
    U = plan.basis.vectors[:, :plan.H]
    P = (U @ U.T) * plan.eta[None, :] / plan.eta[:, None]
    return np.einsum("rs,nsq->nrq", P, fb_b, optimize=True)


def _shifted_side_a(plan: _Plan, polar: np.ndarray, phases_t: np.ndarray,
                    matrix_t: np.ndarray | None, rows_per_step: int = 128) -> np.ndarray:
    """Side A of the contraction for every (image, shift) row, image-major: (n_freq, n·S, 2H).

    polar (n, R, Q) samples of the images; phases_t (R, S, Q) = e^{+ik·δ_s} (the image moved
    by −δ_s); matrix_t the H×R compression (None: η-weighted rings), Fortran-ordered, real of
    the precision of ``phases_t`` (complex64 on single-precision plans: half the memory
    traffic of the phase product, which dominates this step).  Per step of a few
    images: one phase product (R, n_i, S, Q), one real GEMM over r for all rows and angles,
    then H FFTs of length Q per row — O(RQ + HRQ) + the FFTs per (image, shift).
    """
    t = plan.tables
    n, R, Q = polar.shape
    S = phases_t.shape[1]
    H = plan.H
    out = np.empty((t.nf, n * S, 2 * H), dtype=plan.dtype)
    cdt = phases_t.dtype
    polar_t = np.ascontiguousarray(np.transpose(polar, (1, 0, 2)), dtype=cdt)   # (R, n, Q)
    full = matrix_t is None
    scale = (plan.eta if full else np.ones(R)).astype(polar_t.real.dtype)
    step = max(1, rows_per_step // S)
    P = np.empty((R, step * S, Q), dtype=cdt)
    perm = t.perm.astype(np.int64)
    for i0 in range(0, n, step):
        i1 = min(n, i0 + step)
        m = (i1 - i0) * S
        Pm = P[:, :m]
        K._phase_rows(polar_t, phases_t, scale, i0, i1, Pm)
        if full:
            C = Pm
        else:
            C = (matrix_t @ Pm.reshape(R, -1).view(matrix_t.dtype)).view(cdt).reshape(H, m, Q)
        F = scipy.fft.fft(C, axis=-1, workers=1, overwrite_x=True)
        K._split_rows(F, perm, 1.0 / Q, i0 * S, out)
    return out


class _Clock:
    """Seconds per stage of one task (merged into the caller's ``timer`` in task order)."""

    def __init__(self):
        import time

        self.now = time.perf_counter
        self.t = {}

    def add(self, key, t0):
        self.t[key] = self.t.get(key, 0.0) + self.now() - t0


def align_images(fb_a, fb_b, grid: PolarGrid, basis: RadialBasis | None = None, rank=None,
                 refine: bool = False, all_pairs: bool = False, progress: bool = False,
                 precision: str = "auto", tile: tuple[int, int] = DEFAULT_TILE,
                 sub: int = None, max_shift: float = 0.0, shift_step: float = 1.0,
                 box: int | None = None, timer: dict | None = None) -> AlignResult:
    """Best rotation (and shift) and target for every image (streaming over tiles of pairs).

    fb_a: (N_A, R, Q//2+1) FB coefficients of the images (array, memmap, or any object with
    ``.shape`` and slicing that returns such arrays, read one tile of images at a time);
    fb_b: (N_B, R, Q//2+1) of the targets.  basis/rank: None for the full landscape, or a
    RadialBasis and 1 ≤ H ≤ R.  refine: off-grid angle (eq. 23), and with shifts off-grid
    (γ, δ) (:func:`radsvd.images.shifts.refine_poses`).

    Shifts (paper §5): ``max_shift`` > 0 searches the disc of shifts of radius ``max_shift``
    and step ``shift_step`` (pixels of the N = ``box`` image; an :class:`FBSource` knows N):
    X(γ, δ) = <Â, T_δ R_γ B̂>, the image being the target rotated by γ then moved by +δ.  Each
    (image, shift) is a row of the contraction: its principal rings come from phases on the
    image's polar samples (:mod:`radsvd.images.shifts`), so a (pair, shift) costs what a pair
    costs without shifts.  The result gains ``shift`` (N_A, 2) = (sx, sy) pixels (and
    ``shifts`` (N_A, N_B, 2) with all_pairs; those per-pair values stay on the grid).
    Ties go to the lowest target, then the lowest shift, then the lowest γ.

    timer: optional dict; seconds per stage ('targets', 'images', 'pairs', 'refine',
    summed over tasks, and 'total' wall time) are added to it.
    Returns :class:`AlignResult`.
    """
    import time

    t_start = time.perf_counter()
    plan = prepare(grid, basis, rank, precision)
    fb_a = _check_fb_source(fb_a, plan.grid, "fb_a")
    fb_b = _check_fb_source(fb_b, plan.grid, "fb_b")
    ta, tb = _auto_tile(plan) if tile is None else (int(tile[0]), int(tile[1]))
    sub = DEFAULT_SUB if sub is None else int(sub)
    if ta < 1 or tb < 1 or sub < 1:
        raise InputError(f"tile sizes must be positive, got {tile}")
    shifts_px = None
    if max_shift is not None and max_shift != 0:
        from radsvd.images import shifts as S

        if box is None:
            box = getattr(fb_a, "N", None)
        if box is None:
            raise InputError("max_shift needs the image box N (box=...) to convert pixels")
        max_shift, shift_step = S.check_shift_options(max_shift, shift_step, int(box))
        shifts_px = S.shift_grid(max_shift, shift_step, int(box))
    elif max_shift is not None:
        from radsvd.images.shifts import check_shift_options

        check_shift_options(max_shift, shift_step)
    NA, NB = int(fb_a.shape[0]), int(fb_b.shape[0])
    clock = _Clock()
    t0 = clock.now()
    fbB = _load(fb_b, 0, NB, "fb_b")
    cb_all = plan.coeffs(fbB)
    degenerate_targets(cb_all, np.arange(cb_all.shape[-1]) == 0, "targets (fb_b)")
    b_tiles = [(b0, b1, plan.side_b(cb_all[b0:b1])) for b0, b1 in _tile_ranges(NB, tb)]
    clock.add("targets", t0)
    Q = plan.grid.Q
    dg = 2.0 * np.pi / Q
    scores = np.empty((NA, NB)) if all_pairs else None
    angles = np.empty((NA, NB)) if all_pairs else None
    pair_shifts = np.empty((NA, NB, 2)) if all_pairs and shifts_px is not None else None
    buffers = {}

    def buffer():
        import threading

        key = threading.get_ident()
        if key not in buffers:
            buffers[key] = _Buffers(plan, ta, tb, sub)
        return buffers[key]

    def task(rng):
        a0, a1 = rng
        ck = _Clock()
        buf = buffer()
        t = ck.now()
        ca = plan.coeffs(_load(fb_a, a0, a1, "fb_a"))
        Aq = plan.side_a(ca)
        ck.add("images", t)
        t = ck.now()
        n = a1 - a0
        bv = np.full(n, -np.inf)
        bt = np.zeros(n, dtype=np.int64)
        bj = np.zeros(n, dtype=np.int64)
        bg = None
        for b0, b1, Bq in b_tiles:
            Z, val, idx = _tile_best(plan, Aq, Bq, buf)
            nb = b1 - b0
            if all_pairs:
                if refine:
                    g = np.empty(n * nb)
                    v = np.empty(n * nb)
                    K._refine(np.ascontiguousarray(Z, dtype=np.float64), plan.tables.qs,
                              plan.tables.cw, idx, Q, g, v)
                else:
                    g = idx * dg
                    v = val
                scores[a0:a1, b0:b1] = v.reshape(n, nb)
                angles[a0:a1, b0:b1] = g.reshape(n, nb)
                if refine:
                    # the best target by refined score (strict '>' in target order)
                    v2 = v.reshape(n, nb)
                    j = np.argmax(v2, axis=1)
                    vj = v2[np.arange(n), j]
                    better = vj > bv
                    bv[better] = vj[better]
                    bt[better] = b0 + j[better]
                    if bg is None:
                        bg = np.zeros(n)
                    bg[better] = g.reshape(n, nb)[np.arange(n), j][better]
                    continue
            K._row_best(val.reshape(n, nb), idx.reshape(n, nb), b0, bv, bt, bj)
        ck.add("pairs", t)
        if bg is None:
            bg = bj * dg
        if refine and not all_pairs:
            t = ck.now()
            Zp = _z_pairs(plan, ca, cb_all[bt])
            g = np.empty(n)
            v = np.empty(n)
            K._refine(Zp, plan.tables.qs, plan.tables.cw, bj, Q, g, v)
            bv, bg = v, g
            ck.add("refine", t)
        return bt, bg, bv, None, ck.t

    def task_shifts(rng):
        from radsvd.images import shifts as S

        a0, a1 = rng
        ck = _Clock()
        buf = buffer()
        t = ck.now()
        fa = _load(fb_a, a0, a1, "fb_a")
        n, ns = a1 - a0, len(shifts_px)
        Aq = _shifted_side_a(plan, S._polar(fa, Q), phases_t, matrix_t)  # (nf, n·ns, 2H)
        ck.add("images", t)
        bv = np.full(n, -np.inf)
        bt = np.full(n, NB, dtype=np.int64)
        bj = np.zeros(n, dtype=np.int64)
        bs = np.full(n, ns, dtype=np.int64)
        if all_pairs:
            pv = np.full((n, NB), -np.inf)
            pj = np.zeros((n, NB), dtype=np.int64)
            ps = np.full((n, NB), ns, dtype=np.int64)
        t = ck.now()
        for v0 in range(0, n * ns, ta):
            rows = np.arange(v0, min(n * ns, v0 + ta))
            img, sh = rows // ns, rows % ns
            for b0, b1, Bq in b_tiles:
                _, val, idx = _tile_best(plan, Aq[:, v0:v0 + len(rows)], Bq, buf)
                val = val.reshape(len(rows), b1 - b0)
                idx = idx.reshape(len(rows), b1 - b0)
                K._shift_row_best(val, idx, b0, img, sh, bv, bt, bj, bs)
                if all_pairs:
                    K._shift_pair_best(val, idx, b0, img, sh, pv, pj, ps)
        ck.add("pairs", t)
        if all_pairs:
            scores[a0:a1] = pv
            angles[a0:a1] = pj * dg
            pair_shifts[a0:a1] = shifts_px[ps]
        bg, sxy = bj * dg, shifts_px[bs]
        if refine:
            t = ck.now()
            bg, sxy, bv = S.refine_poses(fa, _projected_targets(plan, fbB[bt]), plan.grid, bg,
                                         sxy, int(box), float(shift_step))
            ck.add("refine", t)
        return bt, bg, bv, sxy, ck.t

    if shifts_px is not None:
        from radsvd.images.shifts import shift_phases

        t0 = clock.now()
        cdt = np.complex64 if plan.dtype == np.float32 else np.complex128
        phases_t = np.ascontiguousarray(
            np.transpose(shift_phases(plan.grid, shifts_px, int(box), +1.0), (1, 0, 2)),
            dtype=cdt)
        matrix_t = None if plan.basis is None else np.asfortranarray(
            plan.basis.matrix(plan.H).T, dtype=plan.dtype)
        clock.add("images", t0)
        n_img = max(1, (4 * ta) // len(shifts_px))
        items = _tile_ranges(NA, n_img)
        fn = task_shifts
    else:
        items = _tile_ranges(NA, ta)
        fn = task
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(items), desc="align", unit="tile", file=None, leave=False)
    try:
        parts = pool_map(fn, items, progress=bar)
    finally:
        if bar is not None:
            bar.close()
    best_target = np.concatenate([p[0] for p in parts])
    angle = np.concatenate([p[1] for p in parts])
    score = np.concatenate([p[2] for p in parts])
    shift = None if shifts_px is None else np.concatenate([p[3] for p in parts])
    info = dict(rank=plan.H, R=plan.grid.R, Q=Q, K=plan.grid.K, precision=plan.precision,
                method="full" if plan.basis is None else plan.basis.method, refine=refine)
    if shifts_px is not None:
        info.update(max_shift=max_shift, shift_step=shift_step, n_shifts=len(shifts_px),
                    box=int(box))
    if timer is not None:
        for p in parts:
            for key, sec in p[4].items():
                clock.t[key] = clock.t.get(key, 0.0) + sec
        clock.t["total"] = time.perf_counter() - t_start
        for key, sec in clock.t.items():
            timer[key] = timer.get(key, 0.0) + sec
    return AlignResult(best_target, angle, score, angles, scores, info, shift, pair_shifts)


def landscape_tiles(fb_a, fb_b, grid: PolarGrid, bases=((None, None),), precision="auto",
                    tile: tuple[int, int] = DEFAULT_TILE):
    """Yield ``(a0, a1, b0, b1, [X_tile per (basis, rank)])``, each X (na·nb, Q) float64.

    ``bases``: sequence of (basis, rank) or (basis, rank, precision) entries, e.g.
    ((None, None), (svd, 2), (svd, 6)); ``precision`` applies to entries without their own.
    Streaming (serial) generator for metrics next to the full calculation.
    """
    grid = grid_of(grid, PolarGrid)
    fb_a = _check_fb_source(fb_a, grid, "fb_a")
    fb_b = _check_fb_source(fb_b, grid, "fb_b")
    plans = [prepare(grid, e[0], e[1], e[2] if len(e) > 2 else precision) for e in bases]
    ta, tb = (64, 128) if tile is None else (int(tile[0]), int(tile[1]))
    NA, NB = int(fb_a.shape[0]), int(fb_b.shape[0])
    fbB = _load(fb_b, 0, NB, "fb_b")
    bsides = [[(b0, b1, p.side_b(p.coeffs(fbB[b0:b1]))) for b0, b1 in _tile_ranges(NB, tb)]
              for p in plans]
    bufs = [_Buffers(p, ta, tb, DEFAULT_SUB) for p in plans]
    for a0, a1 in _tile_ranges(NA, ta):
        fa = _load(fb_a, a0, a1, "fb_a")
        asides = [p.side_a(p.coeffs(fa)) for p in plans]
        for t, (b0, b1, _) in enumerate(bsides[0]):
            Xs = [_tile_landscape(p, asides[i], bsides[i][t][2], bufs[i])
                  for i, p in enumerate(plans)]
            yield a0, a1, b0, b1, Xs


def landscapes(fb_a, fb_b, grid: PolarGrid, basis: RadialBasis | None = None, rank=None,
               precision: str = "double", max_bytes: float = 2 * 2**30, shifts=None,
               box: int | None = None) -> np.ndarray:
    """The whole landscape array X(γ_j; A, B), shape (N_A, N_B, Q) float64 (eq. 35 / 84).

    X[i, j, m] = <Â_i, R_γm B̂_j>, γ_m = 2πm/Q, R_γ rotating the target counter-clockwise.
    ``shifts`` (S, 2) pixels of an N = ``box`` image: X[i, j, s, m] = <Â_i, T_δs R_γm B̂_j>,
    shape (N_A, N_B, S, Q).  Refuses arrays above ``max_bytes`` (use :func:`align_images`).
    """
    grid = grid_of(grid, PolarGrid)
    fb_a = _check_fb_source(fb_a, grid, "fb_a")
    fb_b = _check_fb_source(fb_b, grid, "fb_b")
    if shifts is not None:
        from radsvd.images import shifts as S

        sh = np.asarray(shifts, np.float64).reshape(-1, 2)
        if box is None or not np.all(np.isfinite(sh)):
            raise InputError("landscapes: shifts need finite values and the image box N")
        fa = _load(fb_a, 0, int(fb_a.shape[0]), "fb_a")
        polar = S._polar(fa, grid.Q)
        ph = S.shift_phases(grid, sh, int(box), +1.0)
        n, ns = fa.shape[0], len(sh)
        rows = np.arange(n * ns)
        fa_s = S.shifted_fb(polar, ph, rows // ns, rows % ns, None, np.ones(grid.R))
        X = landscapes(fa_s, fb_b, grid, basis, rank, precision, max_bytes)
        return X.reshape(n, ns, X.shape[1], grid.Q).transpose(0, 2, 1, 3)
    NA, NB = int(fb_a.shape[0]), int(fb_b.shape[0])
    nbytes = 8.0 * NA * NB * grid.Q
    if nbytes > max_bytes:
        raise InputError(f"the landscape array would need {nbytes / 2**30:.2f} GiB (> "
                         f"max_bytes); use align_images, which streams over tiles")
    X = np.empty((NA, NB, grid.Q))
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        for a0, a1, b0, b1, Xs in landscape_tiles(fb_a, fb_b, grid, ((basis, rank),),
                                                 precision):
            X[a0:a1, b0:b1] = Xs[0].reshape(a1 - a0, b1 - b0, grid.Q)
    return X


def rank_sweep(fb_a, fb_b, grid: PolarGrid, basis: RadialBasis, ranks, precision="double",
               tile: tuple[int, int] = DEFAULT_TILE) -> dict:
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
    Hs = [_rank(h, grid.R) for h in ranks]
    if not Hs:
        raise InputError("ranks is empty")
    bases = [(None, None, "double")] + [(basis, h, precision) for h in Hs]
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        stream = ((Xs[0], Xs[1:]) for *_, Xs in
                  landscape_tiles(fb_a, fb_b, grid, bases, precision, tile))
        results = sweep(stream, len(Hs))
    return dict(zip(Hs, results))
