"""Images ↔ polar Fourier samples ↔ Fourier–Bessel coefficients (paper §2.3, eq. 32–34).

Conventions (docs/design.md): an image is ``img[iy, ix]`` (last axis x, the MRC fast axis), on the
box [-1, 1]² with dx = 2/N and pixel index N//2 at the origin, x_n = (n - N//2)·dx.
Â(k) = dx² Σ_n A(x_n) e^{-i k·x_n} (eq. 32).  The polar node (r, j) is
k_r (cos ψ_j, sin ψ_j) with ψ = 0 along +x and ψ increasing towards +y (the first array axis).
Fourier–Bessel coefficients a(k_r, q) = (1/Q) Σ_j Â(k_r, ψ_j) e^{-iqψ_j} (eq. 34 up to the
factor 2π); for real images only q = 0 … Q/2 are stored, a(k, -q) = (-1)^q conj(a(k, q)).

Precision: the NUFFT runs at the data's precision (float32 images: single precision at
eps 1e-6; float64: double at 1e-12; see :mod:`radsvd._nufft`); everything it returns and
everything after it is complex128.

Threads: every finufft plan runs on one thread (finufft's multi-threaded FFT rounds
differently for different thread counts) and stacks are split into chunks of images
transformed by the project's pool, one plan per worker; a single-threaded finufft gives
every image the same bits whatever the batch it is in, so results do not depend on the
thread count.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import scipy.fft

from radsvd import _profile
from radsvd._jit import fft_workers
from radsvd._nufft import Type2, transform_precision
from radsvd._pool import pool_map
from radsvd._validate import InputError, grid_of, finite_array, real_stack
from radsvd.grids import PolarGrid

__all__ = ["to_polar", "to_fb", "fb_to_polar", "polar_to_images", "images_to_fb", "FBSource"]


def _nodes_scaled(grid: PolarGrid, N: int, half: bool = False):
    """finufft coordinates of the polar nodes: (ky·dx, kx·dx), flattened r-major; ``half``:
    only ψ_j < π (j < Q/2), the others follow from Â(-k) = conj(Â(k)) (:func:`_polar`)."""
    dx = 2.0 / N
    kx, ky = grid.points()
    if half:
        kx, ky = kx[:, : grid.Q // 2], ky[:, : grid.Q // 2]
    return (np.ascontiguousarray(ky.ravel() * dx), np.ascontiguousarray(kx.ravel() * dx))


CHUNK = 64  # images per NUFFT task


def _transform(grid: PolarGrid, N: int, precision: str, eps: float) -> Type2:
    """The single-threaded type-2 NUFFT of N×N images at the polar nodes with ψ < π."""
    return Type2(_nodes_scaled(grid, N, half=True), (N, N), precision, eps, 1)


class _Transforms:
    """One :func:`_transform` per thread (finufft plans are not thread-safe)."""

    def __init__(self, grid: PolarGrid, N: int, precision: str, eps: float):
        self.args = (grid, N, precision, eps)
        self._local = threading.local()

    def get(self) -> Type2:
        t = getattr(self._local, "transform", None)
        if t is None:
            t = self._local.transform = _transform(*self.args)
        return t


def _by_chunks(fn, n: int, workers: int) -> np.ndarray:
    """fn(a0, a1) over chunks of at most CHUNK images on ``workers`` threads, concatenated."""
    step = max(1, min(CHUNK, -(-n // max(1, workers))))
    parts = pool_map(lambda a0: fn(a0, min(n, a0 + step)), range(0, n, step),
                     workers=workers, single_blas=False)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def to_polar(images, grid: PolarGrid, *, eps: float | None = None,
             threads: int | None = None, precision: str | None = None) -> np.ndarray:
    """Polar Fourier samples Â(k_r, ψ_j) of a stack of real images (eq. 32).

    A finufft type-2 transform (finufft pairs its first coordinate with the first array
    axis, y) at the data's precision by default: float32 data in single precision at eps
    1e-6, float64 in double at 1e-12 (:func:`radsvd._nufft.transform_precision`).

    Parameters
    ----------
    images : array_like
        (n, N, N) or (N, N) real, ``img[iy, ix]``, pixel N//2 at the origin.
    grid : PolarGrid
        The polar grid; K must not exceed the Nyquist frequency πN/2.
    eps : float, optional
        NUFFT tolerance (default from the precision).
    threads : int, optional
        Worker threads over chunks of images (default: the project's); the result does not
        depend on it.
    precision : {"auto", "single", "double"}, optional
        Transform precision (default: the data's).

    Returns
    -------
    ndarray
        (n, R, Q) complex128.

    Raises
    ------
    InputError
        For non-square, empty or non-finite stacks and K beyond Nyquist.

    Examples
    --------
    >>> grid = radsvd.PolarGrid(K=8)
    >>> radsvd.to_polar(np.ones((2, 16, 16)), grid).shape
    (2, 9, 18)
    """
    grid = grid_of(grid, PolarGrid)
    precision, eps = transform_precision(_dtype(images), eps, precision)
    imgs = _checked_images(images, grid, precision)
    plans = _Transforms(grid, imgs.shape[-1], precision, eps)
    return _by_chunks(lambda a0, a1: _polar(plans.get(), imgs[a0:a1], grid).astype(
        np.complex128, copy=False), imgs.shape[0], threads or fft_workers())


def _dtype(data) -> np.dtype:
    """The dtype of an array-like without copying arrays and memory maps."""
    dt = getattr(data, "dtype", None)
    return np.dtype(dt) if dt is not None else np.asarray(data).dtype


def _checked_images(images, grid: PolarGrid, precision: str) -> np.ndarray:
    """A real (n, N, N) stack at the transform's precision; K within Nyquist."""
    imgs = real_stack(images, "images", 2,
                      dtype=np.float32 if precision == "single" else np.float64)
    try:
        grid.check_box(imgs.shape[-1])
    except ValueError as exc:
        raise InputError(f"images: {exc}") from None
    return imgs


def _polar(transform: Type2, imgs: np.ndarray, grid: PolarGrid) -> np.ndarray:
    """Polar samples (n, R, Q), scaled by dx², at the transform's precision.  Real images:
    Â(k, ψ + π) = conj(Â(k, ψ)), so the NUFFT runs on ψ < π only (half the points: the
    transform's cost is their interpolation) and the other half is conjugated."""
    n, N = imgs.shape[0], imgs.shape[-1]
    h = grid.Q // 2
    half = transform(imgs, native=True).reshape(n, grid.R, h)
    out = np.empty((n, grid.R, grid.Q), dtype=half.dtype)
    np.multiply(half, (2.0 / N) ** 2, out=out[..., :h])
    np.conjugate(out[..., :h], out=out[..., h:])
    return out


def to_fb(polar) -> np.ndarray:
    """Fourier–Bessel coefficients a(k_r, q) = (1/Q) Σ_j Â(k_r, ψ_j) e^{-iqψ_j} (eq. 34).

    Parameters
    ----------
    polar : array_like
        (n, R, Q) or (R, Q) complex polar samples of real images (:func:`to_polar`).

    Returns
    -------
    ndarray
        q = 0 … Q/2 only (real images: a(k, -q) = (-1)^q conj(a(k, q))), shape
        (n, R, Q//2 + 1), complex128.

    Examples
    --------
    >>> grid = radsvd.PolarGrid(K=8)
    >>> x = (np.arange(16) - 8) / 8.0
    >>> blob = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / 0.1)   # round: q = 0 only
    >>> fb = radsvd.to_fb(radsvd.to_polar(blob, grid))
    >>> fb.shape, bool(np.abs(fb[..., 1:]).max() < 1e-4 * np.abs(fb).max())
    ((1, 9, 10), True)
    """
    p = finite_array(polar, "polar", dtype=np.complex128)
    if p.ndim == 2:
        p = p[None]
    if p.ndim != 3 or p.shape[-1] % 2 or p.shape[0] == 0:
        raise InputError(f"polar: expected shape (n, R, Q) with Q even and n > 0, got {p.shape}")
    Q = p.shape[-1]
    a = scipy.fft.fft(p, axis=-1, workers=fft_workers())[..., : Q // 2 + 1]
    a /= Q
    return np.ascontiguousarray(a)


def images_to_fb(images, grid: PolarGrid, *, eps: float | None = None,
                 threads: int | None = None, precision: str | None = None):
    """Fourier–Bessel coefficients of real images: ``to_fb(to_polar(images, grid, ...))``
    to rounding, in one pass (eq. 32, 34).

    In single precision the FFT over ψ runs in single too.

    Parameters
    ----------
    images : array_like
        (n, N, N) or (N, N) real, ``img[iy, ix]``.
    grid : PolarGrid
        The polar grid.
    eps, threads, precision
        As for :func:`to_polar`.

    Returns
    -------
    ndarray
        (n, R, Q//2 + 1) complex128.

    Examples
    --------
    >>> grid = radsvd.PolarGrid(K=8)
    >>> images = np.random.default_rng(0).standard_normal((3, 16, 16))
    >>> fb = radsvd.images_to_fb(images, grid)
    >>> fb.shape, bool(np.allclose(fb, radsvd.to_fb(radsvd.to_polar(images, grid))))
    ((3, 9, 10), True)
    """
    grid = grid_of(grid, PolarGrid)
    precision, eps = transform_precision(_dtype(images), eps, precision)
    imgs = _checked_images(images, grid, precision)
    plans = _Transforms(grid, imgs.shape[-1], precision, eps)
    return _by_chunks(lambda a0, a1: _fb(plans.get(), imgs[a0:a1], grid), imgs.shape[0],
                      threads or fft_workers())


def _fb(transform: Type2, imgs: np.ndarray, grid: PolarGrid) -> np.ndarray:
    """Fourier–Bessel coefficients (eq. 32, 34) at the transform's precision until the
    last step, which divides by Q and casts to complex128 in one pass."""
    a = scipy.fft.fft(_polar(transform, imgs, grid), axis=-1, workers=1)
    out = np.empty(a.shape[:-1] + (grid.n_freq,), dtype=np.complex128)
    np.multiply(a[..., : grid.n_freq], 1.0 / grid.Q, out=out)
    return out


class FBSource:
    """Lazy Fourier–Bessel coefficients of an image stack, computed slice by slice.

    ``FBSource(stack, grid)[a:b]`` equals ``images_to_fb(stack[a:b], grid)``; ``stack`` may be
    a memory-mapped MRC stack, so :func:`radsvd.images.align_images` can stream N_A images
    without holding their coefficients (N_A·R·(Q/2+1)·16 bytes) in memory.  The transform's
    precision follows the stack's dtype (``eps``/``precision`` override, as in
    :func:`to_polar`); each thread keeps its own finufft plans (one thread each: slices are
    read by the engine's worker threads), with the points set once.  :meth:`all` transforms
    the whole stack on all threads.
    """

    def __init__(self, stack, grid: PolarGrid, eps: float | None = None, name: str = "images",
                 precision: str | None = None):
        grid = grid_of(grid, PolarGrid)
        shape = tuple(getattr(stack, "shape", np.shape(stack)))
        if len(shape) == 2:
            stack = np.asarray(stack)[None]
            shape = stack.shape
        if len(shape) != 3:
            raise InputError(f"{name}: expected a stack of images (n, N, N), got shape {shape}")
        if shape[0] == 0:
            raise InputError(f"{name}: the stack is empty")
        if shape[1] != shape[2]:
            raise InputError(f"{name}: must be square, got shape {shape[1:]}")
        try:
            grid.check_box(shape[-1])
        except ValueError as exc:
            raise InputError(f"{name}: {exc}") from None
        self.precision, self.eps = transform_precision(_dtype(stack), eps, precision)
        self.stack, self.grid, self.name = stack, grid, name
        self.N = int(shape[-1])
        self.shape = (int(shape[0]), grid.R, grid.n_freq)
        self._transforms = _Transforms(grid, self.N, self.precision, self.eps)

    def __len__(self) -> int:
        return self.shape[0]

    def _slice(self, a0: int, a1: int) -> np.ndarray:
        t0 = time.perf_counter()
        try:
            imgs = _checked_images(np.asarray(self.stack[a0:a1]), self.grid, self.precision)
            fb = _fb(self._transforms.get(), imgs, self.grid)
        except InputError as exc:
            raise InputError(f"{self.name} {a0}..{a1 - 1}: {exc}") from None
        _profile.add("transform_thread_seconds", time.perf_counter() - t0)
        return fb

    def __getitem__(self, sl) -> np.ndarray:
        if not isinstance(sl, slice):
            raise TypeError("FBSource supports slices only")
        a0, a1, _ = sl.indices(self.shape[0])
        return self._slice(a0, a1)

    def all(self, threads: int | None = None) -> np.ndarray:
        """Coefficients of the whole stack, (n, R, Q//2 + 1), on ``threads`` worker threads
        (default: the project's; the result does not depend on it)."""
        return _by_chunks(self._slice, self.shape[0], threads or fft_workers())


def _full_spectrum(fb, Q: int) -> np.ndarray:
    """Extend q = 0 … Q/2 to all q (FFT order) with a(k, -q) = (-1)^q conj(a(k, q))."""
    nf = Q // 2 + 1
    full = np.empty(fb.shape[:-1] + (Q,), dtype=np.complex128)
    full[..., :nf] = fb
    q = np.arange(1, Q // 2)
    sign = np.where(q % 2, -1.0, 1.0)
    full[..., Q - q] = sign * np.conj(fb[..., q])
    return full


def fb_to_polar(fb, Q: int) -> np.ndarray:
    """Inverse of :func:`to_fb`: polar samples (n, R, Q) from coefficients (n, R, Q//2 + 1)."""
    a = finite_array(fb, "fb", dtype=np.complex128)
    if int(Q) != Q or Q < 2 or Q % 2:
        raise InputError(f"Q must be a positive even integer, got {Q!r}")
    Q = int(Q)
    if a.shape[-1] != Q // 2 + 1:
        raise InputError(f"fb: last axis has {a.shape[-1]} frequencies, expected Q//2+1 = {Q // 2 + 1}")
    return scipy.fft.ifft(_full_spectrum(a, Q), axis=-1, workers=fft_workers()) * Q


def polar_to_images(polar_or_fb, grid: PolarGrid, N: int, eps: float = 1e-9) -> np.ndarray:
    """Band-limited real-space pictures from polar samples or FB coefficients (eq. 30).

    A(x) ≈ (2π)^-2 Σ_{r,j} w_r Δψ Â(k_r, ψ_j) e^{+i k·x} on the N×N pixel centres, by a finufft
    type-1 transform with the quadrature weights: the low-pass (‖k‖ ≤ K) version of the
    image, meant for pictures, not for exact inversion.

    Parameters
    ----------
    polar_or_fb : array_like
        (n, R, Q) polar samples or (n, R, Q//2+1) FB coefficients.
    grid : PolarGrid
        Their grid.
    N : int
        Pixels per side of the pictures.
    eps : float
        NUFFT tolerance.

    Returns
    -------
    ndarray
        (n, N, N) float64, ``img[iy, ix]``.

    Examples
    --------
    >>> grid = radsvd.PolarGrid(K=20)          # Nyquist of 16 pixels: 8π ≈ 25
    >>> x = (np.arange(16) - 8) / 8.0
    >>> blob = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / 0.1)
    >>> back = radsvd.polar_to_images(radsvd.images_to_fb(blob, grid), grid, 16)
    >>> back.shape, bool(np.abs(back - blob).max() < 0.05 * blob.max())
    ((1, 16, 16), True)
    """
    import finufft

    grid = grid_of(grid, PolarGrid)
    a = finite_array(polar_or_fb, "polar_or_fb", dtype=np.complex128)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[1] != grid.R:
        raise InputError(f"polar_or_fb: expected shape (n, R={grid.R}, Q or Q//2+1), got {a.shape}")
    if a.shape[-1] == grid.n_freq and grid.n_freq != grid.Q:
        a = fb_to_polar(a, grid.Q)
    elif a.shape[-1] != grid.Q:
        raise InputError(f"polar_or_fb: last axis {a.shape[-1]} is neither Q={grid.Q} nor Q//2+1")
    N = int(N)
    if N < 2:
        raise InputError(f"N must be >= 2, got {N}")
    y, x = _nodes_scaled(grid, N)
    c = a * (grid.w[:, None] * grid.dpsi / (2.0 * np.pi) ** 2)
    c = np.ascontiguousarray(c.reshape(a.shape[0], -1))

    def pictures(a0, a1):
        img = finufft.nufft2d1(y, x, c[a0:a1], (N, N), eps=eps, isign=1, nthreads=1)
        return np.ascontiguousarray(np.asarray(img).real.reshape(a1 - a0, N, N))

    return _by_chunks(pictures, a.shape[0], fft_workers())
