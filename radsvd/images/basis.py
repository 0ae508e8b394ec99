"""Radial bases for compressing polar Fourier images: the radial-SVD and two baselines.

A radial basis is an R×R matrix U with orthonormal columns u_1 … u_R in priority order.
Compressing to rank H forms the principal rings (eq. 71, 84)
    ã_h(q) = Σ_r u_h[r] η_r a(k_r, q),    η_r = sqrt(w_r Δψ),
so that the landscape becomes X^H(γ_j) = (2π/Δψ) Σ_q e^{-iqγ_j} Σ_{h≤H} conj(ã_h(q)) b̃_h(q),
and X^R = X (eq. 35) to rounding for any orthonormal U.

Constructors (one interface, capability 5):
- :func:`radial_svd` — eigenvectors of the kernel C of eq. 83/85 (q ≠ 0; optional CTF groups);
- :func:`frequency_marching` — the H lowest-frequency rings;
- :func:`energy_pca` — PCA of the rings by energy, q = 0 included;
- the translation-aware kernels of eq. 118 and 119–121 (:mod:`radsvd.images.shifts`), by name
  through :func:`radsvd.images.methods.make_basis`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from radsvd._validate import InputError, finite_array, grid_of, rank as check_rank
from radsvd.grids import PolarGrid
from radsvd.images._radial import METHODS, fb_stack, gram, pool_ctf

__all__ = ["RadialBasis", "radial_kernel", "radial_svd", "frequency_marching", "energy_pca"]


def radial_kernel(fb_targets, grid: PolarGrid, *, ctf=None, group_sizes=None) -> np.ndarray:
    """Target-averaged radial kernel C (eq. 83, 85), R×R real symmetric.

    C_{r,r'} = (1/N_B) Σ_B Σ_{q≠0} conj(b̃(r, q)) b̃(r', q), with b̃ = η b and q over all Q
    periodic frequencies (from the stored q = 0 … Q/2 by symmetry).  The constant
    (2π)³/(4σ̂²) of eq. 83 is dropped (it changes no eigenvector).

    CTF groups (docs/design.md): ``ctf`` (n_groups, R) radial CTF ring averages; the kernel is
    Σ_c n_c diag(CTF_c) C diag(CTF_c) / Σ_c n_c with ``group_sizes`` n_c (images per group;
    equal weights if omitted).  The targets are then the CTF-free templates.
    """
    b = fb_stack(fb_targets, grid, "fb_targets")
    return pool_ctf(gram(b, grid, include_zero=False), grid, ctf, group_sizes)


@dataclass(frozen=True)
class RadialBasis:
    """Orthonormal radial basis (columns of ``vectors``, R×R, in priority order).

    Built by :func:`radial_svd`, :func:`frequency_marching`, :func:`energy_pca`,
    :meth:`from_kernel` or :func:`radsvd.images.methods.make_basis`; compresses
    coefficients to H principal rings (:meth:`compress`, eq. 71, 84).

    Parameters
    ----------
    vectors : ndarray
        (R, R) orthonormal columns u_1 … u_R, in priority order.
    values : ndarray
        The kernel eigenvalues for radial-svd / energy-pca (descending), and for
        frequency-marching the ring frequencies k_r negated (so priority is descending too).
    eta : ndarray
        η_r = sqrt(w_r Δψ) of the grid the basis was built for.
    method : str
        One of :data:`radsvd.images.methods.METHODS`.

    Examples
    --------
    >>> grid = radsvd.PolarGrid(K=8)
    >>> targets = radsvd.images_to_fb(np.random.default_rng(0).standard_normal((20, 16, 16)),
    ...                               grid)
    >>> basis = radsvd.radial_svd(targets, grid)
    >>> basis.method, basis.R, basis.compress(targets, 3).shape
    ('radial-svd', 9, (20, 3, 10))
    """

    vectors: np.ndarray
    values: np.ndarray
    eta: np.ndarray
    method: str

    def __post_init__(self):
        V = np.asarray(self.vectors, dtype=np.float64)
        R = V.shape[0]
        if V.shape != (R, R):
            raise InputError(f"vectors must be square (R, R), got {V.shape}")
        if np.asarray(self.eta).shape != (R,):
            raise InputError(f"eta must have shape ({R},), got {np.asarray(self.eta).shape}")
        if self.method not in METHODS:
            raise InputError(f"method must be one of {METHODS}, got {self.method!r}")

    @property
    def R(self) -> int:
        return self.vectors.shape[0]

    def matrix(self, H: int) -> np.ndarray:
        """The R×H compression matrix diag(η) U[:, :H] (float64)."""
        H = check_rank(H, self.R)
        return self.eta[:, None] * self.vectors[:, :H]

    def compress(self, fb, H: int) -> np.ndarray:
        """Principal rings ã_h(q) = Σ_r u_h[r] η_r a(k_r, q) (eq. 71, 84): (n, H, Q//2+1)."""
        a = finite_array(fb, "fb", dtype=np.complex128)
        if a.ndim == 2:
            a = a[None]
        if a.ndim != 3 or a.shape[1] != self.R:
            raise InputError(f"fb: expected shape (n, R={self.R}, Q//2+1), got {a.shape}")
        M = self.matrix(H)
        return np.ascontiguousarray(np.einsum("rh,nrq->nhq", M, a, optimize=True))

    @classmethod
    def from_kernel(cls, kernel: np.ndarray, grid: PolarGrid, method: str) -> RadialBasis:
        """The eigenvectors of a symmetric R×R radial kernel, largest eigenvalue first, each
        signed so that its largest-magnitude entry is positive (a deterministic output)."""
        vals, vecs = np.linalg.eigh(kernel)
        order = np.argsort(vals)[::-1]
        vals, vecs = vals[order], vecs[:, order]
        idx = np.argmax(np.abs(vecs), axis=0)
        vecs = vecs * np.sign(vecs[idx, np.arange(vecs.shape[1])])[None, :]
        return cls(vectors=vecs, values=vals, eta=grid.eta.copy(), method=method)



def radial_svd(fb_targets, grid: PolarGrid, *, ctf=None, group_sizes=None) -> RadialBasis:
    """The radial-SVD basis: eigenvectors of :func:`radial_kernel` (eq. 83, 85), largest
    eigenvalue first.

    Parameters
    ----------
    fb_targets : array_like
        (n, R, Q//2+1) Fourier–Bessel coefficients of the targets (CTF-free templates).
    grid : PolarGrid
        Their grid.
    ctf : array_like, optional
        (n_groups, R) ring-averaged CTFs: the kernel is pooled over the groups.
    group_sizes : array_like, optional
        Images per CTF group (default equal weights).

    Returns
    -------
    RadialBasis
        ``method="radial-svd"``.

    Examples
    --------
    >>> grid = radsvd.PolarGrid(K=8)
    >>> targets = radsvd.images_to_fb(np.random.default_rng(0).standard_normal((20, 16, 16)),
    ...                               grid)
    >>> basis = radsvd.radial_svd(targets, grid)
    >>> bool(np.allclose(basis.vectors.T @ basis.vectors, np.eye(grid.R)))
    True
    >>> bool(np.all(np.diff(basis.values) <= 0))          # priority order
    True
    """
    kernel = radial_kernel(fb_targets, grid, ctf=ctf, group_sizes=group_sizes)
    return RadialBasis.from_kernel(kernel, grid, "radial-svd")


def frequency_marching(grid: PolarGrid) -> RadialBasis:
    """Baseline: keep the H lowest-frequency rings (identity basis, rings by increasing k).

    Parameters
    ----------
    grid : PolarGrid
        The grid whose rings are kept.

    Returns
    -------
    RadialBasis
        ``method="frequency-marching"``.

    Examples
    --------
    >>> basis = radsvd.frequency_marching(radsvd.PolarGrid(K=8))
    >>> basis.method, bool(np.array_equal(np.abs(basis.vectors), np.eye(9)))
    ('frequency-marching', True)
    """
    grid_of(grid, PolarGrid)
    order = np.argsort(grid.k, kind="stable")
    V = np.eye(grid.R)[:, order]
    return RadialBasis(vectors=V, values=-grid.k[order], eta=grid.eta.copy(),
                       method="frequency-marching")


def energy_pca(fb, grid: PolarGrid) -> RadialBasis:
    """Baseline: PCA of the rescaled rings by energy, q = 0 included (no rotation weighting).

    Parameters
    ----------
    fb : array_like
        (n, R, Q//2+1) Fourier–Bessel coefficients.
    grid : PolarGrid
        Their grid.

    Returns
    -------
    RadialBasis
        ``method="energy-pca"``.

    Examples
    --------
    >>> grid = radsvd.PolarGrid(K=8)
    >>> targets = radsvd.images_to_fb(np.random.default_rng(0).standard_normal((20, 16, 16)),
    ...                               grid)
    >>> radsvd.energy_pca(targets, grid).method
    'energy-pca'
    """
    b = fb_stack(fb, grid, "fb")
    return RadialBasis.from_kernel(gram(b, grid, include_zero=True), grid, "energy-pca")
