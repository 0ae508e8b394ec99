"""Step 3 (paper eq. 104): X(α, γ) = Re Σ_{m1, m2} X̂(m1, m2) e^{-i m1 α} e^{-i m2 γ} on one β
slice's Hermitian half-spectrum (rows m1 = 0..M/2, columns m2 mod M), as two ducc0 passes.

The two passes, one call each, give the same bits as one 2D c2r call; each runs on one
thread, so that the lines and their SIMD grouping depend only on the call, never on the
thread count.  Calls cover ``fft_chunk`` slices of one volume (:func:`chunk_bounds`), sized
for a 1 MB cache (:func:`fft_chunk_size`).
"""

from __future__ import annotations

import numpy as np

from radsvd._jit import fft_workers
from radsvd._pool import pool_map

__all__ = ["transform_m2", "transform_m1", "chunk_bounds", "fft_chunk_size", "per_volume"]


def transform_m2(x: np.ndarray) -> None:
    """First pass on a chunk of slices (count, rows, M), in place: the complex transform
    over m2, Y(m1, γ) = Σ_{m2} X̂(m1, m2) e^{-i m2 γ}."""
    import ducc0

    ducc0.fft.c2c(x, axes=(2,), forward=False, inorm=0, out=x, nthreads=1)


def transform_m1(y: np.ndarray, out: np.ndarray, M: int) -> None:
    """Second pass: half-complex-to-real over m1, X(α, γ) = Re Σ_{m1} Y(m1, γ) e^{-i m1 α}
    (count, M, M) into ``out`` (or, on columns γ gathered as (count, M//2+1), their (count,
    M) values over α); ``y`` is overwritten."""
    import ducc0

    ducc0.fft.c2r(y, axes=(1,), lastsize=M, forward=False, inorm=0, out=out, nthreads=1,
                  allow_overwriting_input=True)


def chunk_bounds(n_slices: int, fft_chunk: int) -> list[tuple[int, int]]:
    """(s0, s1) of the step-3 calls, ``fft_chunk`` slices each: the one source of the call
    boundaries of whole landscapes and of the unpruned search (their values then agree to
    the last bit)."""
    return [(s0, min(s0 + fft_chunk, n_slices)) for s0 in range(0, n_slices, fft_chunk)]


def fft_chunk_size(M: int, n_slices: int, complex_dtype, real_dtype) -> int:
    """Slices per step-3 call: input and output of a call within ~1 MB of L2 cache (measured
    at K = 48: 10 single / 5 double slices were 10–30% faster than all 50)."""
    per_slice = ((M // 2 + 1) * M * np.dtype(complex_dtype).itemsize
                 + M * M * np.dtype(real_dtype).itemsize)
    return int(max(1, min(n_slices, (1 << 20) // per_slice)))


def per_volume(fn, n: int) -> None:
    """Run fn(worker, a0, a1) over contiguous chunks of the n volumes, one chunk per FFT
    worker thread (ducc0 and numpy release the GIL); worker w owns work slot w."""
    workers = min(fft_workers(), n)
    edges = np.linspace(0, n, workers + 1).astype(np.int64)
    if workers <= 1:
        fn(0, 0, n)
    else:
        pool_map(lambda w: fn(w, edges[w], edges[w + 1]), range(workers), workers,
                 single_blas=False)
