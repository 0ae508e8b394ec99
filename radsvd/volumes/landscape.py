"""Rotational landscapes of volumes on the (α, β, γ) grid (paper eq. 103–104, 117).

X(τ; A, B) = <Â, R_τ B̂> = Σ_r w_r Σ_{l,m} conj(Â_l^m(k_r)) (R_τ B̂)_l^m(k_r), τ = (γ, β, α),
R_τ = R^z_α R^y_β R^z_γ (active; eq. 93, 97): the TARGET B is rotated, and X is the Fourier
inner product (= (2π)³ times the real-space one on band-limited shells).

Grid: α_i = 2πi/M, γ_j = 2πj/M (i, j = 0..M-1), β_b = -π + 2πb/n_β (default n_β = 2(L+1),
the reference's linspace(-π, π, n_β+1)[:-1]).  Landscapes have shape (n, n_β, M, M), indexed
[volume, b, i (α), j (γ)].  Default M = :func:`default_M` (L): the smallest even 7-smooth
number ≥ 2L+1 (98 at L = 48).  Any M ≥ 2L+1 samples the degree-L landscape exactly (the
paper's 2L+1 still works: pass M explicitly); an even M makes mirrored β index shifts
(below) and a smooth M keeps the FFT fast (M = 97 is prime: Bluestein, ~4× slower).

Full path (eq. 104):
  step 1  T_l(m1, m2) = Σ_r w_r conj(A_l^{m1}(k_r)) B_l^{m2}(k_r), one matrix product per l
          over (volumes × m1) × r × m2, only 0 ≤ m1 ≤ l, |m2| ≤ l (|m| > l vanish);
  step 2  X̂(m1, m2; β) = Σ_{l ≥ max(m1,|m2|)} d^l_{m1,m2}(β) T_l(m1, m2)   (numba kernel,
          one m1 per task, β innermost), written as the Hermitian half-spectrum in m1;
  step 3  X(α, β, γ) = Σ_{m1,m2} e^{-i m1 α} e^{-i m2 γ} X̂(m1, m2; β), a real 2D FFT
          (ducc0.fft.c2r, a few β slices of one volume per call so that they stay in cache);
          for the best rotations alone it is fused with the search
          (:meth:`LandscapePlan.best_rotations`): the slices never reach memory, and
          whatever cannot hold the maximum is skipped (branch and bound, exact): the l1
          norm of a slice's spectrum (row norms summed in step 2) gates the pass over m2 of
          its first rows m1 < row_split; their column norms plus the other rows' norms gate
          the rest of that pass; the column norms then gate the pass over m1 column by
          column.  About 3% of the slices get the whole pass over m2 and 0.1–1% of the
          columns the pass over m1 (K = 48).
Symmetries used: real volumes give X̂(-m1, -m2) = conj X̂(m1, m2), so only m1 ≥ 0 is formed
and step 3 is complex-to-real; and d^l_{m1,m2}(-β) = (-1)^{m1-m2} d^l_{m1,m2}(β), so step 2
runs only for the distinct β (β ≥ 0 and β = -π: n_β/2 + 1 of them).  For even M that
symmetry is X(α, -β, γ) = X(α + π, β, γ + π), an index shift by M/2 in α and γ: step 3 and
the search for the best rotation (:meth:`LandscapePlan.best`) run on the distinct β only,
and whole landscapes (:meth:`LandscapePlan.expand`) copy the mirrored slices shifted.  For
odd M the sign is folded into X̂ and every β is transformed.

Compressed path (eq. 117) at ranks (H_C, H_D): step 1 on principal shells (R → H_C),
step 1b Y_j(m1, m2) = Σ_l v_j[l] T_l(m1, m2), step 2 with the tables [v_jᵀ d](β) (H_D terms
instead of L+1-max(m1,|m2|); float32 tables and sums in single precision), step 3
unchanged.  For H_C ≤ SMALL_RANK steps 1 and 1b run
fused in one kernel (:meth:`LandscapePlan.step1_project`): each row T_l(m1, ·) is projected
onto the degree vectors as soon as it is formed, so T never reaches memory.  Full ranks
(R, L+1) reproduce the full landscape to rounding.  For the best rotations alone, step 2 of
compressed plans with L ≥ HEAD_ONLY_MIN_L = 32 forms only the rows m1 < row_split
(``step2(..., head_only=True)``) and bounds the others by Cauchy-Schwarz over blocks of m2
(~2× their l1 norm: those rows hold ~3% of a compressed landscape's l1 mass at K = 48); the
pruned search forms them for the ~4% of the slices that need them, from a β-major copy of
their [vᵀd] tables.  (The full path keeps its whole step 2: there those rows hold ~10% of
the mass, their bound is a sum over up to L+1-r degrees, 3.5× loose, and forming them
costs 1.2 MB of operands per slice.)
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
from numba import prange

from radsvd._jit import fft_workers, jit
from radsvd._validate import InputError, grid_of, rank as _rank
from radsvd.volumes.basis import VolumeBasis, check_coefficients
from radsvd.volumes.shells import ShellGrid
from radsvd.volumes.wigner import WignerTable, _pair_offsets

# step 1 by the numba kernel up to this many radial functions, else one BLAS product per
# degree (measured at K = 48 in the benchmark, blocks of 8 volumes, 2 threads: R = 49 numba
# 1.57 vs BLAS 1.15 ms/pair (cold caches); H_C = 8 numba 0.16-0.22 vs BLAS 0.40 ms/pair)
SMALL_RANK = 16

# volumes whose step-3 slices share the transform calls of the pruned search
# (LandscapePlan.step3_best): fewer, larger ducc0 calls and less Python per volume
SEARCH_UNIT = 4

# blocks of m2 over which the rows step 2 leaves to the pruned search of compressed plans
# are bounded by Cauchy-Schwarz (LandscapePlan._tail_bounds; K = 48, rank 8: the bounds
# are ~2× the sum of the rows' norms)
TAIL_BLOCKS = 8

# smallest degree L at which best_rotations of compressed plans forms only the first rows
# in step 2 (steps 0–3 against the whole step 2, ranks 4 and 8, 32 volumes, 2 threads:
# K = 16 25–35% slower, K = 24 equal, K = 32 14–18% and K = 48 20–27% faster)
HEAD_ONLY_MIN_L = 32

__all__ = ["LandscapePlan", "prepare", "landscapes", "beta_grid", "default_M"]


# ----------------------------------------------------------------------------- kernels
@jit(parallel=True)
def _contract_rows(Z, first, count, step, table, L, order, out, norms,
                   want_norms):  # pragma: no cover
    """Step 2: out[a, u, m1, m2 mod M] = conj(Σ_{rows of p} Z[a, row] table[row, u]), and
    if ``want_norms`` the row norms norms[a, u, m1] = w_{m1} Σ_{m2} |out[a, u, m1, m2]|
    (w_0 = 1, w_{m1>0} = 2; in double, for the bounds of :meth:`LandscapePlan.step3_best`).

    Pairs p = (m1, m2), 0 ≤ m1 ≤ L, |m2| ≤ L, own the rows first[p] + i·step, i < count[p],
    of ``Z`` (volumes × rows) and ``table`` (rows × distinct β).  One task per m1 (visited in
    ``order``): it reads its block of table rows once for all volumes, sums into a
    local buffer (in the table's precision), and writes the rows out[a, u, m1, :] (the
    Hermitian half-spectrum layout of step 3; columns of unused m2, |m2| > L, are zeroed),
    column by column so that the buffer is read contiguously and the stores gather in L1.
    Only the rows m1 in ``order`` are formed (all m1 ≤ L, or the first rows for the pruned
    search of compressed plans); rows m1 > L of ``out`` are not touched (the caller zeroes
    them).
    """
    n_a = Z.shape[0]
    nu = table.shape[1]
    P = 2 * L + 1
    Mout = out.shape[3]
    for t in prange(order.size):
        m1 = order[t]
        buf_r = np.empty((P, n_a, nu), dtype=table.dtype)
        buf_i = np.empty((P, n_a, nu), dtype=table.dtype)
        acc = np.zeros((n_a, nu))
        for k in range(P):
            p = m1 * P + k
            r0 = first[p]                          # every pair has ≥ 1 row (l = L)
            d = table[r0]
            for a in range(n_a):
                zr = Z[a, r0].real
                zm = Z[a, r0].imag
                br = buf_r[k, a]
                bi = buf_i[k, a]
                for u in range(nu):
                    br[u] = d[u] * zr
                    bi[u] = d[u] * zm
            for i in range(1, count[p]):
                row = r0 + i * step
                d = table[row]
                for a in range(n_a):
                    zr = Z[a, row].real
                    zm = Z[a, row].imag
                    br = buf_r[k, a]
                    bi = buf_i[k, a]
                    for u in range(nu):
                        br[u] += d[u] * zr
                        bi[u] += d[u] * zm
        for c in range(Mout):
            if L < c < Mout - L:                              # |m2| > L
                for a in range(n_a):
                    for u in range(nu):
                        out[a, u, m1, c] = 0.0
                continue
            k = c + L if c <= L else c - Mout + L             # m2 = c or c - Mout
            for a in range(n_a):
                br = buf_r[k, a]
                bi = buf_i[k, a]
                for u in range(nu):
                    out[a, u, m1, c] = complex(br[u], -bi[u])
                if want_norms:
                    for u in range(nu):
                        xr = np.float64(br[u])
                        xi = np.float64(bi[u])
                        acc[a, u] += np.sqrt(xr * xr + xi * xi)
        if want_norms:
            w = 1.0 if m1 == 0 else 2.0
            for a in range(n_a):
                for u in range(nu):
                    norms[a, u, m1] = w * acc[a, u]


@jit
def _column_bounds(Y, r0, r1, col, tail, out):  # pragma: no cover
    """Column l1 norms of step-3 slices after the transform over m2, rows r0 ≤ m1 < r1 added
    to ``col`` (zeroed first if r0 = 0): col[s, γ] += Σ_{m1} w_{m1} |Y[s, m1, γ]| (w_0 = 1,
    else 2; in double), and out[s] = max_γ col[s, γ] + tail[s].

    The transform over m1 gives X(α, γ) = Re Y(0, γ) + 2 Re Σ_{m1 ≥ 1} Y(m1, γ) e^{-i m1 α},
    so with every row added (r1 = L + 1, rows above are zero) out[s] bounds slice s; with
    rows < r1 only, ``tail`` must bound the rest (the row norms of :meth:`step2`)."""
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
def _tail_rows(Z, a0, vols, slices, slice_u, flip, sign, table_t, r, L, out):  # pragma: no cover
    """out[q, r:] = the rows m1 ≥ r of the step-3 input of slice slices[q] of volume
    a0 + vols[q], formed here (compressed plans whose step 2 made only the rows m1 < r):
    conj Σ_j Y_j(m1, m2) t_j(m1, m2; β_u), Y_j(m1, m2) = Z[a, (m1 H_D + j) P + m2 + L]
    (P = 2L+1), t from the β-major table table_t[u, m1 - r, j, m2 + L]
    (:func:`_degree_tables`), summed over j in the table's precision in the order of
    :func:`_contract_rows` (the same values); times the mirror sign where flip[s]; zero
    for m1 > L and |m2| > L.  A volume's operands are split into real and imaginary
    parts once for its consecutive slices (the sums then run on contiguous vectors)."""
    P = 2 * L + 1
    Mc = out.shape[2]
    HD = table_t.shape[2]
    nr = L + 1 - r
    acc_r = np.empty(P, dtype=table_t.dtype)
    acc_i = np.empty(P, dtype=table_t.dtype)
    y_r = np.empty((nr, HD, P), dtype=table_t.dtype)
    y_i = np.empty((nr, HD, P), dtype=table_t.dtype)
    flat_r = y_r.reshape(nr * HD * P)
    flat_i = y_i.reshape(nr * HD * P)
    last = -1
    for q in range(vols.size):
        s = slices[q]
        if vols[q] != last:
            z = Z[a0 + vols[q]]
            o = r * HD * P
            for k in range(nr * HD * P):
                flat_r[k] = z[o + k].real
                flat_i[k] = z[o + k].imag
            last = vols[q]
        for m1 in range(r, out.shape[1]):
            row = out[q, m1]
            if m1 > L:
                row[:] = 0.0
                continue
            t = table_t[slice_u[s], m1 - r]
            yr = y_r[m1 - r]
            yi = y_i[m1 - r]
            for k in range(P):
                acc_r[k] = t[0, k] * yr[0, k]
                acc_i[k] = t[0, k] * yi[0, k]
            for j in range(1, HD):
                tj = t[j]
                yrj = yr[j]
                yij = yi[j]
                for k in range(P):
                    acc_r[k] += tj[k] * yrj[k]
                    acc_i[k] += tj[k] * yij[k]
            for c in range(L + 1, Mc - L):
                row[c] = 0.0
            for k in range(P):
                c = k - L if k >= L else k - L + Mc          # column of m2 = k - L
                x = complex(acc_r[k], -acc_i[k])
                row[c] = x * sign[m1, c] if flip[s] else x


@jit(parallel=True)
def _tail_block_norms(Z, q0, M, B, out):  # pragma: no cover
    """out[a, c B + b] = (Σ_{k B // M = b} |Z[a, q0 + c M + k]|²)^½ (in double; the blocks
    of :func:`_degree_tables`): with q0 the first row m1 = r, row c = (m1 - r) H_D + j holds
    Y_j(m1, ·), for the bounds of :meth:`LandscapePlan._tail_bounds`."""
    for a in prange(Z.shape[0]):
        z = Z[a]
        o = out[a]
        o[:] = 0.0
        for c in range(out.shape[1] // B):
            base = q0 + c * M
            for k in range(M):
                xr = np.float64(z[base + k].real)
                xi = np.float64(z[base + k].imag)
                o[c * B + (k * B) // M] += xr * xr + xi * xi
        for i in range(out.shape[1]):
            o[i] = np.sqrt(o[i])


@jit(parallel=True)
def _tail_bound_sums(yb, tb, out):  # pragma: no cover
    """out[a, u] = Σ_c yb[a, c] tb[c, u] (in double, c in order)."""
    nu = tb.shape[1]
    for a in prange(yb.shape[0]):
        acc = out[a]
        acc[:] = 0.0
        for c in range(yb.shape[1]):
            y = yb[a, c]
            t = tb[c]
            for u in range(nu):
                acc[u] += y * t[u]


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


@jit(inline=True)
def _shell_sum(A, a, j, tg_re, tg_im, off, w, acc_r, acc_i):  # pragma: no cover
    """One row of step 1 (eq. 104): acc[k] = Σ_r conj(A[a, r, j]) tg[r, off + k], k < w
    (tg: target with the weights folded in, split into real and imaginary parts)."""
    for k in range(w):
        acc_r[k] = 0.0
        acc_i[k] = 0.0
    for r in range(A.shape[1]):
        cr = A[a, r, j].real
        ci = -A[a, r, j].imag                                # conj(A)
        for k in range(w):
            br = tg_re[r, off + k]
            bi = tg_im[r, off + k]
            acc_r[k] += cr * br - ci * bi
            acc_i[k] += cr * bi + ci * br


@jit(parallel=True)
def _step1_small(A, m_start, tg_re, tg_im, base, L, out):  # pragma: no cover
    """Step 1 for few radial functions: out[a, base_l + m1 (2l+1) + m2 + l] =
    Σ_r conj(A[a, r, m_start[m1] + l - m1]) tg[r, l² + m2 + l] (tg: target, weights folded).

    One task per (volume, l); the sum over r is an outer loop, m2 the contiguous inner one."""
    n_a = A.shape[0]
    for t in prange(n_a * (L + 1)):
        a = t // (L + 1)
        l = L - t % (L + 1)                                  # big degrees first
        w = 2 * l + 1
        off = l * l
        acc_r = np.empty(w)
        acc_i = np.empty(w)
        for m1 in range(l + 1):
            _shell_sum(A, a, m_start[m1] + l - m1, tg_re, tg_im, off, w, acc_r, acc_i)
            o = base[l] + m1 * w
            for k in range(w):
                out[a, o + k] = complex(acc_r[k], acc_i[k])


@jit(parallel=True)
def _degree_project(T, base, V, L, out):  # pragma: no cover
    """Step 1b: out[a, m1, j, m2 + L] = Σ_{l ≥ max(m1,|m2|)} V[l, j] T_l(m1, m2)[a].

    T_l(m1, m2)[a] = T[a, base[l] + m1 (2l+1) + m2 + l].  One task per (volume, m1); reads T
    sequentially along m2."""
    n_a = T.shape[0]
    HD = V.shape[1]
    for t in prange(n_a * (L + 1)):
        a = t // (L + 1)
        m1 = t % (L + 1)
        o = out[a, m1]
        o[:, :] = 0.0
        for l in range(m1, L + 1):
            row0 = base[l] + m1 * (2 * l + 1)
            for m2 in range(-l, l + 1):
                z = T[a, row0 + m2 + l]
                for j in range(HD):
                    o[j, m2 + L] += V[l, j] * z


@jit(parallel=True)
def _step1_project(A, m_start, tg_re, tg_im, V, L, out):  # pragma: no cover
    """Steps 1 + 1b fused (few radial functions): out[a, m1, j, m2 + L] =
    Σ_{l ≥ max(m1,|m2|)} V[l, j] Σ_r conj(A[a, r, m_start[m1] + l - m1]) tg[r, l² + m2 + l].

    One task per (volume, m1); the degree-l row T_l(m1, ·) lives in a local buffer and is
    projected onto the H_D degree vectors at once (T never reaches memory)."""
    n_a = A.shape[0]
    HD = V.shape[1]
    M = 2 * L + 1
    for t in prange(n_a * (L + 1)):
        a = t // (L + 1)
        m1 = t % (L + 1)
        acc_r = np.empty(M)
        acc_i = np.empty(M)
        y_r = np.zeros((M, HD))
        y_i = np.zeros((M, HD))
        for l in range(m1, L + 1):
            w = 2 * l + 1
            off = l * l
            _shell_sum(A, a, m_start[m1] + l - m1, tg_re, tg_im, off, w, acc_r, acc_i)
            for k in range(w):
                p = k - l + L
                zr = acc_r[k]
                zi = acc_i[k]
                for j in range(HD):
                    v = V[l, j]
                    y_r[p, j] += v * zr
                    y_i[p, j] += v * zi
        for j in range(HD):
            for p in range(M):
                out[a, m1, j, p] = complex(y_r[p, j], y_i[p, j])


@jit(parallel=True)
def _degree_tables(table, row_start, V, L, tiny, r, order, out, out_t,
                   out_sq):  # pragma: no cover
    """[v_jᵀ d]: Σ_{l ≥ l0(p)} V[l, j] table[row(p, l), u] for the pairs p = (m1, m2) and
    j < H_D, summed in double (four rows of ``table`` per pass, in row order) and stored in
    out's precision; |values| < ``tiny`` are stored as 0 (no subnormal float32 operands in
    step 2).  Rows m1 < r into out[(m1 H_D + j) M + m2 + L, u] (M = 2L+1: the sums of one
    m1 and j contiguous in m2), the others β-major into out_t[u, q], q = ((m1 - r) H_D + j)
    M + m2 + L, and their squares summed over blocks b of m2 (B = out_sq.shape[0] /
    ((L+1-r) H_D) blocks, b = (m2 + L) B // M) into out_sq[((m1 - r) H_D + j) B + b, u]
    (in double; ``out_sq`` zeroed by the caller).  One task per m1, in ``order``."""
    HD = V.shape[1]
    nu = table.shape[1]
    M = 2 * L + 1
    B = out_sq.shape[0] // max(1, (L + 1 - r) * HD)
    for t in prange(order.size):
        m1 = order[t]
        acc = np.empty((HD, nu))
        for k in range(M):
            p = m1 * M + k
            l0 = max(m1, abs(k - L))
            acc[:, :] = 0.0
            r0, r1 = row_start[p], row_start[p + 1]
            row = r0
            while row + 4 <= r1:
                d0, d1, d2, d3 = table[row], table[row + 1], table[row + 2], table[row + 3]
                i = l0 + row - r0
                for j in range(HD):
                    v0, v1, v2, v3 = V[i, j], V[i + 1, j], V[i + 2, j], V[i + 3, j]
                    a = acc[j]
                    for u in range(nu):
                        a[u] = a[u] + v0 * d0[u] + v1 * d1[u] + v2 * d2[u] + v3 * d3[u]
                row += 4
            while row < r1:
                d = table[row]
                v_row = V[l0 + row - r0]
                for j in range(HD):
                    v = v_row[j]
                    a = acc[j]
                    for u in range(nu):
                        a[u] += v * d[u]
                row += 1
            for j in range(HD):
                a = acc[j]
                if m1 < r:
                    o = out[(m1 * HD + j) * M + k]
                    for u in range(nu):
                        o[u] = a[u] if abs(a[u]) >= tiny else 0.0
                    continue
                q = ((m1 - r) * HD + j) * M + k
                sq = out_sq[((m1 - r) * HD + j) * B + (k * B) // M]
                for u in range(nu):
                    out_t[u, q] = a[u] if abs(a[u]) >= tiny else 0.0
                    x = np.float64(out_t[u, q])
                    sq[u] += x * x


# ----------------------------------------------------------------------------- grids
def beta_grid(n_beta: int) -> np.ndarray:
    """β_b = -π + 2πb/n_β, b = 0..n_β-1 (the reference's linspace(-π, π, n_β+1)[:-1])."""
    return -np.pi + 2.0 * np.pi * np.arange(n_beta) / n_beta


def _beta_sources(betas: np.ndarray):
    """Distinct β needing a Wigner table (every β without a mirror -β > 0 in the grid), in
    increasing grid order, and for every grid β its source column and whether it is the
    mirror image (sign flip)."""
    n = betas.size
    r = [round(float(bt), 12) + 0.0 for bt in betas]          # + 0.0: no negative zero
    keys = {v: b for b, v in enumerate(r)}
    flip = np.array([v < 0 and -v in keys for v in r], dtype=np.bool_)
    src = np.empty(n, dtype=np.int64)
    plus = np.flatnonzero(~flip)
    src[plus] = np.arange(plus.size)
    for b in np.flatnonzero(flip):
        src[b] = src[keys[-r[b]]]
    return betas[plus].astype(np.float64), src, flip


def _runs(bs: np.ndarray, us: np.ndarray):
    """Split grid positions bs (ascending) with sources us into runs (b0, b1, u0, step) where
    consecutive b map to consecutive u (step ±1), so a run is a strided view on both sides."""
    runs = []
    i = 0
    while i < bs.size:
        j = i + 1
        step = 1
        if j < bs.size and bs[j] == bs[i] + 1 and abs(int(us[j]) - int(us[i])) == 1:
            step = int(us[j]) - int(us[i])
            while j < bs.size and bs[j] == bs[j - 1] + 1 and us[j] == us[j - 1] + step:
                j += 1
        runs.append((int(bs[i]), int(bs[j - 1]) + 1, int(us[i]), step))
        i = j
    return runs


@functools.lru_cache(maxsize=8)
def _degree_rows(L: int):
    """Row structure shared by all kernels: rows of pair p are (p, l) for l = l0..L.

    Returns row_start (n_pairs+1,), tidx (n_rows,): position of T_l(m1, m2) in the
    step-1 layout T[a, base_l + m1 (2l+1) + m2 + l], and base (L+2,) (read-only, cached)."""
    row_start = _pair_offsets(L)
    M = 2 * L + 1
    base = np.concatenate([[0], np.cumsum([(l + 1) * (2 * l + 1) for l in range(L + 1)])])
    n_rows = int(row_start[-1])
    p = np.repeat(np.arange((L + 1) * M), np.diff(row_start))         # pair of every row
    m1, m2 = p // M, p % M - L
    ls = np.maximum(m1, np.abs(m2)) + np.arange(n_rows) - row_start[p]
    tidx = base[ls] + m1 * (2 * ls + 1) + m2 + ls
    out = (row_start, tidx.astype(np.int64), base.astype(np.int64))
    for x in out:
        x.flags.writeable = False
    return out


# ----------------------------------------------------------------------------- plan
class LandscapePlan:
    """Everything that does not depend on the volumes: the target in per-degree layout,
    the Wigner-d table (full) or the [v_jᵀ d] tables (compressed), the step-3 transform.

    Built by :func:`prepare`; ``precompute_seconds`` records its cost.  Calling the plan on
    a block of volumes returns fresh landscapes (:meth:`slices` then :meth:`expand`); the
    best rotations need only :meth:`best_rotations` (steps 0–2, then step 3 fused with the
    search on the distinct β of even M, pruned; equal to :meth:`best` of :meth:`slices` up
    to the rounding of step 3, see :meth:`step3_best`).  The
    step methods are exposed for timing and reuse work buffers (the arrays returned by
    ``step2``/``step3``/``slices`` are overwritten by the next call).  One plan per thread.
    ``n_slices``: β planes step 3 computes (n_β/2+1 for even M and the reference grid);
    ``fft_chunk``: slices per step-3 transform call (sized for a 1 MB cache; other values
    change the landscapes only in the last bits, and a given value is bitwise reproducible
    for any thread count); ``row_split``: rows m1 the pruned search transforms first.
    """

    def __init__(self, grid: ShellGrid, coef_target, basis: VolumeBasis | None = None,
                 ranks=None, n_beta: int | None = None, M: int | None = None,
                 wigner: WignerTable | None = None, precision: str | None = None):
        import time

        t0 = time.perf_counter()
        self.grid = grid_of(grid, ShellGrid)
        L = grid.L
        self.L = L
        b = check_coefficients(coef_target, grid, "coef_target")
        if b.shape[0] != 1:
            raise InputError(f"coef_target: expected a single target volume, got {b.shape[0]}")
        n_beta = 2 * (L + 1) if n_beta is None else n_beta
        if isinstance(n_beta, bool) or int(n_beta) != n_beta or n_beta < 1:
            raise InputError(f"n_beta must be a positive integer, got {n_beta!r}")
        M = default_M(L) if M is None else M
        if isinstance(M, bool) or int(M) != M or M < 2 * L + 1:
            raise InputError(f"M must be an integer >= 2L+1 = {2 * L + 1} (α, γ sampling of a "
                             f"degree-{L} landscape), got {M!r}")
        self.n_beta, self.M = int(n_beta), int(M)
        if precision not in (None, "double", "single"):
            raise InputError(f"precision must be 'double', 'single' or None, got {precision!r}")
        if precision is None:
            precision = "double" if ranks is None else "single"
        self.precision = precision
        rt = np.float64 if precision == "double" else np.float32
        ct = np.complex128 if precision == "double" else np.complex64
        self._rt, self._ct = rt, ct
        # step-2 operand precision: float32 for single-precision compressed plans only (the
        # full path's Wigner table stays double)
        self._zt = ct if (ranks is not None and precision == "single") else np.complex128
        self.betas = beta_grid(self.n_beta)
        # rows m1 < row_split get the pass over m2 before the others in the pruned search:
        # landscapes of molecules keep most of their l1 mass there (K = 48: 90% of the full
        # path's and 97% of rank 8's in m1 < 12 = (M/2+1)/4); compressed plans form only
        # those rows in step 2 for it (:meth:`step2`, head_only)
        self.row_split = min(L + 1, max(1, (self.M // 2 + 1) // 4))
        self.alphas = 2.0 * np.pi * np.arange(self.M) / self.M
        self.gammas = self.alphas.copy()
        unique, self.src, self.flip = _beta_sources(self.betas)
        self.row_start, self.tidx, self.base = _degree_rows(L)
        # m1 tasks of step 2, evens then odds: balances the (decreasing) work over threads
        self.order = np.concatenate([np.arange(0, L + 1, 2), np.arange(1, L + 1, 2)])
        if wigner is not None:
            if wigner.L != L or wigner.betas.shape != unique.shape or not np.allclose(
                    wigner.betas, unique, atol=1e-12):
                raise InputError("wigner: table does not match this grid's L and β values")
        else:
            wigner = WignerTable(L, unique)
        self.wigner = wigner
        d = wigner.data.reshape(-1, unique.size)
        if ranks is None:
            if basis is not None:
                raise InputError("basis given without ranks: pass ranks=(H_C, H_D)")
            self.compressed = False
            self._head_only = False
            self.H_C, self.H_D = grid.R, L + 1
            self.radial = None
            self._rows, self._tail_ready = d, True
            # rows of pair p: row_start[p] + i, i < l-count (l innermost)
            self._row_first = self.row_start[:-1]
            self._row_count = np.diff(self.row_start)
            self._row_step = 1
            self.weights = grid.w
            tgt = b[0]
        else:
            if not isinstance(basis, VolumeBasis):
                raise InputError("compressed landscapes need basis=VolumeBasis (volume_svd)")
            if basis.R != grid.R or basis.n_degrees != L + 1:
                raise InputError(f"basis was built for R={basis.R}, L={basis.n_degrees - 1}; "
                                 f"grid has R={grid.R}, L={L}")
            try:
                H_C, H_D = ranks
            except (TypeError, ValueError):
                raise InputError(f"ranks must be a pair (H_C, H_D), got {ranks!r}") from None
            self.H_C = _rank(H_C, grid.R, "radial rank H_C")
            self.H_D = _rank(H_D, L + 1, "degree rank H_D")
            self.compressed = True
            self._head_only = L >= HEAD_ONLY_MIN_L
            self.radial = basis.radial_matrix(self.H_C)
            self._radial_T = np.ascontiguousarray(self.radial.T, dtype=np.complex128)
            self._radial_Tr = np.ascontiguousarray(self.radial.T.real)
            self.V = basis.degree_matrix(self.H_D)
            n_pairs = (L + 1) * (2 * L + 1)
            # single precision: step 2 runs on float32 tables and degree sums as well
            self._rows = np.empty((n_pairs * self.H_D, unique.size), dtype=rt)
            self._table_tail = None
            self._degree_tables(self.row_split if self._head_only else L + 1)
            self._tail_ready = not self._head_only
            # rows of pair p = (m1, m2): (m1 H_D + j) M + m2 + L, j < H_D (M = 2L+1)
            P = 2 * L + 1
            pairs = np.arange(n_pairs)
            self._row_first = (pairs // P) * P * self.H_D + pairs % P
            self._row_count = np.full(n_pairs, self.H_D, dtype=np.int64)
            self._row_step = P
            self.weights = np.ones(self.H_C)
            tgt = self.radial.T @ b[0]
        # target per degree, all orders m2 = -l..l, weights folded in: (n_rad, 2l+1)
        tg = self.weights[:, None] * _all_orders(tgt, grid)                # (n_rad, (L+1)²)
        self.target = [tg[:, l * l:(l + 1) ** 2] for l in range(L + 1)]  # (n_rad, 2l+1)
        self._tg_re = np.ascontiguousarray(tg.real)
        self._tg_im = np.ascontiguousarray(tg.imag)
        self.transform = "ducc0.c2r"
        self._plus = np.flatnonzero(~self.flip)
        self._minus = np.flatnonzero(self.flip)
        nu = unique.size
        if self.M % 2 == 0:
            # mirrored β: X(α, -β, γ) = X(α + π, β, γ + π), an index shift by M/2
            self.n_slices = nu
            self._slice_of, self._shifted = self.src.copy(), self.flip.copy()
        else:
            # odd M: no half-period shift; every grid β is transformed (sign folded in)
            self.n_slices = self.n_beta
            self._slice_of = np.arange(self.n_beta)
            self._shifted = np.zeros(self.n_beta, dtype=np.bool_)
            idx = np.arange(self.M)
            m2s = np.where(idx <= L, idx, idx - self.M)                  # signed m2 of a column
            m1s = np.arange(self.M // 2 + 1)
            sign = (-1.0) ** (m1s[:, None] - m2s[None, :])               # (-1)^{m1-m2}
        # odd M: the mirrored slices (_slice_flip) get the sign (-1)^{m1-m2} (_mirror_sign),
        # folded in by _step3_source, or by the pruned search as it gathers slices
        self._slice_flip = self.flip.copy() if self.M % 2 else np.zeros(nu, dtype=np.bool_)
        self._mirror_sign = (sign.astype(rt) if self.M % 2
                             else np.ones((self.M // 2 + 1, self.M), dtype=rt))
        self._runs = _runs_shift(self._slice_of, self._shifted)
        # rounding of the transforms relative to the l1 mass passing through: ⌈log2 M⌉
        # radix-2 levels per axis, each ≤ 8u (twiddle product and sum).  A slice whose bound,
        # widened by its margin, is below a value already found cannot hold the maximum of
        # the computed landscape (:meth:`step3_best`): the column bounds of
        # :func:`_column_bounds` precede one pass (1d; the row norms they leave out, the
        # other pass too), the l1 norms of :meth:`step2` both passes (2d).  The bounds
        # themselves are double sums of ≤ M + L + 1 non-negative terms (moduli by sqrt):
        # each is at most 2(M + L + 5)·u64 below its exact value, added to both margins
        u = float(np.finfo(rt).eps) / 2.0
        levels = float(np.ceil(np.log2(self.M)))
        sums = 2.0 * (self.M + L + 5) * float(np.finfo(np.float64).eps) / 2.0
        self._margin_1d = (8.0 * levels + 4.0) * u + sums
        self._margin_2d = (16.0 * levels + 4.0) * u + sums
        # distinct β (column of step 2's output) that each step-3 slice transforms
        self._slice_src = np.arange(nu) if self.M % 2 == 0 else self.src.copy()
        # slices per step-3 call: input + output of a call within ~1 MB of L2 cache
        # (measured at K = 48: 10 single / 5 double slices were 10–30% faster than all 50)
        per_slice = (M // 2 + 1) * M * np.dtype(ct).itemsize + M * M * np.dtype(rt).itemsize
        self.fft_chunk = int(max(1, min(self.n_slices, (1 << 20) // per_slice)))
        self.precompute_seconds = time.perf_counter() - t0

    def _degree_tables(self, r: int) -> None:
        """Compressed plans: the [vᵀd] tables of step 2 in the plan's table precision, rows
        m1 < r row-major into ``_rows``; for r = row_split the others β-major
        (``_table_tail``: one slice's rows contiguous, for the pruned search,
        :meth:`best_rotations`) with their l2 norms over TAIL_BLOCKS blocks of m2
        (``_tail_norms``, for :meth:`_tail_bounds`), and the factor that widens those bounds
        over the rounding of the values (2 H_D u in the table's precision) and of their own
        double sums.  The plan forms r = row_split if its best_rotations uses the head-only
        step 2 (the row-major copy of the other rows is made on first use of :attr:`table`),
        else r = L + 1 (:meth:`_tail_tables` forms the tail on request)."""
        L, HD = self.L, self.H_D
        d = self.wigner.data.reshape(-1, self.wigner.betas.size)
        nu, P, rt = d.shape[1], 2 * L + 1, self._rows.dtype
        n_tail = max(0, L + 1 - r) * HD                     # rows (m1, j) of the tail
        tail = np.empty((nu, n_tail // HD, HD, P), dtype=rt)
        sq = np.zeros((n_tail * TAIL_BLOCKS, nu))
        tiny = float(np.finfo(rt).tiny) if rt == np.float32 else 0.0
        _degree_tables(d, self.row_start, self.V, L, tiny, r, self.order, self._rows,
                       tail.reshape(nu, n_tail * P), sq)
        if r != self.row_split:                             # every row row-major
            return
        self._table_tail, self._tail_norms = tail, np.sqrt(sq)
        u = float(np.finfo(rt).eps) / 2.0
        u64 = float(np.finfo(np.float64).eps) / 2.0
        self._tail_widen = 1.0 + 2.0 * HD * u + 2.0 * (sq.shape[0] + P + 8) * u64

    def _tail_tables(self) -> np.ndarray:
        """The β-major [vᵀd] rows m1 ≥ row_split (formed on first request for plans whose
        best_rotations keeps the whole step 2: the same kernel and sums; the rows m1 <
        row_split it writes again are the same values)."""
        if self._table_tail is None:
            self._degree_tables(self.row_split)
        return self._table_tail

    def _tail_bounds(self, Z: np.ndarray, norms: np.ndarray) -> None:
        """norms[a, u, row_split] = a bound of Σ_{m1 ≥ row_split} w_{m1} Σ_{m2}
        |X̂(m1, m2; β_u)| for step 2 with head_only (norms of the later rows = 0): by the
        triangle inequality over j and Cauchy-Schwarz over each block of m2, ≤ 2 Σ_{m1, j,
        blocks} ‖Y_j(m1, ·)‖ ‖t_j(m1, ·; β_u)‖ (``_tail_widen`` covers the rounding of the
        values as :func:`_tail_rows` forms them and of these double sums)."""
        r = self.row_split
        if r > self.L:                                   # every row formed in step 2
            return
        self._tail_tables()
        q0 = r * self.H_D * (2 * self.L + 1)
        B = self._tail_norms.shape[0] // ((self.L + 1 - r) * self.H_D)
        yb = self._buffer("tail_yb", (Z.shape[0], self._tail_norms.shape[0]), np.float64)
        _tail_block_norms(Z, q0, 2 * self.L + 1, B, yb)
        bound = self._buffer("tail_bound", (Z.shape[0], self._rows.shape[1]), np.float64)
        _tail_bound_sums(yb, self._tail_norms, bound)
        norms[:, :, r] = (2.0 * self._tail_widen) * bound
        norms[:, :, r + 1:] = 0.0

    @property
    def table(self) -> np.ndarray:
        """Step 2's table, rows × distinct β: the Wigner-d table (full) or the [vᵀd] tables
        (compressed; rows (m1, j, m2), their rows m1 ≥ row_split copied from the β-major
        tail table on first use: the pruned search needs only that one)."""
        if not self._tail_ready:
            q0 = self.row_split * self.H_D * (2 * self.L + 1)
            self._rows[q0:] = self._table_tail.reshape(self._rows.shape[1], -1).T
            self._tail_ready = True
        return self._rows

    # ------------------------------------------------------------------ steps
    def _buffer(self, name, shape, dtype):
        """Reused work array (saves page faults of fresh allocations; one plan per thread)."""
        buf = self.__dict__.setdefault("_buffers", {}).get(name)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = np.empty(shape, dtype=dtype)
            self._buffers[name] = buf
        return buf

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
        _degree_project(T, self.base, self.V, self.L, Y)
        return Y.reshape(T.shape[0], -1)

    def step1_project(self, coef: np.ndarray) -> np.ndarray:
        """Steps 1 and 1b of the compressed path in one pass (equal to ``step1b(step1(c))``):
        one fused numba kernel for up to SMALL_RANK principal shells (the per-degree sums T
        never reach memory), else the two steps in turn."""
        if not self.compressed:
            raise InputError("step1_project: only for compressed plans (use step1)")
        if coef.shape[1] > SMALL_RANK:
            return self.step1b(self.step1(coef))
        Y = np.empty((coef.shape[0], self.L + 1, self.H_D, 2 * self.L + 1), dtype=self._zt)
        _step1_project(np.ascontiguousarray(coef, dtype=np.complex128), self.grid.m_start,
                       self._tg_re, self._tg_im, self.V, self.L, Y)
        return Y.reshape(coef.shape[0], -1)

    def _operands(self, Z: np.ndarray) -> np.ndarray:
        """Step 2's operand rows from step 1 (full: reordered to (m1, m2, l)) or step 1b,
        C-contiguous in the step-2 precision."""
        if not self.compressed:
            Z = np.take(Z, self.tidx, axis=1)        # rows (m1, m2, l): l innermost
        return np.ascontiguousarray(Z, dtype=self._zt)

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
        their sum in norms[:, :, row_split] (triangle inequality over the H_D terms and
        Cauchy-Schwarz over blocks of m2, :meth:`_tail_bounds`; 0 in the later rows), and
        :meth:`step3_best` forms those rows for the few slices that need them."""
        n = Z.shape[0]
        nu = self._rows.shape[1]
        M = self.M
        if head_only and not (self.compressed and norms is not None):
            raise InputError("step2: head_only needs a compressed plan and norms")
        Z = self._operands(Z)
        want = norms is not None
        if want:
            _check_norms(norms, (n, nu, self.L + 1))
        else:
            norms = np.empty((1, 1, 1))
        if head_only:
            r = self.row_split
            out = self._buffer("xhead", (n, nu, r, M), self._ct)
            _contract_rows(Z, self._row_first, self._row_count, self._row_step, self._rows,
                           self.L, self.order[self.order < r], out, norms, True)
            self._tail_bounds(Z, norms)
            return out
        out = self._buffer("xhat", (n, nu, M // 2 + 1, M), self._ct)
        out[:, :, self.L + 1:] = 0.0
        _contract_rows(Z, self._row_first, self._row_count, self._row_step, self.table,
                       self.L, self.order, out, norms, want)
        return out

    def _step3_source(self, Xc: np.ndarray) -> np.ndarray:
        """Input of the step-3 transforms: ``Xc`` itself (even M) or, for odd M, every grid β
        with the mirror sign (-1)^{m1-m2} folded in (a work array)."""
        if self.M % 2 == 0:
            return Xc
        src = self._buffer("signed", (Xc.shape[0], self.n_beta) + Xc.shape[2:], self._ct)
        np.take(Xc, self.src, axis=1, out=src)
        src[:, self._slice_flip] *= self._mirror_sign
        return src

    def _transform_m2(self, src_a: np.ndarray) -> None:
        """First pass of step 3 on a chunk of one volume's slices (count, M//2+1, M), in
        place: the complex transform over m2, Y(m1, γ) = Σ_{m2} X̂(m1, m2) e^{-i m2 γ}."""
        import ducc0

        ducc0.fft.c2c(src_a, axes=(2,), forward=False, inorm=0, out=src_a, nthreads=1)

    def _transform_m1(self, y_a: np.ndarray, out_a: np.ndarray) -> None:
        """Second pass: half-complex-to-real over m1, X(α, γ) = Re Σ_{m1} Y(m1, γ) e^{-i m1 α}
        (count, M, M) into ``out_a`` (or, on columns γ gathered as (count, M//2+1), their
        (count, M) values over α); ``y_a`` is overwritten.  The two passes, one ducc0 call
        each, give the same bits as one 2D c2r call.  One thread, so that the lines and
        their SIMD grouping depend only on the call, not on the thread count."""
        import ducc0

        ducc0.fft.c2r(y_a, axes=(1,), lastsize=self.M, forward=False, inorm=0, out=out_a,
                      nthreads=1, allow_overwriting_input=True)

    def _chunks(self):
        """(s0, s1) of the step-3 calls: ``fft_chunk`` slices each, the one source of the
        call boundaries for :meth:`step3` and :meth:`step3_best` without norms (their
        values then agree to the last bit)."""
        ns, ch = self.n_slices, self.fft_chunk
        return [(s0, min(s0 + ch, ns)) for s0 in range(0, ns, ch)]

    def _per_volume(self, fn, n: int) -> None:
        """Run fn(worker, a0, a1) over contiguous chunks of the n volumes, one chunk per FFT
        worker thread (ducc0 and numpy release the GIL); worker w owns work slot w."""
        workers = min(fft_workers(), n)
        edges = np.linspace(0, n, workers + 1).astype(np.int64)
        if workers <= 1:
            fn(0, 0, n)
        else:
            list(_pool(workers).map(fn, range(workers), edges[:-1], edges[1:]))

    def step3(self, Xc: np.ndarray) -> np.ndarray:
        """The β slices X[a, s, i (α), j (γ)] that step 3 computes: (n, n_slices, M, M).

        X(α, β, γ) = Re Σ_{m1, m2} X̂(m1, m2; β) e^{-i m1 α} e^{-i m2 γ} is one real 2D
        transform per slice.  Even M: the n_u distinct β only (see :meth:`expand`); odd M:
        every grid β, the mirrored ones with the sign (-1)^{m1-m2} folded into X̂.  The result
        is a work array, overwritten by the next call; ``Xc`` is used as scratch (its contents
        are lost).  Volumes are spread over ``fft_workers()`` threads."""
        n = Xc.shape[0]
        S = self._buffer("slices", (n, self.n_slices, self.M, self.M), self._rt)
        src = self._step3_source(Xc)

        def run(w, a0, a1):
            for a in range(a0, a1):
                for s0, s1 in self._chunks():
                    self._transform_m2(src[a, s0:s1])
                    self._transform_m1(src[a, s0:s1], S[a, s0:s1])

        self._per_volume(run, n)
        return S

    def step3_best(self, Xc: np.ndarray, norms: np.ndarray | None = None,
                   Z: np.ndarray | None = None):
        """Step 3 fused with :meth:`best`: the slices are transformed a few at a time into
        per-thread buffers and searched there while in cache, so they never reach memory.
        Returns (b, i, j, score), the grid maximiser of the landscape as :meth:`best`
        defines it; ``Xc`` is used as scratch.

        Without ``norms`` every slice is transformed, in the calls of :meth:`step3`: the
        result is ``best(step3(Xc))`` bit for bit.  With ``norms`` (the row norms of
        :meth:`step2`) it is a branch and bound, run on units of ``SEARCH_UNIT`` volumes
        (one ducc0 call serves the slices of all volumes of a unit).  Each volume's slices
        are visited in decreasing order of their l1 norm (the sum of the row norms),
        ``fft_chunk`` at a time, until the next norm is below the maximum found so far:
        1. the pass over m2 of rows m1 < ``row_split`` only; their column l1 norms plus the
           norms of the other rows bound each slice;
        2. once every slice that may hold the maximum has had stage 1, the rest of the pass
           over m2 for the slices this bound leaves, each volume's slice of the largest
           bound first (a first maximum where none is known yet); their column l1 norms
           (:func:`_column_bounds`) bound each column γ;
        3. the pass over m1 for the columns this bound leaves (:func:`_gather_columns`, a
           volume's column of the largest norm first while it has no maximum), and the
           search over them (:func:`_search_lines`).
        Each bound is widened by the rounding margin of the passes after it, so a skipped
        slice holds no value ≥ the maximum, however it were transformed: the result is the
        exact maximiser of the values computed.  A slice's values differ from those of
        :meth:`step3` only in the last bits (ducc0 rounds the lines of an incomplete SIMD
        vector differently, and the calls here gather other lines), so scores agree with
        ``best(step3(Xc))`` to that rounding, and positions unless two grid values are that
        close.  The calls depend only on the values of a unit: the same result for any
        thread count.  With spectra of the first rows only (``step2(..., head_only=True)``),
        ``Z`` must be the operands step 2 was given: the other rows are formed from them for
        the slices that get the rest of the pass over m2.  ``step3_calls`` records (columns
        γ through the pass over m1, slices through the whole pass over m2, slices); a slice
        has M columns."""
        n = Xc.shape[0]
        M, ns = self.M, self.n_slices
        if norms is None:
            src = self._step3_source(Xc)
            work = self._buffer("search", (min(fft_workers(), n), self.fft_chunk, M, M),
                                self._rt)
            out = [None] * n

            def run(w, a0, a1):
                for a in range(a0, a1):
                    search = _GridSearch(self)
                    for s0, s1 in self._chunks():
                        self._transform_m2(src[a, s0:s1])
                        self._transform_m1(src[a, s0:s1], work[w, :s1 - s0])
                        search.update(np.zeros(s1 - s0, dtype=np.int64), np.arange(s0, s1),
                                      work[w, :s1 - s0].reshape(s1 - s0, M * M))
                    out[a] = search.result(0)

            self._per_volume(run, n)
            self.step3_calls = (n * ns * M, n * ns, n * ns)
            return _stack_best(out)
        _check_norms(norms, (n, self._rows.shape[1], self.L + 1))
        if Xc.shape[2] != M // 2 + 1:                 # first rows only: the rest from Z
            if not self.compressed or Xc.shape[2] != self.row_split or Z is None:
                raise InputError(f"step3_best: spectra with {Xc.shape[2]} rows need a "
                                 f"compressed plan (row_split = {self.row_split}) and Z, "
                                 "the operands of step2(..., head_only=True)")
            Z = self._operands(Z)
            if Z.shape != (n, self._rows.shape[0]):
                raise InputError(f"step3_best: Z has shape {Z.shape}, expected "
                                 f"{(n, self._rows.shape[0])}")
        else:
            Z = None
        per_slice = norms[:, self._slice_src]
        keys = per_slice.sum(axis=2) * (1.0 + self._margin_2d)
        tails = per_slice[:, :, self.row_split:].sum(axis=2) * (1.0 + self._margin_1d)
        order = np.argsort(-keys, axis=1, kind="stable")
        return self._branch_and_bound(Xc, order, np.take_along_axis(keys, order, axis=1),
                                      tails, Z)

    def _branch_and_bound(self, Xc, order, keys, tails, Z=None):
        """The pruned search of :meth:`step3_best` on the spectra ``Xc`` (order: each
        volume's slices by decreasing l1 norm ``keys``; ``tails``: the norms of rows ≥
        row_split; ``Z``: the step-2 operands when ``Xc`` holds the first rows only)."""
        n = Xc.shape[0]
        su, flip, sign = self._slice_src, self._slice_flip, self._mirror_sign
        M, L, ns, g, r = self.M, self.L, self.n_slices, self.fft_chunk, self.row_split
        rows, V = M // 2 + 1, SEARCH_UNIT
        cap = V * ns                                    # stage-1 slices of a unit
        units = [(u0, min(u0 + V, n)) for u0 in range(0, n, V)]
        workers = min(fft_workers(), len(units))
        head = self._buffer("head", (workers, cap, r, M), self._ct)
        whole = self._buffer("whole", (workers, g, rows, M), self._ct)
        lines = self._buffer("lines", (workers, g * M, rows), self._ct)   # columns γ
        vals = self._buffer("values", (workers, g * M, M), self._rt)
        where = self._buffer("where", (workers, g * M, 2), np.int64)
        cols = self._buffer("colsum", (workers, 2, cap, M), np.float64)
        bnds = self._buffer("bounds", (workers, 2, cap), np.float64)
        idx = self._buffer("index", (workers, 4, cap), np.int64)
        no_tail = np.zeros(g)
        table_tail = None if Z is None else self._tail_tables()
        widen = 1.0 + self._margin_1d
        out = [None] * n
        counts = np.zeros((len(units), 2), dtype=np.int64)

        def rest(w, u, a0, search, vq, sq, sel):
            """The rest of the pass over m2, then the pass over m1 of the columns that can
            hold the maximum (a fresh volume's column of the largest norm first), for the
            stage-1 positions ``sel``."""
            for c0 in range(0, sel.size, g):
                part = sel[c0:c0 + g]
                k = part.size
                buf, col, bound = whole[w], cols[w, 1, :k], bnds[w, 1, :k]
                vp, sp = vq[part], sq[part]
                _stage2_inputs(head[w], part, r, cols[w, 0], buf, col)
                if Z is None:
                    _gather_pairs(Xc, a0, vp, sp, su, flip, sign, r, rows, buf)
                else:
                    _tail_rows(Z, a0, vp, sp, su, flip, sign, table_tail, r, L, buf[:k])
                if r <= L:                                # rows left after stage 1
                    self._transform_m2(buf[:k, r:L + 1])
                _column_bounds(buf[:k], r, L + 1, col, no_tail, bound)
                counts[u, 1] += k
                for lead_only in (True, False):
                    nl = _gather_columns(buf[:k], col, vp, search.top, widen, lead_only,
                                         lines[w], where[w])
                    if nl:
                        self._transform_m1(lines[w, :nl], vals[w, :nl])
                        _search_lines(vals[w, :nl], where[w, :nl], vp, sp, search.smax,
                                      search.top, search.first)
                        counts[u, 0] += nl

        def unit(w, u):
            a0, a1 = units[u]
            search = _GridSearch(self, a1 - a0)
            pos = np.zeros(a1 - a0, dtype=np.int64)
            vq, sq, lead, sel = idx[w, 0], idx[w, 1], idx[w, 2], idx[w, 3]
            part = bnds[w, 0]
            total = 0
            while True:          # stage 1 for every slice whose l1 norm reaches the maximum
                K = _next_groups(keys, order, a0, pos, search.top, g, vq[total:], sq[total:])
                if K == 0:
                    break
                new = slice(total, total + K)
                _gather_pairs(Xc, a0, vq[new], sq[new], su, flip, sign, 0, r, head[w, new])
                self._transform_m2(head[w, new])
                _column_bounds(head[w, new], 0, r, cols[w, 0, new], tails[a0 + vq[new], sq[new]],
                               part[new])
                part[new] *= widen
                total += K
                nl = _leads(part[:total], vq[:total], search.top, True, lead)
                if nl:                                  # a first maximum per volume
                    rest(w, u, a0, search, vq[:total], sq[:total], lead[:nl])
            # stages 2 and 3: each volume's slice of the largest bound, then all others left
            nl = _leads(part[:total], vq[:total], search.top, False, lead)
            if nl:
                rest(w, u, a0, search, vq[:total], sq[:total], lead[:nl])
            n_sel = _survivors(part[:total], vq[:total], search.top, sel)
            if n_sel:
                rest(w, u, a0, search, vq[:total], sq[:total], sel[:n_sel])
            for v in range(a1 - a0):
                out[a0 + v] = search.result(v)

        next_unit = itertools.count()                   # units to workers as they free up

        def run(w):
            for u in iter(lambda: next(next_unit), None):
                if u >= len(units):
                    return
                unit(w, u)

        if workers <= 1:
            run(0)
        else:
            list(_pool(workers).map(run, range(workers)))
        self.step3_calls = (int(counts[:, 0].sum()), int(counts[:, 1].sum()), n * ns)
        return _stack_best(out)

    def expand(self, S: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Whole landscapes (n, n_β, M, M) from the step-3 slices (mirrored β of even M:
        X(α, -β, γ) = X(α + π, β, γ + π), copied with the index shift M/2 in α and γ)."""
        n = S.shape[0]
        M = self.M
        shape = (n, self.n_beta, M, M)
        if out is None:
            out = np.empty(shape, dtype=self._rt)
        elif out.shape != shape or out.dtype != self._rt:
            raise InputError(f"out: expected shape {shape} and dtype {np.dtype(self._rt)}, "
                             f"got {out.shape} {out.dtype}")
        h = M // 2
        for b0, b1, s0, step, shifted in self._runs:
            src = S[:, _sl(s0, b1 - b0, step)]
            dst = out[:, b0:b1]
            if not shifted:
                dst[...] = src
            else:                                   # dst[i, j] = src[i + h, j + h] (mod M)
                dst[:, :, :h, :h] = src[:, :, h:, h:]
                dst[:, :, :h, h:] = src[:, :, h:, :h]
                dst[:, :, h:, :h] = src[:, :, :h, h:]
                dst[:, :, h:, h:] = src[:, :, :h, :h]
        return out

    def best(self, S: np.ndarray):
        """Grid maximiser of every landscape from the step-3 slices: (b, i, j, score) arrays.

        Tie rule: the first maximiser in the order of the whole landscape X[a, b, i, j]
        (C order, as np.argmax over the expanded array would pick); mirrored slices are
        exact copies of their sources, so the maximum is found on the slices alone."""
        n, ns = S.shape[:2]
        flat = S.reshape(n, ns, self.M * self.M)
        out = []
        for a in range(n):
            search = _GridSearch(self)
            search.update(np.zeros(ns, dtype=np.int64), np.arange(ns), flat[a])
            out.append(search.result(0))
        return _stack_best(out)

    def spectra(self, coef: np.ndarray, norms: np.ndarray | None = None) -> np.ndarray:
        """Steps 0–2 on a block of volumes (n, R, n_lm): the half-spectra of :meth:`step2`
        (and its row norms into ``norms`` if given)."""
        c = self.radial_compress(coef)
        return self.step2(self.step1_project(c) if self.compressed else self.step1(c), norms)

    def norms_array(self, n: int) -> np.ndarray:
        """A reusable (n, n_u, L+1) array for the row norms of :meth:`step2` (owned by the
        plan)."""
        return self._buffer("norms", (n, self._rows.shape[1], self.L + 1), np.float64)

    def slices(self, coef: np.ndarray) -> np.ndarray:
        """Steps 0–3 on a block of volumes (n, R, n_lm): the step-3 slices (work array)."""
        return self.step3(self.spectra(coef))

    def best_rotations(self, coef: np.ndarray):
        """Steps 0–3 and the grid maximiser of a block of volumes, (b, i, j, score) as
        ``best(slices(coef))`` but without the slices of the block in memory
        (:meth:`step3_best`; compressed plans with L ≥ HEAD_ONLY_MIN_L: step 2 of the
        first rows only, the others formed in step 3 where needed)."""
        norms = self.norms_array(coef.shape[0])
        if not self._head_only:
            return self.step3_best(self.spectra(coef, norms), norms)
        Z = self._operands(self.step1_project(self.radial_compress(coef)))
        return self.step3_best(self.step2(Z, norms, head_only=True), norms, Z)

    def __call__(self, coef: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Landscapes of a block of volumes (n, R, n_lm) → (n, n_β, M, M) (into ``out`` if
        given: reusing one output array saves the page faults of a fresh one per block)."""
        return self.expand(self.slices(coef), out=out)

    def work_array(self, n: int) -> np.ndarray:
        """A reusable output array for blocks of n volumes (owned by the plan)."""
        return self._buffer("landscape", (n, self.n_beta, self.M, self.M), self._rt)


_POOLS: dict = {}


def _pool(workers: int):
    """Thread pool for the step-3 FFTs (ducc0 releases the GIL), one per worker count."""
    from concurrent.futures import ThreadPoolExecutor

    if workers not in _POOLS:
        _POOLS[workers] = ThreadPoolExecutor(workers, thread_name_prefix="radsvd-fft")
    return _POOLS[workers]


class _GridSearch:
    """Grid maximisers of the landscapes of ``count`` volumes, fed step-3 slices in batches
    (:func:`_search_update`).

    Keeps every slice's maximum and, for the slices that attain their volume's running
    maximum when they arrive (the only ones that can hold the final one), the first
    position in plain and in half-period-shifted order; :meth:`result` then applies the
    tie rule of :meth:`LandscapePlan.best` (first maximiser of the whole landscape in C
    order)."""

    def __init__(self, plan: LandscapePlan, count: int = 1):
        self.plan = plan
        self.smax = np.full((count, plan.n_slices), -np.inf)
        self.top = np.full(count, -np.inf)
        self.first = np.full((count, plan.n_slices, 2), -1, dtype=np.int64)

    def update(self, vols: np.ndarray, slices: np.ndarray, flat: np.ndarray) -> None:
        """Values of the slices (vols[q], slices[q]), flattened to (count, M²)."""
        _search_update(flat, vols, slices, self.smax, self.top, self.first)

    def result(self, v: int):
        """(b, i, j, score) of volume v: first grid β whose slice attains the maximum, then
        its first (i, j) in the order of that β's landscape."""
        p = self.plan
        top = float(self.top[v])
        b = int(np.argmax(self.smax[v, p._slice_of] == top))
        plain, shifted = self.first[v, p._slice_of[b]]
        i, j = divmod(int(shifted if p._shifted[b] else plain), p.M)
        return b, i, j, top


def _check_norms(norms, shape) -> None:
    """Row norms for step 2 / step 3: a float64 array of the plan's shape."""
    if not isinstance(norms, np.ndarray) or norms.shape != shape or norms.dtype != np.float64:
        got = f"{norms.dtype} {norms.shape}" if isinstance(norms, np.ndarray) else type(norms)
        raise InputError(f"norms: expected a float64 array of shape {shape}, got {got}")


def _stack_best(rows):
    """[(b, i, j, score), ...] → four arrays (int64, int64, int64, float64)."""
    b, i, j, score = zip(*rows)
    return (np.array(b, dtype=np.int64), np.array(i, dtype=np.int64),
            np.array(j, dtype=np.int64), np.array(score, dtype=np.float64))


def default_M(L: int) -> int:
    """Default α, γ grid size: the smallest even 7-smooth number (2^a 3^b 5^c 7^d) ≥ 2L+1.

    Any M ≥ 2L+1 samples the degree-L landscape exactly; an even M makes the mirrored β a
    half-period shift, and a 7-smooth M keeps the FFT in direct radix passes (98 at L = 48,
    where 2L+1 = 97 is prime and the FFT would fall back to Bluestein's algorithm)."""
    m = 2 * L + 2
    while _largest_prime_factor(m) > 7:
        m += 2
    return m


def _runs_shift(slice_of: np.ndarray, shifted: np.ndarray):
    """Runs (b0, b1, s0, step, shifted) of consecutive grid β mapping to consecutive slices
    (step ±1) with the same shift flag."""
    runs = []
    for flag in (False, True):
        bs = np.flatnonzero(shifted == flag)
        runs += [r + (flag,) for r in _runs(bs, slice_of[bs])]
    return runs


def _sl(u0: int, count: int, step: int) -> slice:
    """Slice of ``count`` items from u0 with step ±1."""
    stop = u0 + step * count
    return slice(u0, stop if stop >= 0 else None, step)


def _largest_prime_factor(n: int) -> int:
    """Largest prime factor (pocketfft has direct radix passes up to 11, Bluestein beyond)."""
    f, big = 2, 1
    while f * f <= n:
        while n % f == 0:
            big, n = f, n // f
        f += 1
    return max(big, n)


def _all_orders(c: np.ndarray, grid: ShellGrid) -> np.ndarray:
    """(n_rad, n_lm) m ≥ 0 → (n_rad, (L+1)²): every degree l, m = -l..l, at l² + m + l
    (B_l^{-m} = (-1)^{l+m} conj(B_l^m) for real volumes)."""
    ls, ms = _order_layout(grid.L)
    out = c[:, grid.index(ls, np.abs(ms))]
    neg = ms < 0
    out[:, neg] = ((-1.0) ** (ls[neg] - ms[neg])) * np.conj(out[:, neg])
    return out


@functools.lru_cache(maxsize=8)
def _order_layout(L: int):
    """(l, m) of the columns l² + m + l of :func:`_all_orders` (read-only, cached)."""
    ls = np.repeat(np.arange(L + 1), 2 * np.arange(L + 1) + 1)
    ms = np.arange(ls.size) - ls * ls - ls
    for x in (ls, ms):
        x.flags.writeable = False
    return ls, ms


def prepare(grid: ShellGrid, coef_target, basis: VolumeBasis | None = None, ranks=None,
            n_beta: int | None = None, M: int | None = None,
            wigner: WignerTable | None = None, precision: str | None = None) -> LandscapePlan:
    """Precompute a :class:`LandscapePlan` for one target (full if ranks is None).

    precision: "double", or "single" for step 2's output and the step-3 transform (float32
    landscapes: half the memory, ~40% faster step 3); compressed plans in single precision
    also store step 1b's degree sums and the [vᵀd] tables in float32 and sum step 2 in
    float32 (steps 0, 1 and the table sums stay in double; the full path's Wigner table and
    step-2 sums are always double).  None (default): "double" for the full path, "single"
    for compressed plans (their truncation error is ≫ float32 rounding; tests check that
    the metrics against the full landscape, correlation and f, change by < 1e-4, the
    issue 2/4 rule)."""
    return LandscapePlan(grid, coef_target, basis, ranks, n_beta, M, wigner, precision)


def landscapes(coef_volumes, coef_target, grid: ShellGrid, basis: VolumeBasis | None = None,
               ranks=None, n_beta: int | None = None, M: int | None = None,
               precision: str | None = None) -> np.ndarray:
    """Whole landscapes X[a, b, i, j] = <Â_a, R_τ B̂>, τ = (γ_j, β_b, α_i): (n, n_β, M, M)."""
    plan = prepare(grid, coef_target, basis, ranks, n_beta, M, precision=precision)
    a = check_coefficients(coef_volumes, grid, "coef_volumes")
    return plan(a)
