"""The sampling grid of a landscape and which β planes step 3 computes (paper eq. 103).

Grid: α_i = 2πi/M, γ_j = 2πj/M (i, j = 0..M-1), β_b = -π + 2πb/n_β (default n_β = 2(L+1),
the reference's linspace(-π, π, n_β+1)[:-1]).  M is the α/γ grid size, any M ≥ 2L+1 (the
paper's M = 2L+1 is the smallest; :func:`default_M` rounds up to an even 7-smooth size).
P = 2L+1 is the number of orders m2 = -L..L, the width of every spectrum row.

Mirrors: d^l_{m1,m2}(-β) = (-1)^{m1-m2} d^l_{m1,m2}(β), so step 2 runs only for the distinct
β (β ≥ 0 and β = -π: n_β/2 + 1 of them).  For even M the mirror is an index shift,
X(α, -β, γ) = X(α + π, β, γ + π): step 3 transforms the distinct β only and whole
landscapes copy the mirrored slices shifted by M/2 in α and γ (:meth:`SliceLayout.expand`).
For odd M the sign is folded into the spectrum and every grid β is transformed.
"""

from __future__ import annotations

import numpy as np

from radsvd._validate import InputError

__all__ = ["beta_grid", "default_M", "largest_prime_factor", "SliceLayout"]


def beta_grid(n_beta: int) -> np.ndarray:
    """β_b = -π + 2πb/n_β, b = 0..n_β-1 (the reference's linspace(-π, π, n_β+1)[:-1])."""
    return -np.pi + 2.0 * np.pi * np.arange(n_beta) / n_beta


def default_M(L: int) -> int:
    """Default α, γ grid size: the smallest even 7-smooth number (2^a 3^b 5^c 7^d) ≥ 2L+1.

    Any M ≥ 2L+1 samples the degree-L landscape exactly; an even M makes the mirrored β a
    half-period shift, and a 7-smooth M keeps the FFT in direct radix passes (98 at L = 48,
    where 2L+1 = 97 is prime and the FFT would fall back to Bluestein's algorithm)."""
    m = 2 * L + 2
    while largest_prime_factor(m) > 7:
        m += 2
    return m


def largest_prime_factor(n: int) -> int:
    """Largest prime factor (pocketfft has direct radix passes up to 11, Bluestein beyond)."""
    f, big = 2, 1
    while f * f <= n:
        while n % f == 0:
            big, n = f, n // f
        f += 1
    return max(big, n)


class SliceLayout:
    """The (α, β, γ) grid and the β planes (slices) step 3 computes.

    ``betas``, ``alphas``, ``gammas``: the grid; ``distinct``: the β step 2 runs for;
    ``source[b]``: the distinct β (column of step 2's output) of grid β b, ``mirrored[b]``:
    whether b is the mirror image -β of that source.  Slices: ``n_slices`` β planes that step
    3 transforms (the distinct β for even M, every grid β for odd M); ``slice_of[b]``: the
    slice holding grid β b, ``shifted[b]``: whether that copy is shifted by M/2 in α and γ
    (even M); ``slice_src[s]``: the distinct β slice s transforms, ``slice_flip[s]``: whether
    its spectrum gets the mirror sign ``mirror_sign`` = (-1)^{m1-m2} (odd M, rows m1 ×
    columns m2 mod M); ``runs``: (b0, b1, s0, step, shifted) of consecutive grid β on
    consecutive slices, for :meth:`expand`.
    """

    def __init__(self, L: int, n_beta: int, M: int, real_dtype=np.float64):
        self.L, self.n_beta, self.M = L, n_beta, M
        self.betas = beta_grid(n_beta)
        self.alphas = 2.0 * np.pi * np.arange(M) / M
        self.gammas = self.alphas.copy()
        self.distinct, self.source, self.mirrored = _beta_sources(self.betas)
        n_u = self.distinct.size
        rows = M // 2 + 1
        if M % 2 == 0:
            # mirrored β: X(α, -β, γ) = X(α + π, β, γ + π), an index shift by M/2
            self.n_slices = n_u
            self.slice_of, self.shifted = self.source.copy(), self.mirrored.copy()
            self.slice_src = np.arange(n_u)
            self.slice_flip = np.zeros(n_u, dtype=np.bool_)
            self.mirror_sign = np.ones((rows, M), dtype=real_dtype)
        else:
            # odd M: no half-period shift; every grid β is transformed (sign folded in)
            self.n_slices = n_beta
            self.slice_of = np.arange(n_beta)
            self.shifted = np.zeros(n_beta, dtype=np.bool_)
            self.slice_src = self.source.copy()
            self.slice_flip = self.mirrored.copy()
            idx = np.arange(M)
            m2s = np.where(idx <= L, idx, idx - M)                     # signed m2 of a column
            m1s = np.arange(rows)
            self.mirror_sign = ((-1.0) ** (m1s[:, None] - m2s[None, :])).astype(real_dtype)
        self.runs = _runs_shift(self.slice_of, self.shifted)

    def fold_mirrors(self, Xc: np.ndarray, out: np.ndarray) -> np.ndarray:
        """The spectrum of every slice, for odd M: ``out`` = spectra of every grid β
        (n, n_β, ...) with the mirror sign folded in; for even M ``Xc`` itself."""
        if self.M % 2 == 0:
            return Xc
        np.take(Xc, self.source, axis=1, out=out)
        out[:, self.slice_flip] *= self.mirror_sign
        return out

    def expand(self, S: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Whole landscapes (n, n_β, M, M) into ``out`` from the step-3 slices ``S`` (mirrored
        β of even M: X(α, -β, γ) = X(α + π, β, γ + π), copied with the index shift M/2)."""
        h = self.M // 2
        for b0, b1, s0, step, shifted in self.runs:
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


def check_grid(L: int, n_beta, M) -> tuple[int, int]:
    """(n_β, M) with their defaults (2(L+1), :func:`default_M`), or an InputError."""
    n_beta = 2 * (L + 1) if n_beta is None else n_beta
    if isinstance(n_beta, bool) or int(n_beta) != n_beta or n_beta < 1:
        raise InputError(f"n_beta must be a positive integer, got {n_beta!r}")
    M = default_M(L) if M is None else M
    if isinstance(M, bool) or int(M) != M or M < 2 * L + 1:
        raise InputError(f"M must be an integer >= 2L+1 = {2 * L + 1} (α, γ sampling of a "
                         f"degree-{L} landscape), got {M!r}")
    return int(n_beta), int(M)


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
