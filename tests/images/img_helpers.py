"""Closed-form Gaussian-blob images for the 2D tests (independent oracles).

A blob: amp · exp(-½ (u²/sx² + v²/sy²)), (u, v) = R_{-θ}(x - c).  Its continuous Fourier
transform Â(k) = amp · 2π sx sy · e^{-i k·c} · exp(-½ (k_u² sx² + k_v² sy²)),
k_u = kx cosθ + ky sinθ, k_v = -kx sinθ + ky cosθ.  Rotating the image counter-clockwise by γ
about the origin (pixel N//2) maps c → R_γ c and θ → θ + γ.
"""

import numpy as np


def random_blobs(rng, n=5, rmax=0.5, smin=0.08, smax=0.16):
    r = rmax * np.sqrt(rng.random(n))
    t = 2 * np.pi * rng.random(n)
    return [dict(amp=rng.uniform(0.5, 1.5), cx=r[i] * np.cos(t[i]), cy=r[i] * np.sin(t[i]),
                 sx=rng.uniform(smin, smax), sy=rng.uniform(smin, smax),
                 th=np.pi * rng.random()) for i in range(n)]


def rotate_blobs(blobs, gamma):
    c, s = np.cos(gamma), np.sin(gamma)
    return [dict(b, cx=c * b["cx"] - s * b["cy"], cy=s * b["cx"] + c * b["cy"],
                 th=b["th"] + gamma) for b in blobs]


def image(blobs, N):
    """Pixel image img[iy, ix] at x_n = (n - N//2)·2/N."""
    x = (np.arange(N) - N // 2) * (2.0 / N)
    X, Y = np.meshgrid(x, x)
    img = np.zeros((N, N))
    for b in blobs:
        u = (X - b["cx"]) * np.cos(b["th"]) + (Y - b["cy"]) * np.sin(b["th"])
        v = -(X - b["cx"]) * np.sin(b["th"]) + (Y - b["cy"]) * np.cos(b["th"])
        img += b["amp"] * np.exp(-0.5 * (u * u / b["sx"] ** 2 + v * v / b["sy"] ** 2))
    return img


def fourier(blobs, kx, ky):
    """Closed-form Â(kx, ky) (continuous transform)."""
    out = np.zeros(np.broadcast(kx, ky).shape, dtype=complex)
    for b in blobs:
        ku = kx * np.cos(b["th"]) + ky * np.sin(b["th"])
        kv = -kx * np.sin(b["th"]) + ky * np.cos(b["th"])
        out += (b["amp"] * 2 * np.pi * b["sx"] * b["sy"] * np.exp(-1j * (kx * b["cx"] + ky * b["cy"]))
                * np.exp(-0.5 * (ku * ku * b["sx"] ** 2 + kv * kv * b["sy"] ** 2)))
    return out


def naive_landscape_polar(pa, pb, grid):
    """Brute force X(γ_m) = Σ_r w_r Δψ Σ_j conj(Â(k_r, ψ_j)) B̂(k_r, ψ_j − γ_m) (eq. 25, 33)."""
    X = np.empty((pa.shape[0], pb.shape[0], grid.Q))
    for m in range(grid.Q):
        X[:, :, m] = np.einsum("r,arj,brj->ab", grid.w * grid.dpsi, pa.conj(),
                               np.roll(pb, m, axis=-1)).real
    return X


def naive_metrics(X, XH):
    """Reference metrics from whole arrays (pairs, angles)."""
    rel = np.linalg.norm(XH - X) / np.linalg.norm(X)
    corr = np.corrcoef(X.ravel(), XH.ravel())[0, 1]
    f = []
    for p in range(X.shape[0]):
        j = int(np.argmax(XH[p]))
        f.append(np.mean(X[p] <= X[p, j]))
    return rel, corr, float(np.mean(f))
