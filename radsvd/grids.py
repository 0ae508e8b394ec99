"""Quadrature rules and the polar Fourier grid (paper §2.3, eq. 33–34).

Units (docs/design.md): the N-pixel box maps to [-1, 1]^d, dx = 2/N, pixel index N//2 is the
origin; frequencies k are in radians per unit length of that box, so Nyquist is πN/2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.special import roots_jacobi

from radsvd._validate import MAX_BOX, MAX_NODES, InputError, frequency, frequency_for_box


def radial_quadrature(K: float, R: int, dim: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Jacobi nodes and weights on [0, K] for the weight k^(dim-1) dk (eq. 33).

    ``sum(w * g(k))`` equals ``∫_0^K g(k) k^(dim-1) dk`` exactly for polynomials g of degree
    at most 2R - 1.

    Parameters
    ----------
    K : float
        Maximum frequency (box units, Nyquist πN/2).
    R : int
        Number of nodes.
    dim : {1, 2, 3}
        2 for the image rule (k dk), 3 for the volume rule (k² dk).

    Returns
    -------
    k, w : ndarray
        Nodes in (0, K) and weights, shape (R,) each.

    Examples
    --------
    >>> k, w = radsvd.radial_quadrature(K=4.0, R=3)
    >>> bool(np.isclose(np.sum(w * k**2), 4.0**4 / 4))    # ∫_0^4 k² · k dk
    True
    """
    K = frequency(K)
    _count(R, "R")
    if dim not in (1, 2, 3):
        raise InputError(f"dim must be 1, 2 or 3, got {dim!r}")
    x, w = roots_jacobi(int(R), 0.0, float(dim - 1))  # weight (1-x)^0 (1+x)^(dim-1)
    k = 0.5 * K * (1.0 + x)
    weights = w * (0.5 * K) ** dim
    return k.astype(np.float64), weights.astype(np.float64)


def _count(n, name: str) -> int:
    """A positive integer count (R, Q, L) up to MAX_NODES, else InputError."""
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, float, np.integer, np.floating)) \
            or not np.isfinite(n) or int(n) != n or n < 1:
        raise InputError(f"{name} must be a positive integer, got {n!r}")
    if n > MAX_NODES:
        raise InputError(f"{name} = {int(n)} is beyond {MAX_NODES}, more than any grid up to the "
                         f"Nyquist frequency of a {MAX_BOX}-pixel box needs")
    return int(n)


def default_R(K: float) -> int:
    """The reference code's radial node count, R = 1 + ceil(K) (K = 48 → 49)."""
    return 1 + int(math.ceil(K))


def default_Q(K: float) -> int:
    """The reference code's angular node count, Q = 2 (round(K) + 1) (K = 48 → 98)."""
    return 2 * (int(round(K)) + 1)


@dataclass(frozen=True)
class PolarGrid:
    """Polar quadrature grid on the disc of radius K: R rings × Q equispaced angles.

    Parameters
    ----------
    K : float
        Maximum frequency in box units (the paper's K = 48; Nyquist is πN/2).
    R : int, optional
        Number of rings (default 1 + ceil(K)).
    Q : int, optional
        Angles per ring, even (default 2 (round(K) + 1)).

    Attributes
    ----------
    k, w : ndarray
        Radial nodes and weights for k dk (eq. 33).
    psi : ndarray
        ψ_j = 2πj/Q.
    eta : ndarray
        The noise-whitening factors η_r = sqrt(w_r Δψ) of eq. 71.

    Examples
    --------
    >>> grid = radsvd.PolarGrid(K=48)
    >>> grid.R, grid.Q, grid.n_freq
    (49, 98, 50)
    """

    K: float = 48.0
    R: int | None = None
    Q: int | None = None
    k: np.ndarray = field(init=False, repr=False, compare=False)
    w: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        K = frequency(self.K)  # before any size is derived from it
        R = default_R(K) if self.R is None else _count(self.R, "R")
        Q = default_Q(K) if self.Q is None else _count(self.Q, "Q")
        if Q < 2 or Q % 2:
            raise InputError(f"Q must be a positive even integer (Q = 2(L+1)), got {Q!r}")
        k, w = radial_quadrature(K, R, dim=2)
        object.__setattr__(self, "K", float(self.K))
        object.__setattr__(self, "R", int(R))
        object.__setattr__(self, "Q", int(Q))
        object.__setattr__(self, "k", k)
        object.__setattr__(self, "w", w)

    @property
    def dpsi(self) -> float:
        return 2.0 * np.pi / self.Q

    @property
    def psi(self) -> np.ndarray:
        return self.dpsi * np.arange(self.Q)

    @property
    def gamma(self) -> np.ndarray:
        """Rotation angles γ_j = 2πj/Q of the landscape grid (eq. 35)."""
        return self.psi

    @property
    def eta(self) -> np.ndarray:
        """η_r = sqrt(w_r Δψ) (eq. 71): makes the noise on every ring the same variance."""
        return np.sqrt(self.w * self.dpsi)

    @property
    def n_freq(self) -> int:
        """Number of angular frequencies q = 0 … Q/2 kept for real images."""
        return self.Q // 2 + 1

    def check_box(self, N: int) -> None:
        """Raise InputError if K exceeds the Nyquist frequency πN/2 of an N-pixel box."""
        frequency_for_box(self.K, N)

    def points(self) -> tuple[np.ndarray, np.ndarray]:
        """Cartesian frequencies (kx, ky) of the grid nodes, shape (R, Q) each; ψ = 0 is +x."""
        kx = self.k[:, None] * np.cos(self.psi)[None, :]
        ky = self.k[:, None] * np.sin(self.psi)[None, :]
        return kx, ky
