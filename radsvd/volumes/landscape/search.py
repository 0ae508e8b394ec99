"""The grid maximiser of every landscape, fused with step 3: an exact branch and bound
(paper eq. 104, step 3; docs/design.md, "The pruned search").

:class:`GridSearch` keeps the running maxima of a few volumes and applies the tie rule (the
first maximiser of the whole landscape X[b, i, j] in C order, as np.argmax over it would
pick).  :func:`exhaustive_best` transforms every slice; :class:`PrunedSearch` skips what
cannot hold the maximum.  Each volume's slices are visited in decreasing order of their l1
norm (the sum of step 2's row norms), ``fft_chunk`` at a time, until the next norm is below
the maximum found so far:

1. the pass over m2 of the rows m1 < row_split only; their column l1 norms plus the norms
   of the other rows bound each slice;
2. once every slice that may hold the maximum has had stage 1, the rest of the pass over m2
   for the slices this bound leaves, each volume's slice of the largest bound first (a first
   maximum where none is known yet); their column l1 norms (:func:`_column_bounds`) bound
   each column γ;
3. the pass over m1 for the columns this bound leaves (:func:`_gather_columns`, a volume's
   column of the largest norm first while it has no maximum), and the search over them
   (:func:`_search_lines`).

Each bound is widened by the rounding margin of the passes after it
(:func:`rounding_margins`), so a skipped slice holds no value ≥ the maximum, however it were
transformed: the result is the exact maximiser of the values computed.  The search runs on
units of SEARCH_UNIT volumes (one ducc0 call serves the slices of all volumes of a unit),
handed to the FFT workers as they free up; the calls depend only on the values of a unit,
so the result is the same for any thread count.  At K = 48 about 3% of the slices get the
whole pass over m2 and 0.1–1% of the columns the pass over m1.
"""

from __future__ import annotations

import functools
import itertools
from typing import NamedTuple

import numpy as np

from radsvd._jit import fft_workers, jit
from radsvd._pool import pool_map
from radsvd._validate import InputError
from radsvd.volumes.landscape.layout import SliceLayout
from radsvd.volumes.landscape.tail import TailTables, _tail_rows
from radsvd.volumes.landscape.transforms import (chunk_bounds, per_volume, transform_m1,
                                                 transform_m2)

__all__ = ["SEARCH_UNIT", "Margins", "rounding_margins", "GridSearch", "PrunedSearch",
           "exhaustive_best", "best_of_slices", "check_norms"]

# volumes whose step-3 slices share the transform calls of the pruned search: fewer,
# larger ducc0 calls and less Python per volume
SEARCH_UNIT = 4


class Margins(NamedTuple):
    """Relative rounding margins of the step-3 bounds (:func:`rounding_margins`): a bound
    widened by the factor 1 + margin also bounds the values as the passes after it compute
    them."""

    one_pass: float      # column bounds: after the pass over m2, before the pass over m1
    two_passes: float    # slice bounds from step 2's row norms: before both passes


def rounding_margins(M: int, L: int, real_dtype) -> Margins:
    """Margins of the step-3 bounds in the transform precision ``real_dtype``.

    The transforms' rounding relative to the l1 mass passing through: ⌈log2 M⌉ radix-2
    levels per axis, each ≤ 8u (twiddle product and sum).  A slice whose bound, widened by
    its margin, is below a value already found cannot hold the maximum of the computed
    landscape: the column bounds of :func:`_column_bounds` precede one pass (``one_pass``;
    the row norms they leave out, the other pass too), the l1 norms of step 2 both passes
    (``two_passes``).  The bounds themselves are double sums of ≤ M + L + 1 non-negative
    terms (moduli by sqrt): each is at most 2(M + L + 5)·u64 below its exact value, added
    to both margins."""
    u = float(np.finfo(real_dtype).eps) / 2.0
    levels = float(np.ceil(np.log2(M)))
    sums = 2.0 * (M + L + 5) * float(np.finfo(np.float64).eps) / 2.0
    return Margins((8.0 * levels + 4.0) * u + sums, (16.0 * levels + 4.0) * u + sums)


