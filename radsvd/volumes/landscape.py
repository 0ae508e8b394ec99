"""Rotational landscapes of volumes on the (α, β, γ) grid (paper eq. 103–104, 117).

X(τ; A, B) = <Â, R_τ B̂> = Σ_r w_r Σ_{l,m} conj(Â_l^m(k_r)) (R_τ B̂)_l^m(k_r), τ = (γ, β, α),
R_τ = R^z_α R^y_β R^z_γ (active; eq. 93, 97): the TARGET B is rotated, and X is the Fourier
inner product (= (2π)³ times the real-space one on band-limited shells).

Grid: α_i = 2πi/M, γ_j = 2πj/M (i, j = 0..M-1, default M = 2L+1), β_b = -π + 2πb/n_β
(default n_β = 2(L+1), the reference's linspace(-π, π, n_β+1)[:-1]).  Landscapes have shape
(n, n_β, M, M), indexed [volume, b, i (α), j (γ)].

Full path (eq. 104):
  step 1  T_l(m1, m2) = Σ_r w_r conj(A_l^{m1}(k_r)) B_l^{m2}(k_r), one matrix product per l
          over (volumes × m1) × r × m2, only 0 ≤ m1 ≤ l, |m2| ≤ l (|m| > l vanish);
  step 2  X̂(m1, m2; β) = Σ_{l ≥ max(m1,|m2|)} d^l_{m1,m2}(β) T_l(m1, m2)   (numba kernel,
          one (m1, m2) per task, β innermost);
  step 3  X(α, β, γ) = Σ_{m1,m2} e^{-i m1 α} e^{-i m2 γ} X̂(m1, m2; β), a real 2D transform.
Symmetries used: real volumes give X̂(-m1, -m2) = conj X̂(m1, m2), so only m1 ≥ 0 is formed
and the 2D transform is complex-to-real; and d^l_{m1,m2}(-β) = (-1)^{m1-m2} d^l_{m1,m2}(β), so
step 2 runs only for the β ≥ 0 half of the grid (and β = -π), the rest is a sign flip.

Compressed path (eq. 117) at ranks (H_C, H_D): step 1 on principal shells (R → H_C),
step 1b Y_j(m1, m2) = Σ_l v_j[l] T_l(m1, m2), step 2 with the tables [v_jᵀ d](β) (H_D terms
instead of L+1-max(m1,|m2|)), step 3 unchanged.  Full ranks (R, L+1) reproduce the full
landscape to rounding.

Step 3 uses scipy.fft when M is a fast FFT length; for other M (97 = 2·48+1 is prime and
pocketfft then falls back to Bluestein's algorithm) it uses the exact DFT as two matrix
products, which is faster there.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
from numba import prange

from radsvd._jit import fft_workers, jit
from radsvd._validate import InputError, rank as _rank
from radsvd.volumes.basis import VolumeBasis, check_coefficients
from radsvd.volumes.shells import ShellGrid
from radsvd.volumes.wigner import WignerTable, _pair_offsets

__all__ = ["LandscapePlan", "prepare", "landscapes", "beta_grid"]


# ----------------------------------------------------------------------------- kernels
@jit(parallel=True)
def _contract_rows(Z, row_start, table, L, order, out):  # pragma: no cover
    """Step 2: out[m2 mod M', a, u, m1] = conj(Σ_{rows of p} Z[a, row] table[row, u]).

    Pairs p = (m1, m2), 0 ≤ m1 ≤ L, |m2| ≤ L, own the rows row_start[p]..row_start[p+1] of
    ``Z`` (volumes × rows) and ``table`` (rows × distinct β).  One task per m2 (visited in
    ``order``): it reads each of its table rows once for all volumes, sums into a local
    buffer, and writes one contiguous slab out[m2 mod M'] (the layout step 3 multiplies).
    """
    n_a = Z.shape[0]
    nu = table.shape[1]
    M = 2 * L + 1
    Mout = out.shape[0]
    for t in prange(M):
        k = order[t]
        buf_r = np.empty((L + 1, n_a, nu))
        buf_i = np.empty((L + 1, n_a, nu))
        for m1 in range(L + 1):
            p = m1 * M + k
            r0 = row_start[p]                      # every pair has ≥ 1 row (l = L)
            d = table[r0]
            for a in range(n_a):
                zr = Z[a, r0].real
                zm = Z[a, r0].imag
                br = buf_r[m1, a]
                bi = buf_i[m1, a]
                for u in range(nu):
                    br[u] = d[u] * zr
                    bi[u] = d[u] * zm
            for row in range(r0 + 1, row_start[p + 1]):
                d = table[row]
                for a in range(n_a):
                    zr = Z[a, row].real
                    zm = Z[a, row].imag
                    br = buf_r[m1, a]
                    bi = buf_i[m1, a]
                    for u in range(nu):
                        br[u] += d[u] * zr
                        bi[u] += d[u] * zm
        col = (k - L) % Mout
        for a in range(n_a):
            for u in range(nu):
                for m1 in range(L + 1):
                    out[col, a, u, m1] = complex(buf_r[m1, a, u], -buf_i[m1, a, u])


@jit(parallel=True)
def _degree_project(T, base, V, L, out):  # pragma: no cover
    """Step 1b: out[a, m1 M + m2 + L, j] = Σ_{l ≥ max(m1,|m2|)} V[l, j] T_l(m1, m2)[a].

    T_l(m1, m2)[a] = T[a, base[l] + m1 (2l+1) + m2 + l].  One task per (volume, m1); reads T
    sequentially along m2."""
    n_a = T.shape[0]
    HD = V.shape[1]
    M = 2 * L + 1
    for t in prange(n_a * (L + 1)):
        a = t // (L + 1)
        m1 = t % (L + 1)
        for k in range(M):
            for j in range(HD):
                out[a, m1 * M + k, j] = 0.0
        for l in range(m1, L + 1):
            row0 = base[l] + m1 * (2 * l + 1)
            for m2 in range(-l, l + 1):
                z = T[a, row0 + m2 + l]
                p = m1 * M + m2 + L
                for j in range(HD):
                    out[a, p, j] += V[l, j] * z


@jit(parallel=True)
def _degree_tables(table, row_start, V, L, out):  # pragma: no cover
    """[v_jᵀ d]: out[p * H_D + j, u] = Σ_{l ≥ l0(p)} V[l, j] table[row(p, l), u]."""
    HD = V.shape[1]
    nu = table.shape[1]
    M = 2 * L + 1
    for p in prange((L + 1) * M):
        m1 = p // M
        m2 = p % M - L
        l0 = max(m1, abs(m2))
        for j in range(HD):
            for u in range(nu):
                out[p * HD + j, u] = 0.0
        for row in range(row_start[p], row_start[p + 1]):
            l = l0 + row - row_start[p]
            for j in range(HD):
                v = V[l, j]
                for u in range(nu):
                    out[p * HD + j, u] += v * table[row, u]


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


def _degree_rows(L: int):
    """Row structure shared by all kernels: rows of pair p are (p, l) for l = l0..L.

    Returns row_start (n_pairs+1,) and tidx (n_rows,): position of T_l(m1, m2) in the
    step-1 layout T[a, base_l + m1 (2l+1) + m2 + l]."""
    row_start = _pair_offsets(L)
    M = 2 * L + 1
    tidx = np.empty(int(row_start[-1]), dtype=np.int64)
    base = np.concatenate([[0], np.cumsum([(l + 1) * (2 * l + 1) for l in range(L + 1)])])
    for p in range((L + 1) * M):
        m1, m2 = p // M, p % M - L
        l0 = max(m1, abs(m2))
        ls = np.arange(l0, L + 1)
        tidx[row_start[p]:row_start[p + 1]] = base[ls] + m1 * (2 * ls + 1) + m2 + ls
    return row_start, tidx, base.astype(np.int64)


# ----------------------------------------------------------------------------- plan
class LandscapePlan:
    """Everything that does not depend on the volumes: the target in per-degree layout,
    the Wigner-d table (full) or the [v_jᵀ d] tables (compressed), the step-3 transform.

    Built by :func:`prepare`; ``precompute_seconds`` records its cost.  Calling the plan on
    a block of volumes returns fresh landscapes; the step methods are exposed for timing and
    reuse work buffers (the array returned by ``step1b``/``step2`` is overwritten by the
    next call).  One plan per thread.
    """

    def __init__(self, grid: ShellGrid, coef_target, basis: VolumeBasis | None = None,
                 ranks=None, n_beta: int | None = None, M: int | None = None,
                 wigner: WignerTable | None = None, precision: str = "double"):
        import time

        t0 = time.perf_counter()
        if not isinstance(grid, ShellGrid):
            raise InputError(f"grid: expected a radsvd ShellGrid, got {type(grid).__name__}")
        self.grid = grid
        L = grid.L
        self.L = L
        b = check_coefficients(coef_target, grid, "coef_target")
        if b.shape[0] != 1:
            raise InputError(f"coef_target: expected a single target volume, got {b.shape[0]}")
        n_beta = 2 * (L + 1) if n_beta is None else n_beta
        if isinstance(n_beta, bool) or int(n_beta) != n_beta or n_beta < 1:
            raise InputError(f"n_beta must be a positive integer, got {n_beta!r}")
        M = 2 * L + 1 if M is None else M
        if isinstance(M, bool) or int(M) != M or M < 2 * L + 1:
            raise InputError(f"M must be an integer >= 2L+1 = {2 * L + 1} (α, γ sampling of a "
                             f"degree-{L} landscape), got {M!r}")
        self.n_beta, self.M = int(n_beta), int(M)
        if precision not in ("double", "single"):
            raise InputError(f"precision must be 'double' or 'single', got {precision!r}")
        self.precision = precision
        rt = np.float64 if precision == "double" else np.float32
        ct = np.complex128 if precision == "double" else np.complex64
        self._rt, self._ct = rt, ct
        self.betas = beta_grid(self.n_beta)
        self.alphas = 2.0 * np.pi * np.arange(self.M) / self.M
        self.gammas = self.alphas.copy()
        unique, self.src, self.flip = _beta_sources(self.betas)
        self.row_start, self.tidx, self.base = _degree_rows(L)
        # m2 tasks of step 2 (k = m2 + L), evens then odds: balances the work over threads
        self.order = np.concatenate([np.arange(0, 2 * L + 1, 2), np.arange(1, 2 * L + 1, 2)])
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
            self.H_C, self.H_D = grid.R, L + 1
            self.radial = None
            self.table = d
            self.rows = self.row_start
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
            self.radial = basis.radial_matrix(self.H_C)
            self._radial_T = np.ascontiguousarray(self.radial.T, dtype=np.complex128)
            self.V = basis.degree_matrix(self.H_D)
            n_pairs = (L + 1) * (2 * L + 1)
            self.table = np.empty((n_pairs * self.H_D, unique.size))
            _degree_tables(d, self.row_start, self.V, L, self.table)
            self.rows = np.arange(n_pairs + 1, dtype=np.int64) * self.H_D
            self.weights = np.ones(self.H_C)
            tgt = self.radial.T @ b[0]
        # target per degree, all orders m2 = -l..l, weights folded in: (n_rad, 2l+1)
        self.target = [self.weights[:, None] * _full_orders(tgt, grid, l) for l in range(L + 1)]
        self.transform = "fft" if _largest_prime_factor(self.M) <= 11 else "dft"
        self._plus = np.flatnonzero(~self.flip)
        self._minus = np.flatnonzero(self.flip)
        self._runs_plus = _runs(self._plus, self.src[self._plus])
        self._runs_minus = _runs(self._minus, self.src[self._minus])
        idx = np.arange(self.M)
        m2s = np.where(idx <= L, idx, idx - self.M)                     # signed m2 of a column
        m1s = np.arange(L + 1)
        self._sign = (-1.0) ** (m1s[:, None] - m2s[None, :])             # (-1)^{m1-m2}
        if self.transform == "dft":
            g = 2.0 * np.pi * idx / self.M
            E = np.exp(1j * np.outer(m2s, g))                             # (m2 mod M, γ)
            self._ET = np.ascontiguousarray(
                np.concatenate([E, ((-1.0) ** m2s)[:, None] * E], axis=1).T.astype(ct))
            ang = np.outer(g, m1s)
            c = np.where(m1s == 0, 1.0, 2.0)
            self._G = np.concatenate([np.cos(ang) * c, -np.sin(ang) * c], axis=1)  # (α, 2(L+1))
            s1 = np.concatenate([(-1.0) ** m1s, (-1.0) ** m1s])
            Gm = self._G * s1[None, :]

            def interleave(G):  # columns (m1, re/im) to match the complex view of Z
                return np.ascontiguousarray(
                    np.stack([G[:, :L + 1], G[:, L + 1:]], axis=-1).reshape(self.M, -1), dtype=rt)

            self._Gi, self._Gmi = interleave(self._G), interleave(Gm)
        self.precompute_seconds = time.perf_counter() - t0

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
        return np.matmul(self._radial_T, coef)

    def step1(self, coef: np.ndarray) -> np.ndarray:
        """T[a, base_l + m1 (2l+1) + m2 + l] (eq. 104 step 1 / eq. 117 step 1)."""
        n = coef.shape[0]
        L = self.L
        T = np.empty((n, int(self.base[-1])), dtype=np.complex128)
        starts = self.grid.m_start
        for l in range(L + 1):
            idx = starts[: l + 1] + (l - np.arange(l + 1))           # (l, m1), m1 = 0..l
            A = np.conj(coef[:, :, idx]).transpose(0, 2, 1).reshape(n * (l + 1), -1)
            blk = A @ self.target[l]                                  # (n (l+1), 2l+1)
            T[:, self.base[l]:self.base[l + 1]] = blk.reshape(n, -1)
        return T

    def step1b(self, T: np.ndarray) -> np.ndarray:
        """Y[a, p H_D + j] = Σ_l v_j[l] T_l(m1, m2) (eq. 117 step 1b)."""
        n_pairs = (self.L + 1) * (2 * self.L + 1)
        Y = np.empty((T.shape[0], n_pairs, self.H_D), dtype=np.complex128)
        _degree_project(T, self.base, self.V, self.L, Y)
        return Y.reshape(T.shape[0], -1)

    def step2(self, Z: np.ndarray) -> np.ndarray:
        """conj X̂(m1 ≥ 0, m2; β_u) for the distinct β_u, laid out (M [m2 mod M], n, n_u, L+1)."""
        nu = self.table.shape[1]
        out = self._buffer("xhat", (self.M, Z.shape[0], nu, self.L + 1), np.complex128)
        if self.M > 2 * self.L + 1:
            out[self.L + 1: self.M - self.L] = 0.0
        if not self.compressed:
            Z = np.take(Z, self.tidx, axis=1)        # rows (m1, m2, l): l innermost
        _contract_rows(Z, self.rows, self.table, self.L, self.order, out)
        return out

    def step3(self, Xc: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """X[a, b, i (α), j (γ)] from conj X̂ at the distinct β (real 2D transform).

        Mirrored β: X̂(-β) = (-1)^{m1-m2} X̂(β).  For even M that is the shift
        X(α, -β, γ) = X(α - π, β, γ + π) of the grid; otherwise the sign is folded into the
        transform (a second DFT matrix, or a signed copy for the FFT).  The matrix DFT is one
        product over all volumes and β for m2 → γ, then one product per (volume, β) for
        m1 → α that writes straight into the output."""
        M, n, nu, L1 = Xc.shape
        rt, ct = self._rt, self._ct
        if out is None:
            out = np.empty((n, self.n_beta, M, M), dtype=rt)
        elif out.shape != (n, self.n_beta, M, M) or out.dtype != rt:
            raise InputError(f"out: expected shape {(n, self.n_beta, M, M)} and dtype "
                             f"{np.dtype(rt)}, got {out.shape} {out.dtype}")
        if self.transform == "fft":
            kw = dict(s=(M, M), axes=(-1, -2), norm="forward", workers=fft_workers())
            Xv = np.moveaxis(Xc, 0, -1)                                   # (n, nu, L+1, M)
            if Xv.dtype != ct:
                Xv = Xv.astype(ct)
            Xp = scipy.fft.irfft2(Xv, **kw)
            for b0, b1, u0, step in self._runs_plus:
                out[:, b0:b1] = Xp[:, _sl(u0, b1 - b0, step)]
            if self._minus.size:
                if M % 2 == 0:
                    for b0, b1, u0, step in self._runs_minus:
                        out[:, b0:b1] = np.roll(Xp[:, _sl(u0, b1 - b0, step)],
                                                (M // 2, -(M // 2)), (2, 3))
                else:
                    us = self.src[self._minus]
                    Xm = scipy.fft.irfft2(Xv[:, us] * self._sign.astype(rt), **kw)
                    out[:, self._minus] = Xm
            return out
        E = self._ET if self._minus.size else self._ET[:M]
        if Xc.dtype != ct:
            Xc = Xc.astype(ct)
        Z = self._buffer("z", (E.shape[0], n * nu * L1), ct)
        np.matmul(E, Xc.reshape(M, -1), out=Z)                 # Σ_m2 e^{+i m2 γ} (·(-1)^m2)
        # per (volume, β): real view (γ, 2(L+1)) with (re, im) interleaved, transposed
        Zp = Z[:M].reshape(M, n, nu, L1).view(rt)                         # (γ, n, nu, 2L1)
        Zp = np.moveaxis(Zp, 0, -1)                                        # (n, nu, 2L1, γ)
        for b0, b1, u0, step in self._runs_plus:
            np.matmul(self._Gi, Zp[:, _sl(u0, b1 - b0, step)], out=out[:, b0:b1])
        if self._minus.size:
            Zm = np.moveaxis(Z[M:].reshape(M, n, nu, L1).view(rt), 0, -1)
            for b0, b1, u0, step in self._runs_minus:
                np.matmul(self._Gmi, Zm[:, _sl(u0, b1 - b0, step)], out=out[:, b0:b1])
        return out

    def __call__(self, coef: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Landscapes of a block of volumes (n, R, n_lm) → (n, n_β, M, M) (into ``out`` if
        given: reusing one output array saves the page faults of a fresh one per block)."""
        T = self.step1(self.radial_compress(coef))
        Z = self.step1b(T) if self.compressed else T
        return self.step3(self.step2(Z), out=out)

    def work_array(self, n: int) -> np.ndarray:
        """A reusable output array for blocks of n volumes (owned by the plan)."""
        return self._buffer("landscape", (n, self.n_beta, self.M, self.M), self._rt)


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


def _full_orders(c: np.ndarray, grid: ShellGrid, l: int) -> np.ndarray:
    """(n_rad, n_lm) m ≥ 0 → (n_rad, 2l+1) degree-l coefficients for m = -l..l."""
    m = np.arange(l + 1)
    pos = c[:, grid.index(l, m)]
    neg = ((-1.0) ** (l + m[:0:-1]))[None, :] * np.conj(pos[:, :0:-1])
    return np.concatenate([neg, pos], axis=1)


def prepare(grid: ShellGrid, coef_target, basis: VolumeBasis | None = None, ranks=None,
            n_beta: int | None = None, M: int | None = None,
            wigner: WignerTable | None = None, precision: str = "double") -> LandscapePlan:
    """Precompute a :class:`LandscapePlan` for one target (full if ranks is None).

    precision: "double", or "single" for the step-3 transform (float32 landscapes: half the
    memory; steps 1–2 stay in double; not faster with OpenBLAS 0.3.30, whose complex64
    GEMM is slower here than its complex128 one)."""
    return LandscapePlan(grid, coef_target, basis, ranks, n_beta, M, wigner, precision)


def landscapes(coef_volumes, coef_target, grid: ShellGrid, basis: VolumeBasis | None = None,
               ranks=None, n_beta: int | None = None, M: int | None = None,
               precision: str = "double") -> np.ndarray:
    """Whole landscapes X[a, b, i, j] = <Â_a, R_τ B̂>, τ = (γ_j, β_b, α_i): (n, n_β, M, M)."""
    plan = prepare(grid, coef_target, basis, ranks, n_beta, M, precision=precision)
    a = check_coefficients(coef_volumes, grid, "coef_volumes")
    return plan(a)
