"""Synthetic molecules: sums of isotropic Gaussian "atoms" with closed-form transforms.

A molecule is A(x) = Σ_j w_j (2π σ_j²)^(-3/2) exp(-|x - c_j|² / (2 σ_j²)) on the box [-1, 1]³
(docs/design.md units).  Its Fourier transform Â(k) = ∫ A(x) e^{-i k·x} dx and its
projections have closed forms, so they serve as exact oracles for the NUFFT-based templates
and the simulator:

    Â(k)        = Σ_j w_j exp(-i k·c_j) exp(-σ_j² |k|² / 2)
    P_R(x, y)   = ∫ A(R (x, y, z)) dz = Σ_j w_j (2π σ_j²)^(-1) exp(-|(x, y) - c'_j|² / (2 σ_j²)),
    P̂_R(k)      = Â(R (kx, ky, 0)),   with c'_j the first two components of R^T c_j.

The pose convention R is that of :mod:`radsvd.data.rotations` (RELION ZYZ, R = A_relion^T):
the template for pose R is the projection along z of the molecule rotated by R^T.
Arrays follow the brief: vol[iz, iy, ix], img[iy, ix], index N//2 is the origin, dx = 2/N.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from radsvd._validate import InputError
from radsvd.data.rotations import as_rotations


def _axis(N: int) -> np.ndarray:
    if int(N) != N or N < 2:
        raise InputError(f"box size N must be an integer >= 2, got {N!r}")
    N = int(N)
    return (np.arange(N) - N // 2) * (2.0 / N)


@dataclass(frozen=True)
class GaussianMolecule:
    """A pseudo-molecule of Gaussian atoms with a closed-form density, projection and Fourier
    transform (module doc), on the box [-1, 1]³.

    Parameters
    ----------
    centers : array_like, shape (n, 3)
        Atom centres as (x, y, z), box units.
    sigmas : array_like, shape (n,)
        Atom widths σ (positive, box units).
    weights : array_like, shape (n,)
        Atom weights w (the integral of each atom).
    name : str
        A label carried into outputs.

    Examples
    --------
    >>> mol = radsvd.GaussianMolecule([[0, 0, 0], [0.3, 0, 0]], [0.1, 0.1], [1.0, 2.0])
    >>> mol.n_atoms
    2
    >>> complex(mol.fourier([0.0, 0.0, 0.0]))     # Â(0) = Σ w
    (3+0j)
    >>> mol.volume(16).shape
    (16, 16, 16)
    """

    centers: np.ndarray
    sigmas: np.ndarray
    weights: np.ndarray
    name: str = "custom"

    def __post_init__(self):
        c = np.ascontiguousarray(self.centers, dtype=np.float64)
        s = np.ascontiguousarray(self.sigmas, dtype=np.float64)
        w = np.ascontiguousarray(self.weights, dtype=np.float64)
        if c.ndim != 2 or c.shape[1] != 3 or c.shape[0] == 0:
            raise InputError(f"GaussianMolecule: centers must have shape (n, 3), got {c.shape}")
        n = c.shape[0]
        if s.shape != (n,) or w.shape != (n,):
            raise InputError(f"GaussianMolecule: sigmas {s.shape} and weights {w.shape} must "
                             f"both have shape ({n},)")
        if not (np.all(np.isfinite(c)) and np.all(np.isfinite(s)) and np.all(np.isfinite(w))):
            raise InputError("GaussianMolecule: NaN or inf in centers, sigmas or weights")
        if np.any(s <= 0):
            raise InputError("GaussianMolecule: atom widths (sigmas) must be positive")
        for key, val in (("centers", c), ("sigmas", s), ("weights", w)):
            val.setflags(write=False)
            object.__setattr__(self, key, val)

    @property
    def n_atoms(self) -> int:
        return self.centers.shape[0]

    def extent(self, n_sigma: float = 5.0) -> float:
        """Radius of the ball (about the origin) holding every atom to n_sigma widths."""
        return float(np.max(np.linalg.norm(self.centers, axis=1) + n_sigma * self.sigmas))

    def rotated(self, R) -> "GaussianMolecule":
        """The molecule rotated by R: A'(x) = A(R^T x) (centres c_j → R c_j)."""
        R = as_rotations(R)[0]
        return GaussianMolecule(self.centers @ R.T, self.sigmas, self.weights, self.name)

    # -- real space ----------------------------------------------------------------------------
    def volume(self, N: int, dtype=np.float64) -> np.ndarray:
        """Samples A(x_n) on the N³ grid, vol[iz, iy, ix] (separable: one GEMM per atom chunk)."""
        x = _axis(N)
        N = x.size
        vol = np.zeros((N, N * N), dtype=np.float64)
        for sl in _chunks(self.n_atoms, 256):
            c, s, w = self.centers[sl], self.sigmas[sl], self.weights[sl]
            norm = w / (2 * np.pi * s ** 2) ** 1.5
            g = [np.exp(-(x[None, :] - c[:, d:d + 1]) ** 2 / (2 * s[:, None] ** 2)) for d in range(3)]
            gyx = (norm[:, None, None] * g[1][:, :, None] * g[0][:, None, :]).reshape(len(s), -1)
            vol += g[2].T @ gyx
        return vol.reshape(N, N, N).astype(dtype, copy=False)

    def projection(self, N: int, rotation=None) -> np.ndarray:
        """Closed-form projection P_R(x, y) = ∫ A(R (x, y, z)) dz sampled on the N² grid, img[iy, ix]."""
        x = _axis(N)
        cp = self._projected_centers(rotation)
        s, w = self.sigmas, self.weights
        gx = np.exp(-(x[None, :] - cp[:, 0:1]) ** 2 / (2 * s[:, None] ** 2))
        gy = np.exp(-(x[None, :] - cp[:, 1:2]) ** 2 / (2 * s[:, None] ** 2))
        return (gy * (w / (2 * np.pi * s ** 2))[:, None]).T @ gx

    # -- Fourier space -------------------------------------------------------------------------
    def fourier(self, k) -> np.ndarray:
        """Â(k) = ∫ A(x) e^{-i k·x} dx at points k (..., 3) ordered (kx, ky, kz); complex128."""
        k = np.asarray(k, dtype=np.float64)
        if k.shape[-1:] != (3,):
            raise InputError(f"fourier: k must have shape (..., 3), got {k.shape}")
        return self._ft(k.reshape(-1, 3), self.centers).reshape(k.shape[:-1])

    def projection_fourier(self, k2d, rotation=None) -> np.ndarray:
        """P̂_R(k) = Â(R (kx, ky, 0)) at 2D points k2d (..., 2) ordered (kx, ky); complex128."""
        k = np.asarray(k2d, dtype=np.float64)
        if k.shape[-1:] != (2,):
            raise InputError(f"projection_fourier: k2d must have shape (..., 2), got {k.shape}")
        cp = self._projected_centers(rotation)
        return self._ft(k.reshape(-1, 2), cp[:, :2]).reshape(k.shape[:-1])

    def projection_fourier_grid(self, N: int, rotations) -> np.ndarray:
        """P̂_R on the centred N×N DFT grid k = π m (m = -N//2 …), one per pose: (n, N, N).

        Separable in kx and ky for Gaussians, so each image is one complex matrix product
        (N × atoms) · (atoms × N); row index is ky (img[iy, ix] layout).
        """
        from radsvd.data.rotations import as_rotations as _rot

        m = np.arange(_axis(N).size) - N // 2
        k = np.pi * m.astype(np.float64)
        R = _rot(rotations)
        damp = np.exp(-0.5 * self.sigmas[:, None] ** 2 * k[None, :] ** 2)  # (atoms, N)
        out = np.empty((R.shape[0], k.size, k.size), dtype=np.complex128)
        from threadpoolctl import threadpool_limits

        # many small products: threaded BLAS only adds synchronisation (and oversubscribes
        # shared machines), so each runs on one thread
        with threadpool_limits(limits=1, user_api="blas"):
            for i, Ri in enumerate(R):
                cp = self.centers @ Ri  # rows (R^T c_j)
                ax = damp * np.exp(-1j * cp[:, 0:1] * k[None, :])
                ay = (damp * self.weights[:, None]) * np.exp(-1j * cp[:, 1:2] * k[None, :])
                out[i] = ay.T @ ax
        return out

    def _projected_centers(self, rotation) -> np.ndarray:
        if rotation is None:
            return self.centers
        R = as_rotations(rotation)[0]
        return self.centers @ R  # rows: (R^T c_j)^T

    def _ft(self, k: np.ndarray, centers: np.ndarray) -> np.ndarray:
        out = np.empty(k.shape[0], dtype=np.complex128)
        k2 = np.sum(k * k, axis=1)
        step = max(1, 2 ** 22 // max(self.n_atoms, 1))
        for sl in _chunks(k.shape[0], step):
            phase = k[sl] @ centers.T
            amp = np.exp(-0.5 * k2[sl, None] * self.sigmas[None, :] ** 2) * self.weights[None, :]
            out[sl] = np.sum(amp * np.exp(-1j * phase), axis=1)
        return out


def _chunks(n: int, step: int):
    for start in range(0, n, step):
        yield slice(start, min(n, start + step))


# ---------------------------------------------------------------------------------------------
# Presets: stand-ins for the paper's datasets (Fig 12), built from unions of ellipsoids.
# Each ellipsoid: (centre xyz, semi-axes abc, Euler ZYZ angles in degrees, share of atoms).

_PRESETS = {
    # TRPV1: tetrameric channel, a transmembrane core with four cytoplasmic lobes (unequal).
    "trpv1-like": dict(seed=5778, n_atoms=320, sigma=(0.030, 0.045), parts=[
        ((0.00, 0.00, 0.20), (0.26, 0.26, 0.16), (0, 0, 0), 0.35),
        ((0.25, 0.02, -0.12), (0.13, 0.11, 0.17), (10, 20, 0), 0.17),
        ((-0.02, 0.24, -0.14), (0.12, 0.12, 0.18), (0, 15, 30), 0.16),
        ((-0.26, -0.03, -0.10), (0.14, 0.10, 0.16), (40, 10, 0), 0.16),
        ((0.03, -0.25, -0.16), (0.11, 0.13, 0.15), (0, 25, 60), 0.16)]),
    # 80S ribosome: large and small subunit, a groove between them.
    "ribosome-like": dict(seed=2660, n_atoms=420, sigma=(0.030, 0.050), parts=[
        ((0.00, -0.05, -0.12), (0.38, 0.34, 0.30), (0, 0, 0), 0.62),
        ((0.06, 0.10, 0.28), (0.34, 0.22, 0.16), (20, 15, 0), 0.30),
        ((-0.30, 0.22, 0.02), (0.08, 0.08, 0.16), (0, 30, 0), 0.08)]),
    # 26S proteasome regulatory particle: elongated core with one lid off-axis.
    "proteasome-like": dict(seed=8674, n_atoms=360, sigma=(0.028, 0.045), parts=[
        ((0.00, 0.00, -0.15), (0.17, 0.17, 0.40), (0, 0, 0), 0.55),
        ((0.10, 0.05, 0.32), (0.28, 0.20, 0.14), (30, 10, 0), 0.35),
        ((-0.22, 0.10, 0.40), (0.08, 0.10, 0.08), (0, 0, 0), 0.10)]),
    # MlaFEDB in nanodisc: flat disc with a cytoplasmic domain below, off-centre.
    "nanodisc-like": dict(seed=22116, n_atoms=300, sigma=(0.030, 0.045), parts=[
        ((0.00, 0.00, 0.15), (0.45, 0.40, 0.08), (0, 0, 0), 0.50),
        ((0.06, -0.04, -0.12), (0.20, 0.16, 0.20), (0, 10, 0), 0.38),
        ((-0.12, 0.15, -0.36), (0.10, 0.08, 0.08), (0, 0, 0), 0.12)]),
    # ISWI-nucleosome: a thick disc with a remodeller bound on one face.
    "nucleosome-like": dict(seed=9718, n_atoms=320, sigma=(0.030, 0.045), parts=[
        ((0.00, 0.00, -0.05), (0.33, 0.33, 0.17), (0, 90, 0), 0.60),
        ((0.28, 0.12, 0.20), (0.20, 0.14, 0.18), (30, 40, 0), 0.40)]),
    # TMEM16F dimer in a detergent micelle: two tilted subunits and a belt.
    "tmem16-like": dict(seed=20244, n_atoms=340, sigma=(0.030, 0.045), parts=[
        ((0.15, 0.00, 0.02), (0.12, 0.20, 0.36), (0, 12, 0), 0.38),
        ((-0.15, 0.02, 0.00), (0.12, 0.20, 0.36), (180, 14, 0), 0.38),
        ((0.00, 0.00, 0.10), (0.42, 0.30, 0.10), (0, 0, 0), 0.24)]),
    # L17-depleted 50S intermediate: one large subunit with stalks.
    "ribosome50s-like": dict(seed=8434, n_atoms=380, sigma=(0.030, 0.050), parts=[
        ((0.00, 0.00, 0.00), (0.36, 0.32, 0.28), (0, 0, 0), 0.78),
        ((0.34, 0.20, 0.18), (0.14, 0.07, 0.07), (30, 20, 0), 0.10),
        ((-0.30, 0.25, 0.20), (0.07, 0.07, 0.16), (0, 30, 0), 0.12)]),
}

SYNTHETIC_PRESETS = tuple(_PRESETS)


def synthetic_molecule(name: str = "trpv1-like", seed: int | None = None,
                       n_atoms: int | None = None, radius: float = 0.6) -> GaussianMolecule:
    """A preset pseudo-molecule (see ``SYNTHETIC_PRESETS``), deterministic for a given seed.

    Atoms are drawn uniformly inside a union of ellipsoids (the preset's shape), with widths
    uniform in the preset's σ range and weights uniform in [0.5, 1.5]; the molecule is then
    centred on its weighted centroid and scaled so that every centre lies within ``radius``
    of the origin (box [-1, 1]³).  Random placement makes it asymmetric.

    Parameters
    ----------
    name : str
        One of ``SYNTHETIC_PRESETS`` (``radsvd.data.molecules``), e.g. "trpv1-like".
    seed : int, optional
        Random seed; default the preset's own, so the same name gives the same molecule.
    n_atoms : int, optional
        Number of atoms; default the preset's.
    radius : float
        Largest distance of an atom centre from the origin (box units).

    Returns
    -------
    GaussianMolecule

    Examples
    --------
    >>> mol = radsvd.synthetic_molecule("trpv1-like", n_atoms=50)
    >>> mol.n_atoms, mol.name
    (50, 'trpv1-like')
    >>> bool(np.isclose(np.linalg.norm(mol.centers, axis=1).max(), 0.6))
    True
    """
    if name not in _PRESETS:
        raise InputError(f"unknown synthetic molecule {name!r}; choose one of "
                         f"{', '.join(SYNTHETIC_PRESETS)}")
    spec = _PRESETS[name]
    rng = np.random.default_rng(spec["seed"] if seed is None else seed)
    n = int(spec["n_atoms"] if n_atoms is None else n_atoms)
    if n < 1:
        raise InputError(f"n_atoms must be >= 1, got {n}")
    from radsvd.data.rotations import euler_to_rotation

    shares = np.array([p[3] for p in spec["parts"]])
    counts = rng.multinomial(n, shares / shares.sum())
    centers = []
    for (c0, axes, euler, _), m in zip(spec["parts"], counts):
        u = rng.standard_normal((m, 3))
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        u *= rng.random((m, 1)) ** (1.0 / 3.0)  # uniform in the unit ball
        Rp = euler_to_rotation(*euler)
        centers.append((u * np.asarray(axes)) @ Rp.T + np.asarray(c0))
    centers = np.concatenate(centers)
    lo, hi = spec["sigma"]
    sigmas = rng.uniform(lo, hi, n)
    weights = rng.uniform(0.5, 1.5, n)
    centers -= np.average(centers, axis=0, weights=weights)
    centers *= radius / np.max(np.linalg.norm(centers, axis=1))
    return GaussianMolecule(centers, sigmas, weights, name=name)