def check_norms(norms, shape) -> None:
    """Row norms for step 2 / step 3: a float64 array of the plan's shape."""
    if not isinstance(norms, np.ndarray) or norms.shape != shape or norms.dtype != np.float64:
        got = f"{norms.dtype} {norms.shape}" if isinstance(norms, np.ndarray) else type(norms)
        raise InputError(f"norms: expected a float64 array of shape {shape}, got {got}")


def _stack_best(rows):
    """[(b, i, j, score), ...] → four arrays (int64, int64, int64, float64)."""
    b, i, j, score = zip(*rows)
    return (np.array(b, dtype=np.int64), np.array(i, dtype=np.int64),
            np.array(j, dtype=np.int64), np.array(score, dtype=np.float64))


class GridSearch:
    """Grid maximisers of the landscapes of ``count`` volumes, fed step-3 slices in batches
    (:func:`_search_update`, or :func:`_search_lines` for columns).

    Keeps every slice's maximum (``smax``), each volume's running maximum (``top``) and,
    for the slices that attain it when they arrive (the only ones that can hold the final
    one), the first position in plain and in half-period-shifted order (``first``);
    :meth:`result` then applies the tie rule (first maximiser of the whole landscape in C
    order)."""

    def __init__(self, layout: SliceLayout, count: int = 1):
        self.layout = layout
        self.smax = np.full((count, layout.n_slices), -np.inf)
        self.top = np.full(count, -np.inf)
        self.first = np.full((count, layout.n_slices, 2), -1, dtype=np.int64)

    def update(self, vols: np.ndarray, slices: np.ndarray, flat: np.ndarray) -> None:
        """Values of the slices (vols[q], slices[q]), flattened to (count, M²)."""
        _search_update(flat, vols, slices, self.smax, self.top, self.first)

    def result(self, v: int):
        """(b, i, j, score) of volume v: first grid β whose slice attains the maximum, then
        its first (i, j) in the order of that β's landscape."""
        lay = self.layout
        top = float(self.top[v])
        b = int(np.argmax(self.smax[v, lay.slice_of] == top))
        plain, shifted = self.first[v, lay.slice_of[b]]
        i, j = divmod(int(shifted if lay.shifted[b] else plain), lay.M)
        return b, i, j, top


def best_of_slices(S: np.ndarray, layout: SliceLayout):
    """Grid maximiser (b, i, j, score arrays) of every landscape from its step-3 slices
    ``S`` (n, n_slices, M, M); mirrored slices are exact copies of their sources, so the
    maximum is found on the slices alone."""
    n, ns = S.shape[:2]
    flat = S.reshape(n, ns, layout.M * layout.M)
    out = []
    for a in range(n):
        search = GridSearch(layout)
        search.update(np.zeros(ns, dtype=np.int64), np.arange(ns), flat[a])
        out.append(search.result(0))
    return _stack_best(out)


def exhaustive_best(src: np.ndarray, layout: SliceLayout, fft_chunk: int, work: np.ndarray):
    """Step 3 fused with the grid search on every slice: (b, i, j, score arrays), the same
    bits as :func:`best_of_slices` of whole step-3 slices made in the same calls.  ``src``:
    the spectra of every slice (:meth:`SliceLayout.fold_mirrors`), used as scratch;
    ``work``: (workers, fft_chunk, M, M) in the transform precision."""
    out = [None] * src.shape[0]
    per_volume(functools.partial(_exhaustive_range, src, layout, fft_chunk, work, out),
               src.shape[0])
    return _stack_best(out)


def _exhaustive_range(src, layout, fft_chunk, work, out, w, a0, a1) -> None:
    """:func:`exhaustive_best` of volumes a0..a1-1 on worker w (work slot w)."""
    M = layout.M
    for a in range(a0, a1):
        search = GridSearch(layout)
        for s0, s1 in chunk_bounds(layout.n_slices, fft_chunk):
            transform_m2(src[a, s0:s1])
            transform_m1(src[a, s0:s1], work[w, :s1 - s0], M)
            search.update(np.zeros(s1 - s0, dtype=np.int64), np.arange(s0, s1),
                          work[w, :s1 - s0].reshape(s1 - s0, M * M))
        out[a] = search.result(0)


