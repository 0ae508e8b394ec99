"""A map from posed particles: direct Fourier inversion with CTF weighting and Wiener
regularisation, streamed over particles (the field's check of poses: ``radsvd reconstruct``).

Particle i with pose R_i (RELION (rot, tilt, psi), R = Rz(rot) Ry(tilt) Rz(psi), docs/design.md),
origin o_i (Å; the particle sits at −o_i) and CTF c_i satisfies, on the DFT grid k = π m of the
N-pixel box (units of docs/design.md),

    F_i(k) e^{−i k·o_i} ≈ c_i(k) V̂(R_i (kx, ky, 0))   (o_i in box units),

so with the sums over all particles and pixels inside the Nyquist circle

    b(x) = Σ c_i F_i e^{−i k·o_i} e^{+i R_i k·x},   w(x) = Σ c_i² e^{+i R_i k·x}

on the 2N³ grid x_n = n dx, n ∈ [−N, N) (two type-1 NUFFTs per chunk, finufft, accumulated:
memory O(N³), independent of the number of particles).  Times the triangle window
t(x) = Π_d (1 − |x_d| / (N dx)), their DFTs B̂(K), Ŵ(K) on the twice finer Fourier grid are
the data and the CTF² spread by one nonnegative (Fejér) kernel, and

    V̂(K) = B̂(K) / (Ŵ(K) + λ),   λ = wiener · mean(Ŵ inside the Nyquist sphere)

is the Wiener estimate (λ ~ 1/SNR), zero outside the Nyquist sphere; its inverse DFT, divided
by t (the gridding correction) and cropped to the central N³, is the map.  The NUFFTs run single-threaded: the result is bitwise the same for
any thread count.  Reading particles and poses from a STAR file:
:func:`radsvd.images.reconstruct.reconstruct_star` (this engine does not import the data layer).
"""

from __future__ import annotations

import numpy as np

from radsvd._validate import InputError

__all__ = ["Reconstructor", "DEFAULT_WIENER"]

DEFAULT_WIENER = 1e-3


class Reconstructor:
    """Accumulates particles (:meth:`add`) into the sums b, w; :meth:`volume` divides."""

    def __init__(self, N: int, pixel_size: float, eps: float = 1e-7):
        if int(N) != N or N < 4 or N % 2:
            raise InputError(f"reconstruct: the box must be an even number >= 4, got {N!r}")
        self.N, self.p, self.eps = int(N), float(pixel_size), float(eps)
        self.b = np.zeros((2 * self.N,) * 3, np.complex128)
        self.w = np.zeros((2 * self.N,) * 3, np.complex128)
        m = np.arange(self.N) - self.N // 2
        kx, ky = np.meshgrid(np.pi * m, np.pi * m, indexing="xy")        # [iy, ix]
        self.inside = np.hypot(kx, ky) <= np.pi * self.N / 2
        self.kx, self.ky = kx[self.inside], ky[self.inside]
        self.count = 0

    def add(self, images, rotations, shift_A, ctf) -> None:
        """Add images (n, N, N) [iy, ix] with poses (n, 3, 3), RELION origins (n, 2) Å and
        CTFs (n, N, N) on the centred DFT grid (or None)."""
        import finufft

        imgs = np.asarray(images, np.float64)
        n, N = imgs.shape[0], self.N
        if imgs.shape[1:] != (N, N):
            raise InputError(f"reconstruct: images are {imgs.shape[1:]}, expected ({N}, {N})")
        dx = 2.0 / N
        F = dx ** 2 * np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(imgs, axes=(-2, -1))),
                                      axes=(-2, -1))[:, self.inside]
        o = np.asarray(shift_A, np.float64) * (2.0 / (N * self.p))
        F *= np.exp(-1j * (o[:, 0:1] * self.kx + o[:, 1:2] * self.ky))
        c = np.ones_like(F.real) if ctf is None else np.asarray(ctf)[:, self.inside]
        R = np.asarray(rotations, np.float64)
        pts = (self.kx[None, :, None] * R[:, None, :, 0]
               + self.ky[None, :, None] * R[:, None, :, 1]).reshape(-1, 3) * dx
        z, y, x = (np.ascontiguousarray(pts[:, d]) for d in (2, 1, 0))
        plan = finufft.Plan(1, (2 * N,) * 3, n_trans=2, eps=self.eps, isign=1, nthreads=1)
        plan.setpts(z, y, x)
        out = plan.execute(np.stack([(c * F).ravel(), (c * c).ravel().astype(np.complex128)]))
        self.b += out[0]
        self.w += out[1]
        self.count += n

    def volume(self, wiener: float = DEFAULT_WIENER) -> np.ndarray:
        """The Wiener-regularised map (N³, float64) from the particles added so far."""
        if self.count == 0:
            raise InputError("reconstruct: no particles were added")
        if not (np.isfinite(wiener) and wiener >= 0):
            raise InputError(f"wiener must be >= 0, got {wiener!r}")
        N, dx = self.N, 2.0 / self.N
        t = 1.0 - np.abs(np.arange(2 * N) - N) / N        # triangle window: Fejér kernel ≥ 0
        window = t[:, None, None] * t[None, :, None] * t[None, None, :]
        B = np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(self.b * window)))
        W = np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(self.w * window))).real
        K = np.pi / 2 * (np.arange(2 * N) - N)     # Fourier grid of the 2N box: spacing π/2
        r = np.sqrt(K[:, None, None] ** 2 + K[None, :, None] ** 2 + K[None, None, :] ** 2)
        sphere = r <= np.pi * N / 2
        lam = wiener * W[sphere].mean()
        V = np.where(sphere, B / (np.maximum(W, 0.0) + lam), 0.0)
        v = np.fft.fftshift(np.fft.ifftn(np.fft.ifftshift(V))).real / dx ** 3
        c = N // 2
        crop = (slice(c, c + N),) * 3
        return np.ascontiguousarray(v[crop] / window[crop])

