"""The rows of a compressed spectrum that step 2 leaves out for the best rotations, and the
bound of what they can add (paper eq. 117, step 2).

For compressed plans with L ≥ HEAD_ONLY_MIN_L, step 2 of the best rotations forms only the
rows m1 < row_split of each spectrum (``step2(..., head_only=True)``).  The other rows hold
~3% of a compressed landscape's l1 mass at K = 48; their sum over m1 and m2 is bounded per
volume and distinct β by the triangle inequality over the H_D degree vectors and
Cauchy-Schwarz over TAIL_BLOCKS blocks of m2 (:meth:`TailTables.bounds`, ~2× their l1
norm), and the pruned search forms them (:func:`_tail_rows`) for the few slices that need
them (~4%), from a β-major copy of their [vᵀd] tables (:class:`TailTables`).  The full path
keeps its whole step 2: there those rows hold ~10% of the mass and their bound, a sum over
up to L+1-r degrees, is 3.5× loose.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from radsvd._jit import jit

__all__ = ["HEAD_ONLY_MIN_L", "TAIL_BLOCKS", "TailTables"]

# smallest degree L at which best_rotations of compressed plans forms only the first rows
# in step 2 (steps 0–3 against the whole step 2, ranks 4 and 8, 32 volumes, 2 threads:
# K = 16 25–35% slower, K = 24 equal, K = 32 14–18% and K = 48 20–27% faster)
HEAD_ONLY_MIN_L = 32

# blocks of m2 over which the rows left out are bounded by Cauchy-Schwarz (K = 48, rank 8:
# the bounds are ~2× the sum of the rows' norms)
TAIL_BLOCKS = 8


class TailTables:
    """The [v_jᵀ d] rows m1 ≥ ``row_split`` of a compressed plan, β-major: ``table[u, m1 -
    row_split, j, m2 + L]`` (one slice's rows contiguous, for :func:`_tail_rows`), their l2
    norms over TAIL_BLOCKS blocks of m2 (``block_norms[((m1 - row_split) H_D + j) B + b,
    u]``), and ``widen``, the factor that covers the rounding of the values (2 H_D u in the
    table's precision) and of the bounds' own double sums."""

    def __init__(self, table: np.ndarray, block_squares: np.ndarray, row_split: int, L: int):
        self.table, self.block_norms = table, np.sqrt(block_squares)
        self.row_split, self.L, self.H_D = row_split, L, table.shape[2]
        P = 2 * L + 1
        u = float(np.finfo(table.dtype).eps) / 2.0
        u64 = float(np.finfo(np.float64).eps) / 2.0
        self.widen = 1.0 + 2.0 * self.H_D * u + 2.0 * (block_squares.shape[0] + P + 8) * u64

    def bounds(self, Z: np.ndarray, norms: np.ndarray, workspace) -> None:
        """norms[a, u, row_split] = a bound of Σ_{m1 ≥ row_split} w_{m1} Σ_{m2}
        |X̂(m1, m2; β_u)| (norms of the later rows = 0), from the step-2 operands Z: by the
        triangle inequality over j and Cauchy-Schwarz over each block of m2, ≤ 2 Σ_{m1, j,
        blocks} ‖Y_j(m1, ·)‖ ‖t_j(m1, ·; β_u)‖, widened by ``widen``."""
        r, L, HD = self.row_split, self.L, self.H_D
        if r > L:                                        # every row formed in step 2
            return
        n_blocks = self.block_norms.shape[0]
        yb = workspace.get("tail_yb", (Z.shape[0], n_blocks), np.float64)
        _tail_block_norms(Z, r * HD * (2 * L + 1), 2 * L + 1, n_blocks // ((L + 1 - r) * HD),
                          yb)
        bound = workspace.get("tail_bound", (Z.shape[0], self.block_norms.shape[1]),
                              np.float64)
        _tail_bound_sums(yb, self.block_norms, bound)
        norms[:, :, r] = (2.0 * self.widen) * bound
        norms[:, :, r + 1:] = 0.0


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
    M = out.shape[2]
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
            for c in range(L + 1, M - L):
                row[c] = 0.0
            for k in range(P):
                c = k - L if k >= L else k - L + M          # column of m2 = k - L
                x = complex(acc_r[k], -acc_i[k])
                row[c] = x * sign[m1, c] if flip[s] else x


@jit(parallel=True)
def _tail_block_norms(Z, q0, P, B, out):  # pragma: no cover
    """out[a, c B + b] = (Σ_{k B // P = b} |Z[a, q0 + c P + k]|²)^½ (in double; the blocks
    of :func:`_degree_tables`): with q0 the first row m1 = r, row c = (m1 - r) H_D + j holds
    Y_j(m1, ·), for the bounds of :meth:`TailTables.bounds`."""
    for a in prange(Z.shape[0]):
        z = Z[a]
        o = out[a]
        o[:] = 0.0
        for c in range(out.shape[1] // B):
            base = q0 + c * P
            for k in range(P):
                xr = np.float64(z[base + k].real)
                xi = np.float64(z[base + k].imag)
                o[c * B + (k * B) // P] += xr * xr + xi * xi
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

