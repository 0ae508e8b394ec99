"""Wigner-d matrices and rotation of shell coefficients (paper eq. 93, 97).

Convention: d^l_{m1,m2}(β) = <l m1| e^{-iβ J_y} |l m2> (Wigner; e.g. d^1_{1,0} = -sin β/√2),
the rotation τ = (γ, β, α) is R_τ = R^z_α R^y_β R^z_γ (eq. 93, active, fixed axes: first γ
about z, then β about y, then α about z), and a rotated volume R_τ Â(k) = Â(R_τ^{-1} k) has
coefficients (eq. 97)

    (R_τ Â)_l^{m1} = Σ_{m2} e^{-i m1 α} d^l_{m1,m2}(β) e^{-i m2 γ} Â_l^{m2}.

Computation: for every (m1, m2) the three-term recursion in the degree l (stable in the
forward direction, like the Legendre recursion it generalises), seeded at l0 = max(|m1|, |m2|)
by the closed form d^{l0}, evaluated in log space so that no factorial overflows.  This is
accurate to machine precision times a slowly growing factor for l in the hundreds (tests
compare with the ``spherical`` package at l ≥ 100).

Table layout (:class:`WignerTable`, used by the landscapes): for each pair p = (m1, m2),
m1 = 0..L, m2 = -L..L (p = m1 (2L+1) + m2 + L), the degrees l = l0..L form a block of
rows, and each row holds all β of the table (β fastest):
``data[(offset[p] + l - l0) * n_beta + b]``.
Orders m1 < 0 follow from d^l_{-m1,-m2} = (-1)^{m1-m2} d^l_{m1,m2}.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from radsvd._jit import jit
from radsvd._validate import InputError, finite_array
from radsvd.rotations import euler_to_rotation, rotation_to_euler

__all__ = ["WignerTable", "wigner_d", "rotate", "rotation_matrix", "euler_from_matrix",
           "invert_euler"]


@jit
def _seed(j, m1, m2, c, s):
    """d^j_{m1,m2}(β) with j = max(|m1|, |m2|); c = cos(β/2), s = sin(β/2)."""
    sign = 1.0
    if abs(m1) == j:
        if m1 == j:
            m = m2
            p = j + m
            q = j - m
            if (j - m) % 2 == 1:
                sign = -1.0
        else:
            m = m2
            p = j - m
            q = j + m
    else:
        if m2 == j:
            m = m1
            p = j + m
            q = j - m
        else:
            m = m1
            p = j - m
            q = j + m
            if (m1 + j) % 2 == 1:
                sign = -1.0
    if (p > 0 and c == 0.0) or (q > 0 and s == 0.0):
        return 0.0
    logmag = 0.5 * (math.lgamma(2.0 * j + 1.0) - math.lgamma(j + m + 1.0)
                    - math.lgamma(j - m + 1.0))
    if p > 0:
        logmag += p * math.log(abs(c))
        if c < 0.0 and p % 2 == 1:
            sign = -sign
    if q > 0:
        logmag += q * math.log(abs(s))
        if s < 0.0 and q % 2 == 1:
            sign = -sign
    return sign * math.exp(logmag)


@jit
def _recurse(L, m1, m2, beta, out, start, stride):
    """Write d^l_{m1,m2}(β), l = l0..L, to out[start + (l - l0) * stride]."""
    l0 = max(abs(m1), abs(m2))
    cb = math.cos(beta)
    prev = 0.0
    cur = _seed(l0, m1, m2, math.cos(0.5 * beta), math.sin(0.5 * beta))
    out[start] = cur
    fm = float(m1 * m2)
    for l in range(l0, L):
        fl = float(l)
        if l == 0:
            a = cb
            b = 0.0
        else:
            a = cb - fm / (fl * (fl + 1.0))
            b = math.sqrt((fl * fl - m1 * m1) * (fl * fl - m2 * m2)) / (fl * (2.0 * fl + 1.0))
        norm = (fl + 1.0) * (2.0 * fl + 1.0) / math.sqrt(
            ((fl + 1.0) ** 2 - m1 * m1) * ((fl + 1.0) ** 2 - m2 * m2))
        nxt = norm * (a * cur - b * prev)
        prev = cur
        cur = nxt
        out[start + (l + 1 - l0) * stride] = cur


@jit(parallel=True)
def _fill_table(L, betas, offsets, out):
    """The recursion of :func:`_recurse` for all β of a pair at once: the l-dependent
    coefficients (two square roots, divisions) once per (pair, l), β innermost (contiguous
    rows of the table; same arithmetic per value as :func:`_recurse`)."""
    nb = betas.shape[0]
    M = 2 * L + 1
    cbs = np.cos(betas)
    chs = np.cos(0.5 * betas)
    shs = np.sin(0.5 * betas)
    for p in prange((L + 1) * M):
        m1 = p // M
        m2 = p % M - L
        l0 = max(m1, abs(m2))
        base = offsets[p] * nb
        prev = np.zeros(nb)
        cur = np.empty(nb)
        for b in range(nb):
            cur[b] = _seed(l0, m1, m2, chs[b], shs[b])
            out[base + b] = cur[b]
        fm = float(m1 * m2)
        for l in range(l0, L):
            fl = float(l)
            q = 0.0
            bb = 0.0
            if l > 0:
                q = fm / (fl * (fl + 1.0))
                bb = math.sqrt((fl * fl - m1 * m1) * (fl * fl - m2 * m2)) / (fl * (2.0 * fl + 1.0))
            norm = (fl + 1.0) * (2.0 * fl + 1.0) / math.sqrt(
                ((fl + 1.0) ** 2 - m1 * m1) * ((fl + 1.0) ** 2 - m2 * m2))
            row = base + (l + 1 - l0) * nb
            for b in range(nb):
                nxt = norm * ((cbs[b] - q) * cur[b] - bb * prev[b])
                prev[b] = cur[b]
                cur[b] = nxt
                out[row + b] = nxt


@jit
def _fill_table_serial(L, betas, offsets, out):
    """Serial twin of :func:`_fill_table` for one or two β (thread start-up would dominate)."""
    nb = betas.shape[0]
    M = 2 * L + 1
    for p in range((L + 1) * M):
        m1 = p // M
        m2 = p % M - L
        for b in range(nb):
            _recurse(L, m1, m2, betas[b], out, offsets[p] * nb + b, nb)


def _pair_offsets(L: int) -> np.ndarray:
    m1 = np.repeat(np.arange(L + 1), 2 * L + 1)
    m2 = np.tile(np.arange(-L, L + 1), L + 1)
    n_l = L + 1 - np.maximum(m1, np.abs(m2))
    return np.concatenate([[0], np.cumsum(n_l)]).astype(np.int64)


class WignerTable:
    """d^l_{m1,m2}(β_b) for 0 ≤ m1 ≤ L, |m2| ≤ L, max(m1, |m2|) ≤ l ≤ L, on a β grid.

    Computed once (parallel numba kernel, one (m1, m2) pair per task) and reused by every
    landscape.  ``nbytes`` is its memory; see the module docstring for the layout.
    """

    def __init__(self, L: int, betas):
        if isinstance(L, bool) or int(L) != L or L < 0:
            raise InputError(f"L must be a non-negative integer, got {L!r}")
        self.L = int(L)
        self.betas = finite_array(np.atleast_1d(betas), "betas", dtype=np.float64).ravel()
        self.offsets = _pair_offsets(self.L)
        self.data = np.empty(int(self.offsets[-1]) * self.betas.size)
        fill = _fill_table if self.betas.size > 2 else _fill_table_serial
        fill(self.L, self.betas, self.offsets, self.data)

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes + self.offsets.nbytes)

    def block(self, m1: int, m2: int) -> tuple[int, np.ndarray]:
        """(l0, array (L+1-l0, n_beta)) of d^l_{m1,m2}(β_b), l = l0..L; m1 ≥ 0."""
        L = self.L
        if not (0 <= m1 <= L and -L <= m2 <= L):
            raise InputError(f"(m1, m2) = ({m1}, {m2}) outside 0 <= m1 <= L, |m2| <= L = {L}")
        p = m1 * (2 * L + 1) + m2 + L
        nb = self.betas.size
        a, b = self.offsets[p] * nb, self.offsets[p + 1] * nb
        return max(m1, abs(m2)), self.data[a:b].reshape(-1, nb)

    def dense(self, l: int, b: int = 0) -> np.ndarray:
        """Full (2l+1, 2l+1) matrix d^l_{m1,m2}(β_b), indexed [m1 + l, m2 + l]."""
        if not 0 <= l <= self.L:
            raise InputError(f"degree l = {l} outside 0..{self.L}")
        out = np.empty((2 * l + 1, 2 * l + 1))
        for m1 in range(0, l + 1):
            for m2 in range(-l, l + 1):
                l0, blk = self.block(m1, m2)
                v = blk[l - l0, b]
                out[m1 + l, m2 + l] = v
                out[-m1 + l, -m2 + l] = v * (-1.0) ** (m1 - m2)
        return out


def wigner_d(L: int, beta: float) -> list[np.ndarray]:
    """[d^l(β) for l = 0..L], each (2l+1, 2l+1) indexed [m1 + l, m2 + l]."""
    t = WignerTable(L, [float(beta)])
    return [t.dense(l) for l in range(L + 1)]


def rotate(coefficients, grid, euler) -> np.ndarray:
    """Coefficients of R_τ Â for τ = (γ, β, α) (eq. 97), in the m-major layout of
    :mod:`radsvd.volumes.shells`.  ``coefficients``: (..., n_lm) complex."""
    c = np.asarray(coefficients, dtype=np.complex128)
    if c.shape[-1] != grid.n_lm:
        raise InputError(f"coefficients: expected last axis n_lm = {grid.n_lm}, got {c.shape[-1]}")
    gamma, beta, alpha = (float(x) for x in finite_array(euler, "euler", dtype=np.float64))
    L = grid.L
    d = wigner_d(L, beta)
    out = np.empty_like(c)
    for l in range(L + 1):
        m = np.arange(0, l + 1)
        idx = grid.index(l, m)
        a_pos = c[..., idx]                                           # m = 0..l
        ms = np.arange(-l, l + 1)
        a_full = np.concatenate(
            [((-1.0) ** (l + m[:0:-1])) * np.conj(a_pos[..., :0:-1]), a_pos], axis=-1)
        a_full = a_full * np.exp(-1j * ms * gamma)
        b = a_full @ d[l][l:, :].T                                    # m1 = 0..l
        out[..., idx] = b * np.exp(-1j * m * alpha)
    return out


def rotation_matrix(euler) -> np.ndarray:
    """R_τ = R^z_α R^y_β R^z_γ for τ = (γ, β, α) (eq. 91–93); euler (..., 3) → (..., 3, 3).

    The same ZYZ convention as RELION poses: ``euler_to_rotation(α, β, γ)``.
    """
    e = finite_array(euler, "euler", dtype=np.float64)
    return euler_to_rotation(e[..., 2], e[..., 1], e[..., 0], degrees=False)


def euler_from_matrix(R) -> np.ndarray:
    """(γ, β, α) with β ∈ [0, π] such that rotation_matrix((γ, β, α)) = R (at β = 0 or π,
    where only α ± γ is defined, γ = 0)."""
    alpha, beta, gamma = rotation_to_euler(R, degrees=False)
    return np.stack([gamma, beta, alpha], -1)


def invert_euler(euler) -> np.ndarray:
    """Euler angles of R_τ^{-1}: (γ, β, α) → (-α, -β, -γ)."""
    e = np.asarray(euler, dtype=np.float64)
    return np.stack([-e[..., 2], -e[..., 1], -e[..., 0]], -1)
