"""Rotations: the RELION ZYZ Euler convention and uniform random poses on SO(3).

Convention (used by the whole data layer).  A *pose* is a rotation matrix R whose columns are,
in the molecule frame, the image x axis, the image y axis and the viewing direction:

    template for pose R:   P(x, y) = ∫ V(R (x, y, z)) dz,   P̂(kx, ky) = V̂(R (kx, ky, 0)),

i.e. the projection along z of the volume rotated by R^T (V'(x) = V(R x)).  RELION's Euler
angles (rot, tilt, psi), ZYZ, in degrees, give R = Rz(rot) Ry(tilt) Rz(psi) (active rotations),
which is the transpose of RELION's ``Euler_angles2matrix`` matrix A; R e_z = (sin tilt cos rot,
sin tilt sin rot, cos tilt) is the viewing direction.

A ground-layer module: the data layer (poses, projections) and the volume engine (Euler
angles of alignments, :mod:`radsvd.volumes.wigner`) both import it.  The former path
``radsvd.data.rotations`` re-exports it.
"""

from __future__ import annotations

import numpy as np

from radsvd._validate import InputError


def _rz(a):
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1),
                     np.stack([z, z, o], -1)], -2)


def _ry(a):
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1),
                     np.stack([-s, z, c], -1)], -2)


def euler_to_rotation(rot, tilt, psi, degrees: bool = True) -> np.ndarray:
    """Pose matrices R = Rz(rot) Ry(tilt) Rz(psi) from RELION Euler angles; shape (..., 3, 3)."""
    rot, tilt, psi = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64)
                                           for a in (rot, tilt, psi)))
    if not (np.all(np.isfinite(rot)) and np.all(np.isfinite(tilt)) and np.all(np.isfinite(psi))):
        raise InputError("euler_to_rotation: Euler angles contain NaN or inf")
    if degrees:
        rot, tilt, psi = np.deg2rad(rot), np.deg2rad(tilt), np.deg2rad(psi)
    return _rz(rot) @ _ry(tilt) @ _rz(psi)


def rotation_to_euler(R, degrees: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of :func:`euler_to_rotation`: (rot, tilt, psi) with tilt in [0, 180] degrees.

    At tilt = 0 or 180 only rot ± psi is defined; psi is then set to 0.
    """
    R = np.asarray(R, dtype=np.float64)
    if R.shape[-2:] != (3, 3):
        raise InputError(f"rotation_to_euler: expected (..., 3, 3) matrices, got {R.shape}")
    tilt = np.arccos(np.clip(R[..., 2, 2], -1.0, 1.0))
    st = np.sin(tilt)
    regular = st > 1e-9
    rot = np.where(regular, np.arctan2(R[..., 1, 2], R[..., 0, 2]), 0.0)
    psi = np.where(regular, np.arctan2(R[..., 2, 1], -R[..., 2, 0]), 0.0)
    # degenerate: R = Rz(rot ± psi) (up to the tilt=π flip); put everything in rot
    degenerate_rot = np.where(R[..., 2, 2] > 0, np.arctan2(R[..., 1, 0], R[..., 0, 0]),
                              np.arctan2(-R[..., 1, 0], -R[..., 0, 0]))
    rot = np.where(regular, rot, degenerate_rot)
    if degrees:
        return np.rad2deg(rot), np.rad2deg(tilt), np.rad2deg(psi)
    return rot, tilt, psi


def random_rotations(n: int, rng=None) -> np.ndarray:
    """n rotations drawn uniformly (Haar measure) on SO(3), from unit quaternions; (n, 3, 3)."""
    if int(n) != n or n < 0:
        raise InputError(f"random_rotations: n must be a non-negative integer, got {n!r}")
    rng = np.random.default_rng(rng)
    q = rng.standard_normal((int(n), 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return quaternion_to_rotation(q)


def quaternion_to_rotation(q) -> np.ndarray:
    """Rotation matrices from unit quaternions (w, x, y, z); shape (..., 3, 3)."""
    q = np.asarray(q, dtype=np.float64)
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def as_rotations(R, name: str = "rotation") -> np.ndarray:
    """Validate a stack of rotation matrices (n, 3, 3) (a single matrix becomes a stack of one)."""
    a = np.asarray(R, dtype=np.float64)
    if a.shape == (3, 3):
        a = a[None]
    if a.ndim != 3 or a.shape[1:] != (3, 3):
        raise InputError(f"{name}: expected rotation matrices of shape (n, 3, 3), got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise InputError(f"{name}: contains NaN or inf")
    err = np.abs(a @ np.swapaxes(a, 1, 2) - np.eye(3)).max(initial=0.0)
    if err > 1e-6 or np.any(np.linalg.det(a) < 0):
        raise InputError(f"{name}: not proper rotation matrices (orthogonality error {err:.2g} "
                         "or negative determinant)")
    return np.ascontiguousarray(a)
