"""Test volumes for the volume experiment (paper §4.10, Figs 9–12): honest imperfect
reconstructions of the reference, each randomly rotated.

Each volume: ``images_per_volume`` noisy projections of the reference at uniform random
poses (radsvd.data.simulate, no CTF, white noise at the dataset's SNR), reconstructed by
direct Fourier inversion (filtered back-projection with a finufft type-1 transform) from
poses perturbed by ``pose_error_deg``, and inserted with every pose pre-multiplied by a
random rotation G, which yields the reconstruction rotated by G (W(x) = V(Gᵀx)).

With plane normals uniform on S², ∫ f d³k = (1/2π) ∫ dn ∫_{n⊥} |k| f d²k, so
V(x) ≈ (2π)^-3 · (4π / 2π n_img) · π² Σ_{i,j} |k_ij| F_i(k_j) e^{+i k_ij·x}, where F_i is the
image's DFT on k = π m (DESIGN §2 units) and k_ij = G R_i' (k_x, k_y, 0).

TEMPORARY (workflow-side) until the volume layer exposes its test-volume generator.
Output npz: reference (N³), volumes (n, N³), rotations G (n, 3, 3), voxel_size.
"""

import numpy as np

from radsvd.data.io import read_mrc
from radsvd.data.preprocess import downsample_volume
from radsvd.data.rotations import random_rotations
from radsvd.data.simulate import simulate_particles
from wf_common import save_npz, setup

log = setup(snakemake)
cfg = snakemake.params.cfg
vcfg = cfg["volumes"]
reference, voxel = read_mrc(snakemake.input.reference)
N = int(vcfg["box"])
if reference.shape[0] > N:
    voxel *= reference.shape[0] / N
    reference = downsample_volume(reference, N)
elif reference.shape[0] < N:
    raise ValueError(f"volumes.box = {N} exceeds the reference map's box {reference.shape[0]}")
n_vol, n_img = int(vcfg["n_volumes"]), int(vcfg["images_per_volume"])
snr = float(cfg["synthetic"]["snr"])
sigma = np.radians(float(vcfg["pose_error_deg"]))
rng = np.random.default_rng(cfg["seed"] + 7919)
G = random_rotations(n_vol, rng)
dx = 2.0 / N
m = np.arange(N) - N // 2
kx, ky = np.meshgrid(np.pi * m, np.pi * m, indexing="xy")      # [iy, ix]: x = last axis
inside = np.hypot(kx, ky) <= np.pi * N / 2
kx, ky = kx[inside], ky[inside]
kabs = np.hypot(kx, ky)


def small_rotations(n, sigma, rng):
    """Rotations by angles ~ |N(0, σ)| about uniformly random axes (Rodrigues)."""
    axis = rng.normal(size=(n, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    ang = sigma * rng.normal(size=n)
    Kx = np.zeros((n, 3, 3))
    Kx[:, 0, 1], Kx[:, 0, 2], Kx[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    Kx = Kx - np.transpose(Kx, (0, 2, 1))
    s, c = np.sin(ang)[:, None, None], np.cos(ang)[:, None, None]
    return np.eye(3)[None] + s * Kx + (1 - c) * Kx @ Kx


def reconstruct(images, poses):
    import finufft

    from radsvd._jit import fft_workers

    F = dx ** 2 * np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(images, axes=(-2, -1))),
                                  axes=(-2, -1))
    c = (F[:, inside] * kabs[None]).ravel()
    pts = kx[None, :, None] * poses[:, None, :, 0] + ky[None, :, None] * poses[:, None, :, 1]
    pts = pts.reshape(-1, 3) * dx                                  # (kx, ky, kz)·dx
    vol = finufft.nufft3d1(np.ascontiguousarray(pts[:, 2]), np.ascontiguousarray(pts[:, 1]),
                           np.ascontiguousarray(pts[:, 0]), c.astype(np.complex128),
                           (N, N, N), isign=1, eps=1e-9, nthreads=fft_workers())
    scale = (2 * np.pi) ** -3 * (4 * np.pi / (2 * np.pi * len(images))) * np.pi ** 2
    return (vol.real * scale).astype(np.float64)


volumes = np.empty((n_vol, N, N, N))
for v in range(n_vol):
    imgs, table = simulate_particles(reference, n=n_img, N=N, pixel_size=voxel, snr=snr,
                                     seed=int(rng.integers(2**31)), ctf=False)
    from radsvd.data.rotations import euler_to_rotation

    poses = euler_to_rotation(table["rot"].to_numpy(), table["tilt"].to_numpy(),
                              table["psi"].to_numpy())
    noisy = poses @ small_rotations(n_img, sigma, rng)
    volumes[v] = reconstruct(imgs.astype(np.float64), G[v][None] @ noisy)
    rel = np.linalg.norm(volumes[v]) / np.linalg.norm(reference)
    log.info("volume %d/%d: %d images, pose error %.1f°, |W|/|V| = %.3f", v + 1, n_vol, n_img,
             np.degrees(sigma), rel)
save_npz(snakemake.output[0], reference=reference, volumes=volumes, rotations=G,
         voxel_size=voxel)
log.info("wrote %s", snakemake.output[0])
