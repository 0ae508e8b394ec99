"""Radial helpers the modules of :mod:`radsvd.images` share (basis, shifts, methods, the plan).

Private to the package: stacks of Fourier–Bessel coefficients, the multiplicity of the stored
frequencies q = 0 … Q/2, the η-weighted ring Gram matrix (eq. 83, 85), pooling a kernel over
CTF groups, and polar samples from the stored half-spectrum.  Nothing here imports another
module of the package, so every one of them can import it.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from radsvd._pool import pool_map
from radsvd._validate import InputError, all_finite, finite_array, grid_of
from radsvd.grids import PolarGrid

METHODS = ("radial-svd", "shift-svd", "gaussian-shift-svd", "frequency-marching", "energy-pca")


def fb_stack(fb, grid: PolarGrid, name: str) -> np.ndarray:
    """``fb`` as a finite complex128 stack (n, R, Q//2+1) of the grid's coefficients."""
    grid_of(grid, PolarGrid)
    a = np.ascontiguousarray(fb, dtype=np.complex128)
    if not all_finite(a):
        raise InputError(f"{name}: contains NaN or inf values")
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[1:] != (grid.R, grid.n_freq):
        raise InputError(f"{name}: expected Fourier–Bessel coefficients of shape "
                         f"(n, R={grid.R}, Q//2+1={grid.n_freq}), got {a.shape}")
    if a.shape[0] == 0:
        raise InputError(f"{name}: the stack is empty")
    return a


def q_multiplicity(Q: int, include_zero: bool) -> np.ndarray:
    """How often each stored q = 0 … Q/2 occurs among the Q periodic frequencies."""
    m = np.full(Q // 2 + 1, 2.0)
    m[0] = 1.0 if include_zero else 0.0
    m[-1] = 1.0
    return m


def gram(fb, grid: PolarGrid, include_zero: bool, chunk: int = 64) -> np.ndarray:
    """(1/n) Σ_n Σ_q conj(b̃(r, q)) b̃(r', q) over all periodic q (real for real images).

    Re(conj(x)·y) = Re x·Re y + Im x·Im y: one real GEMM per chunk of targets (cache-sized),
    chunks on the task pool, partial sums added in chunk order (deterministic).
    """
    wq = q_multiplicity(grid.Q, include_zero)
    wk = np.repeat(np.sqrt(wq), 2)                       # (re, im) per q
    X = fb.view(np.float64)                              # (n, R, 2·n_freq)

    def part(rng):
        a0, a1 = rng
        F = np.ascontiguousarray(np.transpose(X[a0:a1] * wk, (1, 0, 2))).reshape(grid.R, -1)
        return F @ F.T

    n = fb.shape[0]
    parts = pool_map(part, [(i, min(n, i + chunk)) for i in range(0, n, chunk)])
    G = parts[0]
    for P in parts[1:]:
        G = G + P
    G = G * np.outer(grid.eta, grid.eta) / n
    return 0.5 * (G + G.T)


def pool_ctf(C: np.ndarray, grid: PolarGrid, ctf, group_sizes) -> np.ndarray:
    """Σ_c n_c diag(CTF_c) C diag(CTF_c) / Σ_c n_c over CTF groups (ring CTFs (m, R))."""
    if ctf is None:
        if group_sizes is not None:
            raise InputError("group_sizes given without ctf")
        return C
    c = finite_array(ctf, "ctf", dtype=np.float64)
    if c.ndim == 1:
        c = c[None]
    if c.ndim != 2 or c.shape[1] != grid.R or c.shape[0] == 0:
        raise InputError(f"ctf: expected ring averages of shape (n_groups, R={grid.R}), "
                         f"got {c.shape}")
    if group_sizes is None:
        n = np.ones(c.shape[0])
    else:
        n = finite_array(group_sizes, "group_sizes", dtype=np.float64).ravel()
        if n.shape != (c.shape[0],) or np.any(n < 0) or n.sum() <= 0:
            raise InputError(f"group_sizes: need {c.shape[0]} non-negative weights with a "
                             f"positive sum, got {n}")
    pooled = np.einsum("c,cr,rs,cs->rs", n, c, C, c) / n.sum()
    return 0.5 * (pooled + pooled.T)


def polar_samples(fb: np.ndarray, Q: int) -> np.ndarray:
    """Polar samples (n, R, Q) of real images from q = 0 … Q/2 (single-threaded FFT)."""
    nf = Q // 2 + 1
    full = np.empty(fb.shape[:-1] + (Q,), dtype=np.complex128)
    full[..., :nf] = fb
    q = np.arange(1, Q // 2)
    full[..., Q - q] = np.where(q % 2, -1.0, 1.0) * np.conj(fb[..., q])
    return scipy.fft.ifft(full, axis=-1, workers=1) * Q
