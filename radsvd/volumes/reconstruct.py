"""Test volumes for the volume experiment (paper §4.10, Figs 9–12): honest, imperfect
reconstructions of one molecule, each randomly rotated.

Each volume is a direct Fourier inversion of a small set of simulated particle images of the
reference (:func:`radsvd.data.simulate.simulate_particles`: uniform random poses, white noise
at the given SNR, no CTF) using poses perturbed by small random rotations (angles
~ N(0, σ) about uniform axes), with every pose pre-multiplied by a random rotation G, which
yields the reconstruction rotated by G: W(x) ≈ V(Gᵀ x), i.e. Ŵ(k) = V̂(Gᵀ k).

Inversion: with plane normals uniform on S², ∫_{R³} f d³k = (1/2π) ∫_{S²} dn ∫_{n⊥} |k| f d²k,
so with the central-slice theorem (image DFT F_i(k) = V̂(R_i (k_x, k_y, 0)) on k = π m, in the
units of docs/design.md) and the n images as a Monte-Carlo rule over S² (4π/n each),

    V(x) ≈ (2π)^-3 · (1/2π) · (4π/n) · π² Σ_{i,j} |k_j| F_i(k_j) e^{+i k_ij·x},

k_ij = G R̃_i (k_x, k_y, 0) with the perturbed poses R̃_i, evaluated by one type-1 NUFFT
(finufft) onto the N³ grid.  Few images, noise, wrong poses and the Monte-Carlo angular rule
make each reconstruction a distinct, imperfect estimate of the molecule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from radsvd._validate import InputError, real_stack

__all__ = ["TestVolumes", "make_test_volumes", "direct_fourier_inversion", "small_rotations"]


def small_rotations(n: int, sigma: float, rng) -> np.ndarray:
    """n rotations by angles ~ N(0, σ) (radians) about uniformly random axes (Rodrigues)."""
    axis = rng.standard_normal((n, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    ang = sigma * rng.standard_normal(n)
    Kx = np.zeros((n, 3, 3))
    Kx[:, 0, 1], Kx[:, 0, 2], Kx[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    Kx = Kx - np.transpose(Kx, (0, 2, 1))
    s, c = np.sin(ang)[:, None, None], np.cos(ang)[:, None, None]
    return np.eye(3)[None] + s * Kx + (1 - c) * (Kx @ Kx)


def direct_fourier_inversion(images, poses, eps: float = 1e-9) -> np.ndarray:
    """Reconstruct a volume (N, N, N) from images (n, N, N) ([iy, ix]) with poses R_i (n, 3, 3)
    meaning F_i(k) = V̂(R_i (k_x, k_y, 0)) (the module docstring's formula)."""
    import finufft

    from radsvd._jit import fft_workers

    imgs = real_stack(images, "images", ndim=2)
    R = np.asarray(poses, dtype=np.float64)
    n, N = imgs.shape[0], imgs.shape[1]
    if R.shape != (n, 3, 3):
        raise InputError(f"poses: expected shape ({n}, 3, 3), got {R.shape}")
    dx = 2.0 / N
    m = np.arange(N) - N // 2
    kx, ky = np.meshgrid(np.pi * m, np.pi * m, indexing="xy")    # [iy, ix]: x = last axis
    inside = np.hypot(kx, ky) <= np.pi * N / 2
    kx, ky = kx[inside], ky[inside]
    F = dx ** 2 * np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(imgs, axes=(-2, -1))),
                                  axes=(-2, -1))
    c = (F[:, inside] * np.hypot(kx, ky)[None]).ravel().astype(np.complex128)
    pts = kx[None, :, None] * R[:, None, :, 0] + ky[None, :, None] * R[:, None, :, 1]
    pts = pts.reshape(-1, 3) * dx                                     # (kx, ky, kz)·dx
    vol = finufft.nufft3d1(np.ascontiguousarray(pts[:, 2]), np.ascontiguousarray(pts[:, 1]),
                           np.ascontiguousarray(pts[:, 0]), c, (N, N, N), isign=1, eps=eps,
                           nthreads=fft_workers())
    scale = (2 * np.pi) ** -3 * (1 / (2 * np.pi)) * (4 * np.pi / n) * np.pi ** 2
    return np.ascontiguousarray(vol.real * scale)


@dataclass
class TestVolumes:
    """volumes (n, N, N, N); rotations G (n, 3, 3) with volumes[i](x) ≈ reference(G_iᵀ x), so
    the rotation that aligns volume i onto the reference is G_iᵀ; plus the settings used."""

    __test__ = False  # not a pytest class

    volumes: np.ndarray
    rotations: np.ndarray
    images_per_volume: int
    snr: float | None
    pose_error_deg: float
    seed: int


def make_test_volumes(reference, n_volumes: int, images_per_volume: int = 200,
                      snr: float | None = 0.1, pose_error_deg: float = 3.0,
                      voxel_size: float = 1.0, seed: int = 0, progress=None) -> TestVolumes:
    """``n_volumes`` imperfect reconstructions of ``reference`` (N³ map), each randomly rotated
    (see the module docstring).  ``progress``: optional callable(i, n) after each volume."""
    from radsvd.rotations import euler_to_rotation, random_rotations
    from radsvd.data.simulate import simulate_particles

    ref = real_stack(reference, "reference", ndim=3)
    if ref.shape[0] != 1:
        raise InputError("reference: expected one map, not a stack")
    ref = ref[0]
    for name, val in (("n_volumes", n_volumes), ("images_per_volume", images_per_volume)):
        if isinstance(val, bool) or int(val) != val or val < 1:
            raise InputError(f"{name} must be a positive integer, got {val!r}")
    if not (np.isfinite(pose_error_deg) and pose_error_deg >= 0):
        raise InputError(f"pose_error_deg must be >= 0, got {pose_error_deg!r}")
    N = ref.shape[0]
    rng = np.random.default_rng(seed)
    G = random_rotations(int(n_volumes), rng)
    sigma = np.radians(float(pose_error_deg))
    vols = np.empty((int(n_volumes), N, N, N))
    for v in range(int(n_volumes)):
        imgs, table = simulate_particles(ref, n=int(images_per_volume), N=N,
                                         pixel_size=float(voxel_size), snr=snr,
                                         seed=int(rng.integers(2 ** 31)), ctf=False)
        poses = euler_to_rotation(table["rot"].to_numpy(), table["tilt"].to_numpy(),
                                  table["psi"].to_numpy())
        used = G[v][None] @ poses @ small_rotations(len(poses), sigma, rng)
        vols[v] = direct_fourier_inversion(imgs.astype(np.float64), used)
        if progress is not None:
            progress(v + 1, int(n_volumes))
    return TestVolumes(volumes=vols, rotations=G, images_per_volume=int(images_per_volume),
                       snr=snr, pose_error_deg=float(pose_error_deg), seed=int(seed))
