"""The landscape plan: everything that does not depend on the volumes, and the steps 0–3
that turn a block of volumes into landscapes or best rotations (paper eq. 104, 117).

Full path (eq. 104): step 1 T_l(m1, m2) = Σ_r w_r conj(A_l^{m1}(k_r)) B_l^{m2}(k_r); step 2
X̂(m1, m2; β) = Σ_{l ≥ max(m1,|m2|)} d^l_{m1,m2}(β) T_l(m1, m2), the Hermitian half-spectrum
in m1 (real volumes: X̂(-m1, -m2) = conj X̂(m1, m2)); step 3 X(α, β, γ) = Σ_{m1,m2}
e^{-i m1 α} e^{-i m2 γ} X̂(m1, m2; β), a real 2D FFT per β slice.

Compressed path (eq. 117) at ranks (H_C, H_D): step 0 projects the volumes on H_C principal
shells, step 1b Y_j(m1, m2) = Σ_l v_j[l] T_l(m1, m2), step 2 sums H_D terms with the
[v_jᵀ d](β) tables instead of L+1-max(m1,|m2|); step 3 unchanged.  Full ranks (R, L+1)
reproduce the full landscape to rounding.

The rooms: :mod:`.layout` (grid, mirrored β, slices), :mod:`.kernels` (steps 1, 1b, 2 and
the tables), :mod:`.transforms` (step 3), :mod:`.search` (the grid maximiser fused with step
3, pruned), :mod:`.tail` (the rows step 2 leaves to the search of compressed plans).
"""

from __future__ import annotations

import time

import numpy as np

from radsvd._jit import fft_workers
from radsvd._precision import Precision
from radsvd._timer import StageTimer
from radsvd._validate import InputError, grid_of, rank as _rank, rank_pair
from radsvd.volumes.basis import VolumeBasis, check_coefficients
from radsvd.volumes.landscape.kernels import (_contract_rows, _degree_project, _degree_tables,
                                              _step1_project, _step1_small, all_orders,
                                              degree_rows)
from radsvd.volumes.landscape.layout import SliceLayout, check_grid
from radsvd.volumes.landscape.search import (PrunedSearch, best_of_slices, check_norms,
                                             exhaustive_best, rounding_margins)
from radsvd.volumes.landscape.tail import HEAD_ONLY_MIN_L, TAIL_BLOCKS, TailTables
from radsvd.volumes.landscape.transforms import (chunk_bounds, fft_chunk_size, per_volume,
                                                 transform_m1, transform_m2)
from radsvd.volumes.landscape.workspace import Workspace
from radsvd.volumes.shells import ShellGrid
from radsvd.volumes.wigner import WignerTable

__all__ = ["STEPS", "LandscapePlan", "landscapes", "prepare"]

# step 1 by the numba kernel up to this many radial functions, else one BLAS product per
# degree (measured at K = 48 in the benchmark, blocks of 8 volumes, 2 threads: R = 49 numba
# 1.57 vs BLAS 1.15 ms/pair (cold caches); H_C = 8 numba 0.16-0.22 vs BLAS 0.40 ms/pair)
SMALL_RANK = 16

# the keys under which best_rotations(timer=...) adds each step's seconds (compressed plans
# with H_C ≤ SMALL_RANK run steps 1 and 1b fused: reported as step 1, step 1b = 0)
STEPS = ("step0", "step1", "step1b", "step2", "step3")


