"""Viewing-direction grids for templates.

Shell rule of the paper's reference code (``sample_shell_5(r, d, 'L')`` with r/d = K/(2π)):
with E = 3 + round(K) points on the equator, n_θ = 3 + round(E/2) Gauss–Legendre nodes in
cos θ on [-1, 1], and on the latitude θ_i, n_i = 3 + round(K sin θ_i) equispaced azimuths
φ = 2πj/n_i (j = 0 … n_i − 1).  round() is MATLAB's (halves away from zero).  Weights
w_i · 2π/n_i (w_i the Legendre weights) integrate over the unit sphere (they sum to 4π).
This reproduces the reference's counts 505 / 993 / 1639 / 2453 / 3427 at K = 32/48/64/80/96
(29 latitudes at K = 48).

A direction (θ, φ) becomes the pose R = Rz(φ) Ry(θ) Rz(ψ) (RELION rot = φ, tilt = θ, psi = ψ,
:mod:`radsvd.data.rotations`), whose third column is the viewing direction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from radsvd._validate import InputError
from radsvd.data.rotations import euler_to_rotation


def _round_half_away(x):
    x = np.asarray(x, dtype=np.float64)
    return (np.sign(x) * np.floor(np.abs(x) + 0.5)).astype(np.int64)


@dataclass(frozen=True)
class ViewingDirections:
    """Directions on the unit sphere: polar angle θ and azimuth φ (radians), weights."""

    polar: np.ndarray
    azimuth: np.ndarray
    weights: np.ndarray
    n_azimuth: np.ndarray | None = None  # azimuths per latitude (shell rule only)

    def __len__(self) -> int:
        return int(self.polar.size)

    @property
    def vectors(self) -> np.ndarray:
        """Unit vectors (n, 3), (x, y, z) = (sin θ cos φ, sin θ sin φ, cos θ)."""
        st = np.sin(self.polar)
        return np.stack([st * np.cos(self.azimuth), st * np.sin(self.azimuth),
                         np.cos(self.polar)], axis=1)

    def rotations(self, psi=0.0) -> np.ndarray:
        """Poses (n, 3, 3) R = Rz(φ) Ry(θ) Rz(ψ) (ψ in radians, a number or one per direction)."""
        return euler_to_rotation(self.azimuth, self.polar, psi, degrees=False)


def shell_directions(K: float) -> ViewingDirections:
    """The reference code's Gauss–Legendre shell rule at frequency K (993 directions at K = 48).

    Gauss–Legendre latitudes in cos θ, equispaced azimuths on each latitude (more towards the
    equator); the weights integrate functions on the unit sphere.

    Parameters
    ----------
    K : float
        Maximum frequency (box units), positive.

    Returns
    -------
    ViewingDirections
        ``polar`` θ, ``azimuth`` φ (radians) and ``weights``, one per direction;
        ``vectors`` (n, 3) and ``rotations()`` (n, 3, 3) give the unit vectors and poses.

    Examples
    --------
    >>> dirs = radsvd.shell_directions(48)
    >>> len(dirs)
    993
    >>> bool(np.isclose(dirs.weights.sum(), 4 * np.pi))     # area of the unit sphere
    True
    """
    if not (np.isfinite(K) and K > 0):
        raise InputError(f"shell_directions: K must be a positive number, got {K!r}")
    n_equator = 3 + int(_round_half_away(K))
    n_polar = 3 + int(_round_half_away(n_equator / 2.0))
    x, w = np.polynomial.legendre.leggauss(n_polar)
    polar_nodes = np.arccos(x)
    n_az = 3 + _round_half_away(K * np.sin(polar_nodes))
    polar, azimuth, weights = [], [], []
    for th, wi, m in zip(polar_nodes, w, n_az):
        polar.append(np.full(m, th))
        azimuth.append(2.0 * np.pi * np.arange(m) / m)
        weights.append(np.full(m, wi * 2.0 * np.pi / m))
    return ViewingDirections(np.concatenate(polar), np.concatenate(azimuth),
                             np.concatenate(weights), n_az)


def directions_from_angles(rot, tilt, psi=None, degrees: bool = True) -> np.ndarray:
    """Poses (n, 3, 3) from RELION Euler angles (e.g. the rlnAngle* columns of a STAR file)."""
    rot = np.atleast_1d(np.asarray(rot, np.float64))
    tilt = np.atleast_1d(np.asarray(tilt, np.float64))
    psi = np.zeros_like(rot) if psi is None else np.atleast_1d(np.asarray(psi, np.float64))
    if not (rot.shape == tilt.shape == psi.shape) or rot.ndim != 1:
        raise InputError(f"directions_from_angles: rot {rot.shape}, tilt {tilt.shape} and psi "
                         f"{psi.shape} must be 1-d arrays of one length")
    return euler_to_rotation(rot, tilt, psi, degrees=degrees)


def directions_from_star(path, n: int | None = None, with_psi: bool = True) -> np.ndarray:
    """Poses (n, 3, 3) from the rlnAngleRot/Tilt/Psi columns of a STAR file (first n rows)."""
    from radsvd.data.star import read_star

    table = read_star(path, require_ctf=False)
    missing = [c for c in ("rot", "tilt") if c not in table or table[c].isna().all()]
    if missing:
        raise InputError(f"{path}: no Euler angles in the particle table "
                         "(need rlnAngleRot and rlnAngleTilt)")
    if n is not None:
        table = table.iloc[: int(n)]
    psi = table["psi"].to_numpy() if with_psi and "psi" in table else None
    return directions_from_angles(table["rot"].to_numpy(), table["tilt"].to_numpy(), psi)
