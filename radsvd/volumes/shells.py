"""Volumes ↔ spherical-harmonic shells (paper §4.1–4.3, eq. 90, 94–96).

Conventions (docs/design.md):

* Volumes are ``vol[iz, iy, ix]`` (the last axis is x), index N//2 is the origin, the box is
  [-1, 1]^3, dx = 2/N, and Â(k) = dx³ Σ_n A(x_n) e^{-i k·x_n}.
* k̂ = (cos φ sin θ, sin φ sin θ, cos θ) in (x, y, z) (eq. 90).
* Y_l^m(θ, φ) = N_lm P_l^m(cos θ) e^{imφ}, orthonormal on the unit sphere
  (∫ |Y_l^m|² dk̂ = 1), with the Condon–Shortley phase (-1)^m inside P_l^m; this is
  ``scipy.special.sph_harm_y(l, m, θ, φ)``.  (Eq. 95–96 print the normalisation loosely.)
* Â_l^m(k_r) = ∫ Â(k_r, k̂) conj(Y_l^m(k̂)) dk̂ (eq. 94), so with these coefficients
  <Â, B̂> = Σ_r w_r Σ_{l,m} conj(Â_l^m(k_r)) B̂_l^m(k_r) exactly on band-limited shells.

Coefficient layout ("m-major", compact): volumes are real, so Â(-k) = conj(Â(k)) and
Â_l^{-m} = (-1)^{l+m} conj(Â_l^m); only m ≥ 0 is stored.  Coefficients are a complex array
``(n, R, n_lm)`` with n_lm = (L+1)(L+2)/2, and for each m = 0..L a contiguous block over
l = m..L: ``index(l, m) = m_start[m] + (l - m)``, m_start[m] = m(2L+3-m)/2.  The Legendre
transform (one small matrix product per m) works on these blocks directly; the landscape
code regroups them by degree once per volume (O(R L²)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import scipy.fft
from scipy.special import roots_legendre

from radsvd._jit import fft_workers
from radsvd._validate import (MAX_NODES, InputError, check_memory, frequency, grid_of,
                              real_stack)
from radsvd.grids import PolarGrid, default_R, radial_quadrature

__all__ = ["ShellGrid", "ShellTransform", "to_shells", "from_shells", "sht", "isht", "legendre_table",
           "coefficient_norms", "map_shells"]


def legendre_table(L: int, x: np.ndarray) -> np.ndarray:
    """Normalised associated Legendre functions P̄_l^m(x), shape (n_lm, len(x)), m-major.

    P̄_l^m(cos θ) e^{imφ} = Y_l^m(θ, φ) (orthonormal, Condon–Shortley phase).  Computed by the
    standard stable three-term recursion in l for each m, seeded by
    P̄_m^m = (-1)^m sqrt((2m+1)!!/(4π (2m)!!)) sin^m θ (accumulated as a product).
    """
    x = np.asarray(x, dtype=np.float64)
    s = np.sqrt(np.clip(1.0 - x * x, 0.0, None))
    n_lm = (L + 1) * (L + 2) // 2
    out = np.empty((n_lm, x.size))
    pmm = np.full(x.size, math.sqrt(1.0 / (4.0 * math.pi)))
    i = 0
    for m in range(L + 1):
        if m > 0:
            pmm = -math.sqrt((2.0 * m + 1.0) / (2.0 * m)) * s * pmm
        out[i] = pmm
        if m < L:
            p1 = math.sqrt(2.0 * m + 3.0) * x * pmm
            out[i + 1] = p1
            p0 = pmm
            for l in range(m + 2, L + 1):
                a = math.sqrt((4.0 * l * l - 1.0) / (l * l - m * m))
                b = math.sqrt(((l - 1.0) ** 2 - m * m) / (4.0 * (l - 1.0) ** 2 - 1.0))
                p0, p1 = p1, a * (x * p1 - b * p0)
                out[i + l - m] = p1
        i += L + 1 - m
    return out


@dataclass(frozen=True)
class ShellGrid:
    """Radial shells × sphere quadrature for volumes (paper §4.3).

    Parameters: K maximum frequency (box units, Nyquist πN/2); R radial nodes (default
    1 + ceil(K)); L maximum degree (default round(K)).  Attributes: ``k, w`` Gauss–Jacobi
    nodes/weights for k² dk on [0, K]; ``eta = sqrt(w)`` (eq. 105–106); the sphere rule is
    L+1 Gauss–Legendre nodes in cos θ (``cos_theta``, ``theta_weights``) × 2L+2 equispaced φ
    (``phi``), exact for products of two degree-L band-limited functions.  ``M = 2L+1`` is the
    number of orders m = -L..L.
    """

    K: float = 48.0
    R: int | None = None
    L: int | None = None
    k: np.ndarray = field(init=False, repr=False, compare=False)
    w: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        frequency(self.K)  # before any size is derived from it (an absurd K would hang)
        R = default_R(self.K) if self.R is None else self.R
        L = int(round(self.K)) if self.L is None else self.L
        if isinstance(L, bool) or int(L) != L or not 1 <= L <= MAX_NODES:
            raise InputError(f"L must be an integer in [1, {MAX_NODES}], got {L!r}")
        if isinstance(R, bool) or int(R) != R or R < 1:
            raise InputError(f"R must be an integer >= 1, got {R!r}")
        # the sphere-rule samples of one volume: 3 float64 coordinates + 1 complex128 value
        check_memory(40 * int(R) * (int(L) + 1) * (2 * int(L) + 2),
                     f"ShellGrid(K={self.K}, R={R}, L={L})", "lower K, R or L")
        k, w = radial_quadrature(self.K, int(R), dim=3)
        object.__setattr__(self, "K", float(self.K))
        object.__setattr__(self, "R", int(R))
        object.__setattr__(self, "L", int(L))
        object.__setattr__(self, "k", k)
        object.__setattr__(self, "w", w)

    # --- sizes and index maps -------------------------------------------------------------
    @property
    def M(self) -> int:
        return 2 * self.L + 1

    @property
    def n_lm(self) -> int:
        return (self.L + 1) * (self.L + 2) // 2

    @property
    def eta(self) -> np.ndarray:
        return np.sqrt(self.w)

    @property
    def m_start(self) -> np.ndarray:
        """Start of each order's block: index(l, m) = m_start[m] + l - m."""
        m = np.arange(self.L + 2)
        return m * (2 * self.L + 3 - m) // 2

    def index(self, l, m):
        """Flat index of (l, m), 0 ≤ m ≤ l ≤ L, in the m-major layout."""
        l = np.asarray(l)
        m = np.asarray(m)
        return m * (2 * self.L + 3 - m) // 2 + (l - m)

    @property
    def degrees(self) -> np.ndarray:
        """l of every stored coefficient (length n_lm)."""
        return np.concatenate([np.arange(m, self.L + 1) for m in range(self.L + 1)])

    @property
    def orders(self) -> np.ndarray:
        """m (≥ 0) of every stored coefficient (length n_lm)."""
        return np.concatenate([np.full(self.L + 1 - m, m) for m in range(self.L + 1)])

    # --- sphere quadrature -----------------------------------------------------------------
    @property
    def n_theta(self) -> int:
        return self.L + 1

    @property
    def n_phi(self) -> int:
        return 2 * self.L + 2

    @property
    def cos_theta(self) -> np.ndarray:
        return roots_legendre(self.n_theta)[0][::-1].copy()  # θ increasing

    @property
    def theta_weights(self) -> np.ndarray:
        return roots_legendre(self.n_theta)[1][::-1].copy()

    @property
    def theta(self) -> np.ndarray:
        return np.arccos(self.cos_theta)

    @property
    def phi(self) -> np.ndarray:
        return 2.0 * np.pi * np.arange(self.n_phi) / self.n_phi

    def points(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cartesian (kx, ky, kz) of every quadrature node, each shape (R, n_theta, n_phi)."""
        ct = self.cos_theta[:, None]
        st = np.sqrt(1.0 - ct * ct)
        ph = self.phi[None, :]
        kk = self.k[:, None, None]
        kz = kk * ct * np.ones_like(ph)
        return kk * st * np.cos(ph), kk * st * np.sin(ph), kz

    def legendre(self) -> np.ndarray:
        """P̄_l^m(cos θ_i), shape (n_lm, n_theta) (cached)."""
        cache = self.__dict__.get("_legendre")
        if cache is None:
            cache = legendre_table(self.L, self.cos_theta)
            object.__setattr__(self, "_legendre", cache)
        return cache

    def check_box(self, N: int) -> None:
        """Raise InputError if K exceeds the Nyquist frequency πN/2 of an N-voxel box."""
        nyquist = 0.5 * np.pi * N
        if self.K > nyquist * (1 + 1e-12):
            raise InputError(
                f"K = {self.K:g} is beyond the Nyquist frequency πN/2 = {nyquist:.4g} of a "
                f"{N}-voxel box; lower K or use larger volumes")


def sht(samples, grid: ShellGrid, workers: int | None = None) -> np.ndarray:
    """Spherical-harmonic transform of samples f(θ_i, φ_j) on ``grid``'s sphere rule.

    ``samples``: complex (..., n_theta, n_phi) → coefficients (..., n_lm), m ≥ 0 only,
    f_l^m = ∫ f conj(Y_l^m) dk̂ (FFT in φ, then Gauss–Legendre quadrature in cos θ: for each
    m one real matrix product of the weighted P̄_l^m(cos θ_i) with the real and imaginary
    parts of every shell's order-m Fourier coefficients, laid out (m, θ, shell)).
    ``workers``: scipy.fft workers (default: the project's).
    """
    f = np.asarray(samples, dtype=np.complex128)
    if f.shape[-2:] != (grid.n_theta, grid.n_phi):
        raise InputError(f"samples: expected trailing shape {(grid.n_theta, grid.n_phi)}, "
                         f"got {f.shape[-2:]}")
    L, nt = grid.L, grid.n_theta
    lead = f.shape[:-2]
    n = int(np.prod(lead, dtype=np.int64))
    F = scipy.fft.fft(f.reshape(n, nt, grid.n_phi), axis=-1, workers=workers or fft_workers())
    # (L+1, n_theta, n) complex = (L+1, n_theta, 2n) real: one real GEMM per order m
    G = np.ascontiguousarray(np.transpose(F[..., : L + 1], (2, 1, 0)))
    G *= 2.0 * np.pi / grid.n_phi
    Gr = G.view(np.float64)
    P = grid.legendre() * grid.theta_weights[None, :]      # (n_lm, n_theta)
    out = np.empty((grid.n_lm, n), dtype=np.complex128)
    outr = out.view(np.float64)                            # (n_lm, 2n)
    starts = grid.m_start
    for m in range(L + 1):
        a, b = starts[m], starts[m + 1]
        np.matmul(P[a:b], Gr[m], out=outr[a:b])
    return np.ascontiguousarray(out.T).reshape(lead + (grid.n_lm,))


def isht(coefficients, grid: ShellGrid) -> np.ndarray:
    """Inverse of :func:`sht` for real-volume shells: (..., n_lm) → (..., n_theta, n_phi).

    Negative orders come from Â_l^{-m} = (-1)^{l+m} conj(Â_l^m) (real volumes).
    """
    c = np.asarray(coefficients, dtype=np.complex128)
    if c.shape[-1] != grid.n_lm:
        raise InputError(f"coefficients: expected last axis n_lm = {grid.n_lm}, got {c.shape[-1]}")
    L = grid.L
    P = grid.legendre()
    starts = grid.m_start
    F = np.zeros(c.shape[:-1] + (grid.n_theta, grid.n_phi), dtype=np.complex128)
    for m in range(L + 1):
        a, b = starts[m], starts[m + 1]
        Pm = P[a:b]                                        # (L+1-m, n_theta)
        F[..., m] = c[..., a:b] @ Pm
        if m > 0:
            # F_{-m}(θ) = Σ_l A_l^{-m} P̄_l^{-m} = Σ_l (-1)^l conj(A_l^m) P̄_l^m
            sign = (-1.0) ** np.arange(m, L + 1)
            F[..., grid.n_phi - m] = np.conj(c[..., a:b]) @ (sign[:, None] * Pm)
    return scipy.fft.ifft(F, axis=-1, norm="forward", workers=fft_workers())


def _volumes(volumes, name="volumes", dtype=np.float64) -> np.ndarray:
    return real_stack(volumes, name, ndim=3, dtype=dtype)


def _dtype(data) -> np.dtype:
    dt = getattr(data, "dtype", None)
    return np.dtype(dt) if dt is not None else np.asarray(data).dtype


class ShellTransform:
    """Shell coefficients of N³ maps through finufft plans with the points set once, for
    many maps: ``ShellTransform(grid, N, dtype)(volumes)`` equals ``to_shells(volumes, grid)``.

    Precision and tolerance as :func:`to_shells` (from ``dtype``, the maps' dtype, unless
    ``eps``/``precision`` say otherwise).  Each map is transformed by one thread (finufft's
    output at upsampling factor 1.25 depends on its thread count: one thread keeps results
    independent of the machine); a stack of maps is spread over the project's thread pool,
    and calls from several threads at once are safe (one plan per thread).
    """

    def __init__(self, grid: ShellGrid, N: int, dtype=np.float64, eps: float | None = None,
                 precision: str | None = None, dx: float | None = None):
        from radsvd._nufft import transform_precision

        self.precision, self.eps = transform_precision(dtype, eps, precision)
        N = int(N)
        self.grid, self.N = grid, N
        # dx: the voxel spacing in the box units of the grid (default 2/N, the map's own
        # box); another frame's units sample maps of any box and voxel size at the same
        # physical frequencies (radsvd.volumes.fit)
        self.dx = dx = 2.0 / N if dx is None else float(dx)
        if dx == 2.0 / N:
            grid.check_box(N)
        elif grid.K > np.pi / dx * (1 + 1e-12):
            raise InputError(f"K = {grid.K:g} is beyond the Nyquist frequency π/dx = "
                             f"{np.pi / dx:.4g} of a map with voxel spacing {dx:.4g} (box "
                             f"units); lower K")
        # real maps: Â(-k) = conj(Â(k)), and -k of a node (k, θ_i, φ_j) is the node
        # (k, θ_{n_θ-1-i}, φ_j + π): the NUFFT runs on the upper half of every sphere (the
        # equator's first n_φ/2 nodes for odd n_θ) and _full_sphere conjugates the rest
        nt, h, P = grid.n_theta, grid.n_theta // 2, grid.n_phi // 2
        half = [np.concatenate([c[:, :h].reshape(grid.R, -1), c[:, h:nt - h, :P].reshape(
            grid.R, -1)], axis=1) for c in grid.points()]
        # finufft pairs its first coordinate with the first array axis (z), the last with x.
        self._points = [c.ravel() * dx for c in half[::-1]]
        self._plans = {}

    def _nufft(self):
        """This thread's finufft transform.  Single precision: upsampling factor 1.25 (fine
        grid (1.25 N)³ instead of (2N)³) halved the NUFFT of a 65³ map at K = 48 (0.071 →
        0.038 s) at the same accuracy (7e-7 relative to double at 1e-12); in double at
        1e-12 it is slower (0.35 against 0.28 s) and short of the tolerance."""
        import threading

        from radsvd._nufft import Type2

        key = threading.get_ident()
        t = self._plans.get(key)
        if t is None:
            ups = 1.25 if self.precision == "single" else None
            t = Type2(self._points, (self.N,) * 3, self.precision, self.eps, 1, upsampfac=ups)
            self._plans[key] = t
        return t

    def _full_sphere(self, half: np.ndarray) -> np.ndarray:
        """(R, n_θ, n_φ) samples from the NUFFT's half (see __init__), scaled by dx³."""
        grid = self.grid
        nt, h, P = grid.n_theta, grid.n_theta // 2, grid.n_phi // 2
        half = half.reshape(grid.R, -1) * self.dx ** 3
        F = np.empty((grid.R, nt, grid.n_phi), dtype=np.complex128)
        top = half[:, : h * grid.n_phi].reshape(grid.R, h, grid.n_phi)
        F[:, :h] = top
        F[:, nt - 1 - np.arange(h)] = np.conj(np.roll(top, -P, axis=-1))
        if nt % 2:
            F[:, h, :P] = half[:, h * grid.n_phi:]
            F[:, h, P:] = np.conj(F[:, h, :P])
        return F

    def samples(self, vol: np.ndarray) -> np.ndarray:
        """Â at the grid's nodes, (R, n_θ, n_φ) complex128, of one (N, N, N) real map."""
        return self._full_sphere(self._nufft()(vol[None], native=True))

    def _one(self, vol: np.ndarray) -> np.ndarray:
        return sht(self.samples(vol)[None], self.grid, workers=1)[0]

    def __call__(self, volumes) -> np.ndarray:
        """(n, R, n_lm) coefficients of (N, N, N) or (n, N, N, N) real maps."""
        from radsvd._pool import pool_map

        vol = _volumes(volumes, dtype=np.float32 if self.precision == "single" else np.float64)
        if vol.shape[1] != self.N:
            raise InputError(f"volumes: box {vol.shape[1]} differs from the transform's "
                             f"{self.N}")
        return np.stack(pool_map(self._one, vol))


def to_shells(volumes, grid: ShellGrid, eps: float | None = None,
              precision: str | None = None) -> np.ndarray:
    """Spherical-harmonic shell coefficients Â_l^m(k_r) of real volumes (eq. 94).

    ``volumes``: (N, N, N) or (n, N, N, N) real, ``vol[iz, iy, ix]``.  Returns complex
    (n, R, n_lm) in the m-major layout of this module.  Â on the shells comes from a type-2
    NUFFT (finufft, one plan for all volumes) at the sphere-rule points, then :func:`sht`.
    The NUFFT runs at the data's precision by default: single at tolerance 1e-6 for float32
    maps, double at 1e-12 for float64 (``eps``/``precision`` override, see
    :func:`radsvd._nufft.transform_precision`).
    """
    from radsvd._nufft import transform_precision

    precision, eps = transform_precision(_dtype(volumes), eps, precision)
    vol = _volumes(volumes, dtype=np.float32 if precision == "single" else np.float64)
    return ShellTransform(grid, vol.shape[1], vol.dtype, eps, precision)(vol)


def from_shells(coefficients, grid: ShellGrid) -> np.ndarray:
    """Â(k_r, θ_i, φ_j) from shell coefficients: (n, R, n_lm) → (n, R, n_theta, n_phi)."""
    c = np.asarray(coefficients)
    if c.ndim == 2:
        c = c[None]
    if c.ndim != 3 or c.shape[1:] != (grid.R, grid.n_lm):
        raise InputError(f"coefficients: expected shape (n, {grid.R}, {grid.n_lm}), got {c.shape}")
    return isht(c, grid)


def coefficient_norms(coefficients, grid: ShellGrid) -> np.ndarray:
    """||Â||² = Σ_r w_r Σ_{l,|m|≤l} |Â_l^m(k_r)|² per volume (negative m counted)."""
    c = np.asarray(coefficients)
    mult = np.where(grid.orders == 0, 1.0, 2.0)
    return np.einsum("nrj,r,j->n", np.abs(c) ** 2, grid.w, mult)


def map_shells(volume, grid, L: int | None = None, eps: float = 1e-10) -> np.ndarray:
    """Spherical-harmonic coefficients B_l^m(k_r) of a real map on the radii of a
    :class:`~radsvd.grids.PolarGrid` (the 2D grid of the images it will be compared with).

    ``volume`` vol[iz, iy, ix] covering the images' box; returns (R, n_lm) complex, m ≥ 0,
    in the m-major layout of this module (orthonormal Y_l^m), degree L (default round(K) + 2:
    the slices' angular band plus a margin).  The radial basis of eq. 119–121 is built from
    them (:func:`radsvd.images.shifts.gaussian_shift_kernel`)."""
    import finufft

    grid = grid_of(grid, PolarGrid)
    vol = real_stack(volume, "volume", 3)
    if vol.shape[0] != 1:
        raise InputError("map_shells: expected one map")
    vol = vol[0]
    N = vol.shape[0]
    try:
        grid.check_box(N)
    except ValueError as exc:
        raise InputError(f"volume: {exc}") from None
    L = int(round(grid.K)) + 2 if L is None else int(L)
    sg = ShellGrid(K=grid.K, R=1, L=L)
    ct = sg.cos_theta[:, None]
    st = np.sqrt(1 - ct * ct)
    ph = sg.phi[None, :]
    n_dir = np.stack([st * np.cos(ph), st * np.sin(ph), ct * np.ones_like(ph)], -1)
    pts = grid.k[:, None, None, None] * n_dir[None]                 # (R, n_theta, n_phi, 3)
    dx = 2.0 / N
    c = [np.ascontiguousarray(pts[..., a].ravel() * dx) for a in (2, 1, 0)]
    # one thread: finufft's multi-threaded FFT rounds differently for each thread count
    f = finufft.nufft3d2(*c, vol.astype(np.complex128), eps=eps, isign=-1, nthreads=1)
    samples = f.reshape(grid.R, sg.n_theta, sg.n_phi) * dx ** 3
    return sht(samples, sg)
