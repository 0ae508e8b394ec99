"""Numba kernels of steps 1, 1b and 2 (paper eq. 104, 117) and the [v_jᵀ d] tables, and the
row layouts they share.

Step 1  T_l(m1, m2) = Σ_r w_r conj(A_l^{m1}(k_r)) B_l^{m2}(k_r), 0 ≤ m1 ≤ l, |m2| ≤ l, one
        row (l, m1) of 2l+1 orders per pass (:func:`_step1_small`; many shells: BLAS, in
        :meth:`LandscapePlan.step1`), stored at T[a, base[l] + m1 (2l+1) + m2 + l].
Step 1b Y_j(m1, m2) = Σ_l v_j[l] T_l(m1, m2) (:func:`_degree_project`), or steps 1 and 1b
        fused (:func:`_step1_project`: T never reaches memory).
Step 2  X̂(m1, m2; β) = Σ_rows Z[row] table[row, β] (:func:`_contract_rows`): the rows of a
        pair (m1, m2) are its degrees l = max(m1, |m2|)..L with the Wigner-d table (full
        path, Z = T reordered by :func:`degree_rows`) or its H_D degree vectors with the
        [v_jᵀ d] tables (:func:`_degree_tables`, Z = Y).
P = 2L+1 is the number of orders m2 = -L..L; ``vec[l, j]`` = v_j[l], the degree vectors
(H_D columns); M (in step 2's output) is the α/γ grid size.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import prange

from radsvd._jit import jit
from radsvd.volumes.shells import ShellGrid
from radsvd.volumes.wigner import _pair_offsets


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
    M = out.shape[3]
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
        for c in range(M):
            if L < c < M - L:                              # |m2| > L
                for a in range(n_a):
                    for u in range(nu):
                        out[a, u, m1, c] = 0.0
                continue
            k = c + L if c <= L else c - M + L             # m2 = c or c - M
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
def _degree_project(T, base, vec, L, out):  # pragma: no cover
    """Step 1b: out[a, m1, j, m2 + L] = Σ_{l ≥ max(m1,|m2|)} vec[l, j] T_l(m1, m2)[a].

    T_l(m1, m2)[a] = T[a, base[l] + m1 (2l+1) + m2 + l].  One task per (volume, m1); reads T
    sequentially along m2."""
    n_a = T.shape[0]
    HD = vec.shape[1]
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
                    o[j, m2 + L] += vec[l, j] * z


@jit(parallel=True)
def _step1_project(A, m_start, tg_re, tg_im, vec, L, out):  # pragma: no cover
    """Steps 1 + 1b fused (few radial functions): out[a, m1, j, m2 + L] =
    Σ_{l ≥ max(m1,|m2|)} vec[l, j] Σ_r conj(A[a, r, m_start[m1] + l - m1]) tg[r, l² + m2 + l].

    One task per (volume, m1); the degree-l row T_l(m1, ·) lives in a local buffer and is
    projected onto the H_D degree vec at once (T never reaches memory)."""
    n_a = A.shape[0]
    HD = vec.shape[1]
    P = 2 * L + 1
    for t in prange(n_a * (L + 1)):
        a = t // (L + 1)
        m1 = t % (L + 1)
        acc_r = np.empty(P)
        acc_i = np.empty(P)
        y_r = np.zeros((P, HD))
        y_i = np.zeros((P, HD))
        for l in range(m1, L + 1):
            w = 2 * l + 1
            off = l * l
            _shell_sum(A, a, m_start[m1] + l - m1, tg_re, tg_im, off, w, acc_r, acc_i)
            for k in range(w):
                p = k - l + L
                zr = acc_r[k]
                zi = acc_i[k]
                for j in range(HD):
                    v = vec[l, j]
                    y_r[p, j] += v * zr
                    y_i[p, j] += v * zi
        for j in range(HD):
            for p in range(P):
                out[a, m1, j, p] = complex(y_r[p, j], y_i[p, j])


@jit(parallel=True)
def _degree_tables(table, row_start, vec, L, tiny, r, order, out, out_t,
                   out_sq):  # pragma: no cover
    """[v_jᵀ d]: Σ_{l ≥ l0(p)} vec[l, j] table[row(p, l), u] for the pairs p = (m1, m2) and
    j < H_D, summed in double (four rows of ``table`` per pass, in row order) and stored in
    out's precision; |values| < ``tiny`` are stored as 0 (no subnormal float32 operands in
    step 2).  Rows m1 < r into out[(m1 H_D + j) P + m2 + L, u] (P = 2L+1: the sums of one
    m1 and j contiguous in m2), the others β-major into out_t[u, q], q = ((m1 - r) H_D + j)
    P + m2 + L, and their squares summed over blocks b of m2 (B = out_sq.shape[0] /
    ((L+1-r) H_D) blocks, b = (m2 + L) B // P) into out_sq[((m1 - r) H_D + j) B + b, u]
    (in double; ``out_sq`` zeroed by the caller).  One task per m1, in ``order``."""
    HD = vec.shape[1]
    nu = table.shape[1]
    P = 2 * L + 1
    B = out_sq.shape[0] // max(1, (L + 1 - r) * HD)
    for t in prange(order.size):
        m1 = order[t]
        acc = np.empty((HD, nu))
        for k in range(P):
            p = m1 * P + k
            l0 = max(m1, abs(k - L))
            acc[:, :] = 0.0
            r0, r1 = row_start[p], row_start[p + 1]
            row = r0
            while row + 4 <= r1:
                d0, d1, d2, d3 = table[row], table[row + 1], table[row + 2], table[row + 3]
                i = l0 + row - r0
                for j in range(HD):
                    v0, v1, v2, v3 = vec[i, j], vec[i + 1, j], vec[i + 2, j], vec[i + 3, j]
                    a = acc[j]
                    for u in range(nu):
                        a[u] = a[u] + v0 * d0[u] + v1 * d1[u] + v2 * d2[u] + v3 * d3[u]
                row += 4
            while row < r1:
                d = table[row]
                v_row = vec[l0 + row - r0]
                for j in range(HD):
                    v = v_row[j]
                    a = acc[j]
                    for u in range(nu):
                        a[u] += v * d[u]
                row += 1
            for j in range(HD):
                a = acc[j]
                if m1 < r:
                    o = out[(m1 * HD + j) * P + k]
                    for u in range(nu):
                        o[u] = a[u] if abs(a[u]) >= tiny else 0.0
                    continue
                q = ((m1 - r) * HD + j) * P + k
                sq = out_sq[((m1 - r) * HD + j) * B + (k * B) // P]
                for u in range(nu):
                    out_t[u, q] = a[u] if abs(a[u]) >= tiny else 0.0
                    x = np.float64(out_t[u, q])
                    sq[u] += x * x



@functools.lru_cache(maxsize=8)
def degree_rows(L: int):
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



def all_orders(c: np.ndarray, grid: ShellGrid) -> np.ndarray:
    """(n_rad, n_lm) m ≥ 0 → (n_rad, (L+1)²): every degree l, m = -l..l, at l² + m + l
    (B_l^{-m} = (-1)^{l+m} conj(B_l^m) for real volumes)."""
    ls, ms = _order_layout(grid.L)
    out = c[:, grid.index(ls, np.abs(ms))]
    neg = ms < 0
    out[:, neg] = ((-1.0) ** (ls[neg] - ms[neg])) * np.conj(out[:, neg])
    return out


@functools.lru_cache(maxsize=8)
def _order_layout(L: int):
    """(l, m) of the columns l² + m + l of :func:`all_orders` (read-only, cached)."""
    ls = np.repeat(np.arange(L + 1), 2 * np.arange(L + 1) + 1)
    ms = np.arange(ls.size) - ls * ls - ls
    for x in (ls, ms):
        x.flags.writeable = False
    return ls, ms