class LandscapePlan:
    """Everything that does not depend on the volumes: the target in per-degree layout,
    the Wigner-d table (full) or the [v_jᵀ d] tables (compressed), the slice layout.

    Built by :func:`prepare`; ``precompute_seconds`` records its cost.  Calling the plan on
    a block of volumes returns fresh landscapes (:meth:`slices` then :meth:`expand`); the
    best rotations need only :meth:`best_rotations` (steps 0–2, then step 3 fused with the
    search on the distinct β of even M, pruned; equal to :meth:`best` of :meth:`slices` up
    to the rounding of step 3, see :meth:`step3_best`).  The step methods are exposed for
    reuse and tests, and reuse work arrays (the arrays returned by ``step2``/``step3``/
    ``slices`` are overwritten by the next call).  One plan per thread.

    ``M``: the α/γ grid size; ``layout``: the grid and the β planes step 3 computes
    (:class:`SliceLayout`; ``n_slices`` of them); ``fft_chunk``: slices per step-3 transform
    call (sized for a 1 MB cache; other values change the landscapes only in the last bits,
    and a given value is bitwise reproducible for any thread count); ``row_split``: rows m1
    the pruned search transforms first; ``head_only``: whether :meth:`best_rotations` forms
    only those rows in step 2 (compressed plans with L ≥ HEAD_ONLY_MIN_L); ``margins``: the
    rounding margins of the search's bounds.
    """

    def __init__(self, grid: ShellGrid, coef_target, basis: VolumeBasis | None = None,
                 rank=None, n_beta: int | None = None, M: int | None = None,
                 wigner: WignerTable | None = None, precision: str = "auto",
                 head_only: bool | None = None):
        t0 = time.perf_counter()
        self.grid = grid_of(grid, ShellGrid)
        self.L = L = grid.L
        b = check_coefficients(coef_target, grid, "coef_target")
        if b.shape[0] != 1:
            raise InputError(f"coef_target: expected a single target volume, got {b.shape[0]}")
        ranks = rank_pair(rank)
        self.n_beta, self.M = check_grid(L, n_beta, M)
        self._set_precision(precision, compressed=ranks is not None)
        self.layout = SliceLayout(L, self.n_beta, self.M, self.real_dtype)
        # rows m1 < row_split get the pass over m2 before the others in the pruned search:
        # landscapes of molecules keep most of their l1 mass there (K = 48: 90% of the full
        # path's and 97% of rank 8's in m1 < 12 = (M/2+1)/4); compressed plans form only
        # those rows in step 2 for it (head_only)
        self.row_split = min(L + 1, max(1, (self.M // 2 + 1) // 4))
        self.row_start, self.tidx, self.base = degree_rows(L)
        # m1 tasks of step 2, evens then odds: balances the (decreasing) work over threads
        self.m1_order = np.concatenate([np.arange(0, L + 1, 2), np.arange(1, L + 1, 2)])
        self.wigner = self._check_wigner(wigner)
        if ranks is None:
            if basis is not None:
                raise InputError("basis given without rank: pass rank=H or (H_C, H_D)")
            self._full_tables()
            target = b[0]
        else:
            self._compressed_tables(basis, ranks, head_only)
            target = self.radial.T @ b[0]
        # target per degree, all orders m2 = -l..l, weights folded in: (n_rad, 2l+1)
        tg = self.weights[:, None] * all_orders(target, grid)               # (n_rad, (L+1)²)
        self.target = [tg[:, l * l:(l + 1) ** 2] for l in range(L + 1)]
        self._tg_re = np.ascontiguousarray(tg.real)
        self._tg_im = np.ascontiguousarray(tg.imag)
        self.transform = "ducc0.c2r"
        self.margins = rounding_margins(self.M, L, self.real_dtype)
        self.fft_chunk = fft_chunk_size(self.M, self.n_slices, self.complex_dtype,
                                        self.real_dtype)
        self.workspace = Workspace()
        self.step3_calls = (0, 0, 0)
        self.precompute_seconds = time.perf_counter() - t0

    # ------------------------------------------------------------------ construction
    def _set_precision(self, precision, compressed: bool) -> None:
        """Transform precision (real_dtype, complex_dtype) and step 2's operand precision:
        float32 for single-precision compressed plans only (the full path's Wigner table
        stays double)."""
        resolved = Precision.of(precision, compressed=compressed)
        self.precision = resolved.name
        self.real_dtype, self.complex_dtype = resolved.real, resolved.complex
        self._operand_dtype = self.complex_dtype if compressed else np.complex128

    def _check_wigner(self, wigner: WignerTable | None) -> WignerTable:
        """The Wigner-d table on the distinct β (given, checked, or computed)."""
        distinct = self.layout.distinct
        if wigner is None:
            return WignerTable(self.L, distinct)
        if wigner.L != self.L or wigner.betas.shape != distinct.shape or not np.allclose(
                wigner.betas, distinct, atol=1e-12):
            raise InputError("wigner: table does not match this grid's L and β values")
        return wigner

    def _full_tables(self) -> None:
        """Full path: step 2's table is the Wigner-d table; the rows of pair p are
        row_start[p] + i, i < its number of degrees (l innermost)."""
        self.compressed, self.head_only = False, False
        self.H_C, self.H_D = self.grid.R, self.L + 1
        self.radial = self.degree_vectors = None
        self._table = self.wigner.data.reshape(-1, self.layout.distinct.size)
        self._tail, self._tail_in_table = None, True
        self._operand_rows = (self.row_start[:-1], np.diff(self.row_start), 1)
        self.weights = self.grid.w

    def _compressed_tables(self, basis, ranks, head_only) -> None:
        """Compressed path: principal shells, degree vectors and the [v_jᵀ d] tables; the
        rows of pair p = (m1, m2) are (m1 H_D + j) P + m2 + L, j < H_D (P = 2L+1)."""
        grid, L = self.grid, self.L
        if not isinstance(basis, VolumeBasis):
            raise InputError("compressed landscapes need basis=VolumeBasis (volume_svd)")
        if basis.R != grid.R or basis.n_degrees != L + 1:
            raise InputError(f"basis was built for R={basis.R}, L={basis.n_degrees - 1}; "
                             f"grid has R={grid.R}, L={L}")
        H_C, H_D = ranks
        self.H_C = _rank(H_C, grid.R, "radial rank H_C")
        self.H_D = _rank(H_D, L + 1, "degree rank H_D")
        self.compressed = True
        self.head_only = bool(L >= HEAD_ONLY_MIN_L if head_only is None else head_only)
        self.radial = basis.radial_matrix(self.H_C)
        self._radial_T = np.ascontiguousarray(self.radial.T, dtype=np.complex128)
        self._radial_Tr = np.ascontiguousarray(self.radial.T.real)
        self.degree_vectors = basis.degree_matrix(self.H_D)
        P = 2 * L + 1
        n_pairs = (L + 1) * P
        # single precision: step 2 runs on float32 tables and degree sums as well
        self._table = np.empty((n_pairs * self.H_D, self.layout.distinct.size),
                               dtype=self.real_dtype)
        self._tail = None
        self._fill_degree_tables(self.row_split if self.head_only else L + 1)
        self._tail_in_table = not self.head_only
        pairs = np.arange(n_pairs)
        self._operand_rows = ((pairs // P) * P * self.H_D + pairs % P,
                              np.full(n_pairs, self.H_D, dtype=np.int64), P)
        self.weights = np.ones(self.H_C)

    def _fill_degree_tables(self, r: int) -> None:
        """The [vᵀd] tables of step 2 in the plan's table precision, rows m1 < r row-major
        into the step-2 table; for r = row_split the others β-major (:class:`TailTables`).
        The plan forms r = row_split if its best_rotations uses the head-only step 2 (the
        row-major copy of the other rows is made on first use of :attr:`table`), else
        r = L + 1 (:meth:`tail_tables` forms the tail on request)."""
        L, HD = self.L, self.H_D
        d = self.wigner.data.reshape(-1, self.wigner.betas.size)
        nu, P, rt = d.shape[1], 2 * L + 1, self._table.dtype
        n_tail = max(0, L + 1 - r) * HD                     # rows (m1, j) of the tail
        tail = np.empty((nu, n_tail // HD, HD, P), dtype=rt)
        squares = np.zeros((n_tail * TAIL_BLOCKS, nu))
        tiny = float(np.finfo(rt).tiny) if rt == np.float32 else 0.0
        _degree_tables(d, self.row_start, self.degree_vectors, L, tiny, r, self.m1_order,
                       self._table, tail.reshape(nu, n_tail * P), squares)
        if r == self.row_split:
            self._tail = TailTables(tail, squares, r, L)

    def tail_tables(self) -> TailTables:
        """Compressed plans: the β-major [vᵀd] rows m1 ≥ row_split and their block norms
        (formed on first request for plans whose best_rotations keeps the whole step 2: the
        same kernel and sums; the rows m1 < row_split it writes again are the same values)."""
        if not self.compressed:
            raise InputError("tail_tables: only for compressed plans")
        if self._tail is None:
            self._fill_degree_tables(self.row_split)
        return self._tail

    # ------------------------------------------------------------------ properties
    @property
    def table(self) -> np.ndarray:
        """Step 2's table, rows × distinct β: the Wigner-d table (full) or the [vᵀd] tables
        (compressed; rows (m1, j, m2), their rows m1 ≥ row_split copied from the β-major
        tail table on first use: the pruned search needs only that one)."""
        if not self._tail_in_table:
            q0 = self.row_split * self.H_D * (2 * self.L + 1)
            self._table[q0:] = self._tail.table.reshape(self._table.shape[1], -1).T
            self._tail_in_table = True
        return self._table

    @property
    def betas(self) -> np.ndarray:
        return self.layout.betas

    @property
    def alphas(self) -> np.ndarray:
        return self.layout.alphas

    @property
    def gammas(self) -> np.ndarray:
        return self.layout.gammas

    @property
    def n_slices(self) -> int:
        return self.layout.n_slices

    @property
    def n_distinct(self) -> int:
        """Number of distinct β (columns of step 2's output)."""
        return self.layout.distinct.size

    # ------------------------------------------------------------------ steps
    def radial_compress(self, coef: np.ndarray) -> np.ndarray:
        """Step 0 for the volumes: principal shells (compressed) or the coefficients."""
        if not self.compressed:
            return coef
        if np.isrealobj(self.radial):
            # real radial vectors: one real product on the (re, im) interleaved values
            # (a quarter of the complex product's flops, the same sums)
            c = np.ascontiguousarray(coef, dtype=np.complex128)
            out = np.matmul(self._radial_Tr, c.view(np.float64))
            return out.view(np.complex128)
        return np.matmul(self._radial_T, coef)

    def step1(self, coef: np.ndarray) -> np.ndarray:
        """T[a, base_l + m1 (2l+1) + m2 + l] (eq. 104 step 1 / eq. 117 step 1): one numba
        kernel for up to SMALL_RANK radial functions, else one matrix product per degree
        (BLAS)."""
        n = coef.shape[0]
        L = self.L
        T = np.empty((n, int(self.base[-1])), dtype=np.complex128)
        if coef.shape[1] <= SMALL_RANK:
            _step1_small(np.ascontiguousarray(coef, dtype=np.complex128), self.grid.m_start,
                         self._tg_re, self._tg_im, self.base, L, T)
            return T
        starts = self.grid.m_start
        for l in range(L + 1):
            idx = starts[: l + 1] + (l - np.arange(l + 1))           # (l, m1), m1 = 0..l
            A = np.conj(coef[:, :, idx]).transpose(0, 2, 1).reshape(n * (l + 1), -1)
            blk = A @ self.target[l]                                  # (n (l+1), 2l+1)
            T[:, self.base[l]:self.base[l + 1]] = blk.reshape(n, -1)
        return T

    def step1b(self, T: np.ndarray) -> np.ndarray:
        """Y[a, (m1 H_D + j) (2L+1) + m2 + L] = Σ_l v_j[l] T_l(m1, m2) (eq. 117 step 1b)."""
        Y = np.empty((T.shape[0], self.L + 1, self.H_D, 2 * self.L + 1), dtype=np.complex128)
        _degree_project(T, self.base, self.degree_vectors, self.L, Y)
        return Y.reshape(T.shape[0], -1)

    def step1_project(self, coef: np.ndarray) -> np.ndarray:
        """Steps 1 and 1b of the compressed path in one pass (equal to ``step1b(step1(c))``):
        one fused numba kernel for up to SMALL_RANK principal shells (the per-degree sums T
        never reach memory), else the two steps in turn."""
        if not self.compressed:
            raise InputError("step1_project: only for compressed plans (use step1)")
        if coef.shape[1] > SMALL_RANK:
            return self.step1b(self.step1(coef))
        Y = np.empty((coef.shape[0], self.L + 1, self.H_D, 2 * self.L + 1),
                     dtype=self._operand_dtype)
        _step1_project(np.ascontiguousarray(coef, dtype=np.complex128), self.grid.m_start,
                       self._tg_re, self._tg_im, self.degree_vectors, self.L, Y)
        return Y.reshape(coef.shape[0], -1)

    def operands(self, Z: np.ndarray) -> np.ndarray:
        """Step 2's operand rows from step 1 (full: reordered to (m1, m2, l)) or step 1b,
        C-contiguous in the step-2 precision."""
        if not self.compressed:
            Z = np.take(Z, self.tidx, axis=1)        # rows (m1, m2, l): l innermost
        return np.ascontiguousarray(Z, dtype=self._operand_dtype)

    def step2(self, Z: np.ndarray, norms: np.ndarray | None = None,
              head_only: bool = False) -> np.ndarray:
        """conj X̂(m1, m2; β_u) for the distinct β_u: (n, n_u, M//2+1 [m1], M [m2 mod M]),
        the Hermitian half-spectrum in m1 (zero for m1 > L and |m2| > L).

        norms: optional (n, n_u, L+1) float64 array, filled with the row norms w_{m1}
        Σ_{m2} |X̂(m1, m2; β_u)| (w_0 = 1, else 2; summed while the values are in registers).
        Their sum over m1, the l1 norm of the whole spectrum, bounds every value of that β's
        landscape slice; partial sums bound what the rows left out can add
        (:meth:`step3_best`).

        head_only (compressed plans, with norms): only the rows m1 < row_split are formed,
        (n, n_u, row_split, M); the norms of the other rows are replaced by one bound of
        their sum in norms[:, :, row_split] (:meth:`TailTables.bounds`; 0 in the later
        rows), and :meth:`step3_best` forms those rows for the few slices that need them."""
        n = Z.shape[0]
        nu = self.n_distinct
        M = self.M
        if head_only and not (self.compressed and norms is not None):
            raise InputError("step2: head_only needs a compressed plan and norms")
        Z = self.operands(Z)
        want = norms is not None
        if want:
            check_norms(norms, (n, nu, self.L + 1))
        else:
            norms = np.empty((1, 1, 1))
        first, count, step = self._operand_rows
        if head_only:
            r = self.row_split
            out = self.workspace.get("xhead", (n, nu, r, M), self.complex_dtype)
            _contract_rows(Z, first, count, step, self._table, self.L,
                           self.m1_order[self.m1_order < r], out, norms, True)
            self.tail_tables().bounds(Z, norms, self.workspace)
            return out
        out = self.workspace.get("xhat", (n, nu, M // 2 + 1, M), self.complex_dtype)
        out[:, :, self.L + 1:] = 0.0
        _contract_rows(Z, first, count, step, self.table, self.L, self.m1_order, out, norms,
                       want)
        return out

    def _step3_source(self, Xc: np.ndarray) -> np.ndarray:
        """Input of the step-3 transforms: ``Xc`` itself (even M) or, for odd M, every grid β
        with the mirror sign (-1)^{m1-m2} folded in (a work array)."""
        if self.M % 2 == 0:
            return Xc
        out = self.workspace.get("signed", (Xc.shape[0], self.n_beta) + Xc.shape[2:],
                                 self.complex_dtype)
        return self.layout.fold_mirrors(Xc, out)

    def step3(self, Xc: np.ndarray) -> np.ndarray:
        """The β slices X[a, s, i (α), j (γ)] that step 3 computes: (n, n_slices, M, M).

        X(α, β, γ) = Re Σ_{m1, m2} X̂(m1, m2; β) e^{-i m1 α} e^{-i m2 γ} is one real 2D
        transform per slice.  Even M: the n_u distinct β only (see :meth:`expand`); odd M:
        every grid β, the mirrored ones with the sign (-1)^{m1-m2} folded into X̂.  The result
        is a work array, overwritten by the next call; ``Xc`` is used as scratch (its contents
        are lost).  Volumes are spread over ``fft_workers()`` threads."""
        n = Xc.shape[0]
        S = self.workspace.get("slices", (n, self.n_slices, self.M, self.M), self.real_dtype)
        per_volume(_Step3Range(self._step3_source(Xc), S, self), n)
        return S

    def step3_best(self, Xc: np.ndarray, norms: np.ndarray | None = None,
                   Z: np.ndarray | None = None):
        """Step 3 fused with :meth:`best`: the slices are transformed a few at a time into
        per-thread buffers and searched there while in cache, so they never reach memory.
        Returns (b, i, j, score), the grid maximiser of the landscape as :meth:`best`
        defines it; ``Xc`` is used as scratch.

        Without ``norms`` every slice is transformed, in the calls of :meth:`step3`: the
        result is ``best(step3(Xc))`` bit for bit.  With ``norms`` (the row norms of
        :meth:`step2`) it is the exact branch and bound of :class:`PrunedSearch`.  A slice's
        values there differ from those of :meth:`step3` only in the last bits (ducc0 rounds
        the lines of an incomplete SIMD vector differently, and the calls gather other
        lines), so scores agree with ``best(step3(Xc))`` to that rounding, and positions
        unless two grid values are that close; the result is the same for any thread count.
        With spectra of the first rows only (``step2(..., head_only=True)``), ``Z`` must be
        the operands step 2 was given: the other rows are formed from them for the slices
        that get the rest of the pass over m2.  ``step3_calls`` records (columns γ through
        the pass over m1, slices through the whole pass over m2, slices); a slice has M
        columns."""
        n = Xc.shape[0]
        M, ns = self.M, self.n_slices
        if norms is None:
            work = self.workspace.get("search", (min(fft_workers(), n), self.fft_chunk, M, M),
                                      self.real_dtype)
            best = exhaustive_best(self._step3_source(Xc), self.layout, self.fft_chunk, work)
            self.step3_calls = (n * ns * M, n * ns, n * ns)
            return best
        check_norms(norms, (n, self.n_distinct, self.L + 1))
        tail = None
        if Xc.shape[2] != M // 2 + 1:                 # first rows only: the rest from Z
            if not self.compressed or Xc.shape[2] != self.row_split or Z is None:
                raise InputError(f"step3_best: spectra with {Xc.shape[2]} rows need a "
                                 f"compressed plan (row_split = {self.row_split}) and Z, "
                                 "the operands of step2(..., head_only=True)")
            Z = self.operands(Z)
            if Z.shape != (n, self._table.shape[0]):
                raise InputError(f"step3_best: Z has shape {Z.shape}, expected "
                                 f"{(n, self._table.shape[0])}")
            tail = self.tail_tables()
        else:
            Z = None
        search = PrunedSearch(self.layout, self.L, self.row_split, self.fft_chunk,
                              self.margins, self.complex_dtype, self.real_dtype,
                              self.workspace, Xc, norms, Z, tail)
        best = search.run()
        self.step3_calls = search.calls
        return best

    def expand(self, S: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Whole landscapes (n, n_β, M, M) from the step-3 slices (mirrored β of even M:
        X(α, -β, γ) = X(α + π, β, γ + π), copied with the index shift M/2 in α and γ)."""
        shape = (S.shape[0], self.n_beta, self.M, self.M)
        if out is None:
            out = np.empty(shape, dtype=self.real_dtype)
        elif out.shape != shape or out.dtype != self.real_dtype:
            raise InputError(f"out: expected shape {shape} and dtype "
                             f"{np.dtype(self.real_dtype)}, got {out.shape} {out.dtype}")
        return self.layout.expand(S, out)

    def best(self, S: np.ndarray):
        """Grid maximiser of every landscape from the step-3 slices: (b, i, j, score) arrays.

        Tie rule: the first maximiser in the order of the whole landscape X[a, b, i, j]
        (C order, as np.argmax over the expanded array would pick); mirrored slices are
        exact copies of their sources, so the maximum is found on the slices alone."""
        return best_of_slices(S, self.layout)

    def spectra(self, coef: np.ndarray, norms: np.ndarray | None = None) -> np.ndarray:
        """Steps 0–2 on a block of volumes (n, R, n_lm): the half-spectra of :meth:`step2`
        (and its row norms into ``norms`` if given)."""
        c = self.radial_compress(coef)
        return self.step2(self.step1_project(c) if self.compressed else self.step1(c), norms)

    def norms_array(self, n: int) -> np.ndarray:
        """A reusable (n, n_u, L+1) array for the row norms of :meth:`step2` (owned by the
        plan)."""
        return self.workspace.get("norms", (n, self.n_distinct, self.L + 1), np.float64)

    def slices(self, coef: np.ndarray) -> np.ndarray:
        """Steps 0–3 on a block of volumes (n, R, n_lm): the step-3 slices (work array)."""
        return self.step3(self.spectra(coef))

    def best_rotations(self, coef: np.ndarray, timer: dict | None = None,
                       prune: bool = True):
        """Steps 0–3 and the grid maximiser of a block of volumes, (b, i, j, score) as
        ``best(slices(coef))`` but without the slices of the block in memory
        (:meth:`step3_best`; ``head_only`` plans: step 2 of the first rows only, the others
        formed in step 3 where needed).

        timer: a dict to which each step's seconds are added under the keys of ``STEPS``
        (step 3 includes the search), as ``align_images(timer=...)`` does for its stages.  prune=False: every slice transformed (no bounds, no
        row norms): the reference the pruned search is checked against."""
        clock = StageTimer(timer)
        c = self.radial_compress(coef)
        clock.lap("step0")
        # compressed: steps 1 + 1b fused (one kernel, reported as step 1)
        Z = self.step1_project(c) if self.compressed else self.step1(c)
        clock.lap("step1")
        clock.lap("step1b")
        norms = self.norms_array(coef.shape[0]) if prune else None
        head_only = prune and self.head_only
        if head_only:
            Z = self.operands(Z)
        Xc = self.step2(Z, norms, head_only=head_only)
        clock.lap("step2")
        best = self.step3_best(Xc, norms, Z if head_only else None)
        clock.lap("step3")
        return best

    def __call__(self, coef: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Landscapes of a block of volumes (n, R, n_lm) → (n, n_β, M, M) (into ``out`` if
        given: reusing one output array saves the page faults of a fresh one per block)."""
        return self.expand(self.slices(coef), out=out)

    def work_array(self, n: int) -> np.ndarray:
        """A reusable output array for blocks of n volumes (owned by the plan)."""
        return self.workspace.get("landscape", (n, self.n_beta, self.M, self.M),
                                  self.real_dtype)


class _Step3Range:
    """Whole step-3 slices of volumes a0..a1-1 on one worker (a task of :meth:`step3`)."""

    def __init__(self, src: np.ndarray, out: np.ndarray, plan: LandscapePlan):
        self.src, self.out = src, out
        self.chunks, self.M = chunk_bounds(plan.n_slices, plan.fft_chunk), plan.M

    def __call__(self, w: int, a0: int, a1: int) -> None:
        for a in range(a0, a1):
            for s0, s1 in self.chunks:
                transform_m2(self.src[a, s0:s1])
                transform_m1(self.src[a, s0:s1], self.out[a, s0:s1], self.M)


def prepare(grid: ShellGrid, coef_target, basis: VolumeBasis | None = None, rank=None,
            n_beta: int | None = None, M: int | None = None,
            wigner: WignerTable | None = None, precision: str = "auto",
            head_only: bool | None = None) -> LandscapePlan:
    """Precompute a :class:`LandscapePlan` for one target.

    rank: None or "full" (eq. 104), or H or (H_C, H_D) with ``basis`` (:func:`volume_svd` of
    the target) for the compressed landscape (eq. 117).
    precision: "double", or "single" for step 2's output and the step-3 transform (float32
    landscapes: half the memory, ~40% faster step 3); compressed plans in single precision
    also store step 1b's degree sums and the [vᵀd] tables in float32 and sum step 2 in
    float32 (steps 0, 1 and the table sums stay in double; the full path's Wigner table and
    step-2 sums are always double).  "auto" (default): "double" for the full path,
    "single" for compressed plans (their truncation error is ≫ float32 rounding; tests
    check that the metrics against the full landscape, correlation and f, change by <
    1e-4).
    head_only (compressed plans): whether best_rotations forms only the first rows in step
    2 (None: from L = HEAD_ONLY_MIN_L, where it is faster)."""
    return LandscapePlan(grid, coef_target, basis, rank_pair(rank), n_beta, M, wigner,
                         precision, head_only)


def landscapes(coef_volumes, coef_target, grid: ShellGrid, basis: VolumeBasis | None = None,
               rank=None, n_beta: int | None = None, M: int | None = None,
               precision: str = "double") -> np.ndarray:
    """Whole landscapes X[a, b, i, j] = <Â_a, R_τ B̂>, τ = (γ_j, β_b, α_i): (n, n_β, M, M).

    rank and basis as for :func:`prepare`.  precision: "double" by default, as every function
    that returns landscapes or metrics ("auto": single for compressed landscapes)."""
    plan = prepare(grid, coef_target, basis, rank_pair(rank), n_beta, M,
                   precision=precision)
    a = check_coefficients(coef_volumes, grid, "coef_volumes")
    return plan(a)