class PrunedSearch:
    """The branch and bound of the module docstring on one block of spectra.

    ``Xc`` (n, n_u, rows, M): step 2's half-spectra (used as scratch), all M//2+1 rows, or
    the rows m1 < row_split with ``Z``, the step-2 operands, and ``tail`` (:class:`TailTables`)
    to form the others; ``norms`` (n, n_u, L+1): step 2's row norms.  :meth:`run` returns
    (b, i, j, score) arrays; ``calls`` then holds (columns γ through the pass over m1, slices
    through the whole pass over m2, slices).  Work arrays come from ``workspace`` (one slot
    per FFT worker)."""

    def __init__(self, layout: SliceLayout, L: int, row_split: int, fft_chunk: int,
                 margins: Margins, complex_dtype, real_dtype, workspace, Xc: np.ndarray,
                 norms: np.ndarray, Z: np.ndarray | None = None,
                 tail: TailTables | None = None):
        self.layout, self.L, self.row_split, self.fft_chunk = layout, L, row_split, fft_chunk
        self.Xc, self.Z, self.tail = Xc, Z, tail
        n, ns, M = Xc.shape[0], layout.n_slices, layout.M
        # each volume's slices by decreasing l1 norm (keys, widened over both passes), and
        # the norms of the rows ≥ row_split (widened over the pass over m1)
        per_slice = norms[:, layout.slice_src]
        keys = per_slice.sum(axis=2) * (1.0 + margins.two_passes)
        self.tails = per_slice[:, :, row_split:].sum(axis=2) * (1.0 + margins.one_pass)
        self.order = np.argsort(-keys, axis=1, kind="stable")
        self.keys = np.take_along_axis(keys, self.order, axis=1)
        self.widen = 1.0 + margins.one_pass
        self.units = [(u0, min(u0 + SEARCH_UNIT, n)) for u0 in range(0, n, SEARCH_UNIT)]
        self.workers = min(fft_workers(), len(self.units))
        cap = SEARCH_UNIT * ns                          # stage-1 slices of a unit
        rows, g, w = M // 2 + 1, fft_chunk, self.workers
        # per worker: stage-1 spectra (rows < row_split) after the pass over m2, whole
        # spectra of the later stages, columns γ for the pass over m1 and their values and
        # positions, column norms (stage 1, later stages), slice bounds (stage 1, later
        # stages), batch indices (volume, slice, leads, survivors)
        self.head = workspace.get("head", (w, cap, row_split, M), complex_dtype)
        self.whole = workspace.get("whole", (w, g, rows, M), complex_dtype)
        self.lines = workspace.get("lines", (w, g * M, rows), complex_dtype)
        self.values = workspace.get("values", (w, g * M, M), real_dtype)
        self.where = workspace.get("where", (w, g * M, 2), np.int64)
        self.col_norms = workspace.get("colsum", (w, 2, cap, M), np.float64)
        self.bounds = workspace.get("bounds", (w, 2, cap), np.float64)
        self.index = workspace.get("index", (w, 4, cap), np.int64)
        self.no_tail = np.zeros(g)
        self.best = [None] * n
        self.counts = np.zeros((len(self.units), 2), dtype=np.int64)
        self.calls = (0, 0, 0)

    def run(self):
        """Search every unit (units to workers as they free up); (b, i, j, score) arrays."""
        self._next_unit = itertools.count()
        if self.workers <= 1:
            self._worker(0)
        else:
            pool_map(self._worker, range(self.workers), self.workers, single_blas=False)
        n = self.Xc.shape[0]
        ns = self.layout.n_slices
        self.calls = (int(self.counts[:, 0].sum()), int(self.counts[:, 1].sum()), n * ns)
        return _stack_best(self.best)

    def _worker(self, w: int) -> None:
        """Worker w takes the next unit until none is left (itertools.count is atomic)."""
        while (u := next(self._next_unit)) < len(self.units):
            self._unit(w, u)

    def _unit(self, w: int, u: int) -> None:
        """Stages 1–3 for the volumes a0..a1-1 of unit u on worker w."""
        lay, r, g = self.layout, self.row_split, self.fft_chunk
        a0, a1 = self.units[u]
        search = GridSearch(lay, a1 - a0)
        pos = np.zeros(a1 - a0, dtype=np.int64)
        vq, sq, lead, sel = self.index[w]
        part = self.bounds[w, 0]
        head, cols = self.head[w], self.col_norms[w, 0]
        total = 0
        while True:          # stage 1 for every slice whose l1 norm reaches the maximum
            K = _next_groups(self.keys, self.order, a0, pos, search.top, g, vq[total:],
                             sq[total:])
            if K == 0:
                break
            new = slice(total, total + K)
            _gather_pairs(self.Xc, a0, vq[new], sq[new], lay.slice_src, lay.slice_flip,
                          lay.mirror_sign, 0, r, head[new])
            transform_m2(head[new])
            _column_bounds(head[new], 0, r, cols[new], self.tails[a0 + vq[new], sq[new]],
                           part[new])
            part[new] *= self.widen
            total += K
            nl = _leads(part[:total], vq[:total], search.top, True, lead)
            if nl:                                  # a first maximum per volume
                self._rest(w, u, a0, search, vq[:total], sq[:total], lead[:nl])
        # stages 2 and 3: each volume's slice of the largest bound, then all others left
        nl = _leads(part[:total], vq[:total], search.top, False, lead)
        if nl:
            self._rest(w, u, a0, search, vq[:total], sq[:total], lead[:nl])
        n_sel = _survivors(part[:total], vq[:total], search.top, sel)
        if n_sel:
            self._rest(w, u, a0, search, vq[:total], sq[:total], sel[:n_sel])
        for v in range(a1 - a0):
            self.best[a0 + v] = search.result(v)

    def _rest(self, w, u, a0, search, vq, sq, sel) -> None:
        """The rest of the pass over m2, then the pass over m1 of the columns that can hold
        the maximum (a fresh volume's column of the largest norm first), for the stage-1
        positions ``sel``."""
        lay, L, r, g, M = self.layout, self.L, self.row_split, self.fft_chunk, self.layout.M
        lines, values, where = self.lines[w], self.values[w], self.where[w]
        for c0 in range(0, sel.size, g):
            part = sel[c0:c0 + g]
            k = part.size
            buf, col, bound = self.whole[w], self.col_norms[w, 1, :k], self.bounds[w, 1, :k]
            vp, sp = vq[part], sq[part]
            _stage2_inputs(self.head[w], part, r, self.col_norms[w, 0], buf, col)
            if self.Z is None:
                _gather_pairs(self.Xc, a0, vp, sp, lay.slice_src, lay.slice_flip,
                              lay.mirror_sign, r, M // 2 + 1, buf)
            else:
                _tail_rows(self.Z, a0, vp, sp, lay.slice_src, lay.slice_flip,
                           lay.mirror_sign, self.tail.table, r, L, buf[:k])
            if r <= L:                                # rows left after stage 1
                transform_m2(buf[:k, r:L + 1])
            _column_bounds(buf[:k], r, L + 1, col, self.no_tail, bound)
            self.counts[u, 1] += k
            for lead_only in (True, False):
                nl = _gather_columns(buf[:k], col, vp, search.top, self.widen, lead_only,
                                     lines, where)
                if nl:
                    transform_m1(lines[:nl], values[:nl], M)
                    _search_lines(values[:nl], where[:nl], vp, sp, search.smax, search.top,
                                  search.first)
                    self.counts[u, 0] += nl


# ----------------------------------------------------------------------------- kernels
@jit
def _column_bounds(Y, r0, r1, col, tail, out):  # pragma: no cover
    """Column l1 norms of step-3 slices after the transform over m2, rows r0 ≤ m1 < r1 added
    to ``col`` (zeroed first if r0 = 0): col[s, γ] += Σ_{m1} w_{m1} |Y[s, m1, γ]| (w_0 = 1,
    else 2; in double), and out[s] = max_γ col[s, γ] + tail[s].

    The transform over m1 gives X(α, γ) = Re Y(0, γ) + 2 Re Σ_{m1 ≥ 1} Y(m1, γ) e^{-i m1 α},
    so with every row added (r1 = L + 1, rows above are zero) out[s] bounds slice s; with
    rows < r1 only, ``tail`` must bound the rest (the row norms of step 2)."""
    ns, Mc = Y.shape[0], Y.shape[2]
    for s in range(ns):
        c_s = col[s]
        if r0 == 0:
            c_s[:] = 0.0
        for m1 in range(r0, r1):
            w = 1.0 if m1 == 0 else 2.0
            for c in range(Mc):
                x = Y[s, m1, c]
                xr = np.float64(x.real)
                xi = np.float64(x.imag)
                c_s[c] += w * np.sqrt(xr * xr + xi * xi)
        out[s] = c_s.max() + tail[s]


@jit
def _gather_pairs(Xc, a0, vols, slices, slice_u, flip, sign, r0, r1, out):  # pragma: no cover
    """out[q, r0:r1] = rows r0:r1 of the step-3 input of slice slices[q] of volume
    a0 + vols[q]: the spectrum Xc[a, slice_u[s]], times the mirror sign (-1)^{m1-m2}
    (``sign``, rows × M) where flip[s] (odd M: the grid's negative β)."""
    for q in range(vols.size):
        s = slices[q]
        x = Xc[a0 + vols[q], slice_u[s]]
        for m1 in range(r0, r1):
            if flip[s]:
                for c in range(Xc.shape[3]):
                    out[q, m1, c] = x[m1, c] * sign[m1, c]
            else:
                for c in range(Xc.shape[3]):
                    out[q, m1, c] = x[m1, c]


@jit
def _next_groups(keys, order, a0, pos, top, g, vols, slices):  # pragma: no cover
    """The next stage-1 batch of a unit of volumes a0, a0+1, ... (pruned step 3): for each
    volume v, up to g more of its slices in the order ``order`` whose widened l1 norm
    ``keys`` (sorted) is ≥ its running maximum top[v], into (vols, slices); returns their
    count.  pos[v] advances (to the end once a norm falls below top[v]: all later do)."""
    K = 0
    ns = keys.shape[1]
    for v in range(pos.size):
        p = pos[v]
        c = 0
        while c < g and p + c < ns and keys[a0 + v, p + c] >= top[v]:
            vols[K] = v
            slices[K] = order[a0 + v, p + c]
            K += 1
            c += 1
        pos[v] = p + c if c > 0 else ns
    return K


@jit
def _leads(bound, vols, top, fresh_only, out):  # pragma: no cover
    """For each volume (only those without a value yet, top = -inf, if ``fresh_only``) the
    batch position of its slice of the largest ``bound`` ≥ top[v] into out (ascending;
    that bound is then set to -inf, so the slice is not taken twice); returns the count."""
    n = 0
    for v in range(top.size):
        if fresh_only and top[v] != -np.inf:
            continue
        best = -1
        for q in range(vols.size):
            if vols[q] == v and bound[q] > -np.inf and bound[q] >= top[v] and (
                    best < 0 or bound[q] > bound[best]):
                best = q
        if best >= 0:
            out[n] = best
            n += 1
    out[:n].sort()
    for k in range(n):
        bound[out[k]] = -np.inf
    return n


@jit
def _survivors(bound, vols, top, out):  # pragma: no cover
    """Batch positions q with bound[q] ≥ top[vols[q]] into out (ascending); returns the
    count."""
    n = 0
    for q in range(vols.size):
        if bound[q] >= top[vols[q]]:
            out[n] = q
            n += 1
    return n


@jit
def _search_update(flat, vols, slices, smax, top, first):  # pragma: no cover
    """Grid search over computed slices flat[q] = X(volume vols[q], slice slices[q]) as
    (M², ) rows: smax[v, s] = the slice maximum, top[v] = the running maximum, and for the
    slices attaining it on arrival first[v, s] = (first position, first position in the
    half-period-shifted order (i + M/2, j + M/2) mod M)."""
    M2 = flat.shape[1]
    M = int(round(np.sqrt(M2)))
    h = M // 2
    n = vols.size
    sm = np.empty(n)
    for q in range(n):
        sm[q] = flat[q].max()
        smax[vols[q], slices[q]] = sm[q]
        top[vols[q]] = max(top[vols[q]], sm[q])
    for q in range(n):
        v = vols[q]
        if sm[q] != top[v]:
            continue
        x = flat[q]
        k0 = -1
        ks = M2
        for k in range(M2):
            if x[k] == sm[q]:
                if k0 < 0:
                    k0 = k
                i, j = divmod(k, M)
                ks = min(ks, ((i + h) % M) * M + (j + h) % M)
        first[v, slices[q], 0] = k0
        first[v, slices[q], 1] = ks


@jit
def _stage2_inputs(head, part, r, col_head, out, col):  # pragma: no cover
    """Inputs of the rest of the pass over m2 for the stage-1 batch positions ``part``:
    out[i, :r] = head[part[i]] (rows done) and col[i] = col_head[part[i]] (their column
    norms so far); the other rows come from :func:`_gather_pairs` or :func:`_tail_rows`."""
    Mc = out.shape[2]
    for i in range(part.size):
        q = part[i]
        for m1 in range(r):
            for c in range(Mc):
                out[i, m1, c] = head[q, m1, c]
        for c in range(Mc):
            col[i, c] = col_head[q, c]




@jit
def _gather_columns(buf, col, vols, top, widen, lead_only, lines, where):  # pragma: no cover
    """Columns γ of the slices in ``buf`` (after the whole pass over m2) that the pass
    over m1 needs: those whose column norm col[i, γ]·widen is ≥ the running maximum
    top[vols[i]], copied as lines[n] = buf[i, :, γ] with where[n] = (i, γ); returns n.
    lead_only: only for volumes without a maximum yet (top = -inf), the column of the
    largest norm of their first slice here (a first maximum; the leads' calls hold one
    slice per volume)."""
    n = 0
    rows, Mc = buf.shape[1], buf.shape[2]
    for i in range(buf.shape[0]):
        t = top[vols[i]]
        if lead_only:
            if t != -np.inf:
                continue
            lead = True
            for i2 in range(i):
                if vols[i2] == vols[i]:
                    lead = False                       # one slice per volume at most
            if not lead:
                continue
            c = np.argmax(col[i])
            for m1 in range(rows):
                lines[n, m1] = buf[i, m1, c]
            where[n, 0] = i
            where[n, 1] = c
            n += 1
            continue
        for c in range(Mc):
            if col[i, c] * widen >= t:
                for m1 in range(rows):
                    lines[n, m1] = buf[i, m1, c]
                where[n, 0] = i
                where[n, 1] = c
                n += 1
    return n


@jit
def _search_lines(vals, where, vols, slices, smax, top, first):  # pragma: no cover
    """Grid search over computed columns: vals[n, α] = X(α, γ) of slice i = where[n, 0],
    column γ = where[n, 1] (lines of one slice consecutive; vols/slices index by i).
    Like :func:`_search_update`: smax[v, s] (over the computed columns: the others are
    below the maximum), top[v], and first[v, s] for slices attaining it on arrival."""
    M = vals.shape[1]
    h = M // 2
    nl = where.shape[0]
    n0 = 0
    while n0 < nl:                                    # slice by slice
        i = where[n0, 0]
        n1 = n0
        m = -np.inf
        while n1 < nl and where[n1, 0] == i:
            m = max(m, np.float64(vals[n1].max()))
            n1 += 1
        v, s = vols[i], slices[i]
        prev = smax[v, s]
        if m >= prev:
            smax[v, s] = m
            if m > top[v]:
                top[v] = m
            if m == top[v]:
                k0 = M * M
                ks = M * M
                for n in range(n0, n1):
                    c = where[n, 1]
                    for a in range(M):
                        if vals[n, a] == m:
                            k0 = min(k0, a * M + c)
                            ks = min(ks, ((a + h) % M) * M + (c + h) % M)
                if m == prev and first[v, s, 0] >= 0:      # same maximum seen before
                    k0 = min(k0, first[v, s, 0])
                    ks = min(ks, first[v, s, 1])
                first[v, s, 0] = k0
                first[v, s, 1] = ks
        n0 = n1
