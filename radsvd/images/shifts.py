"""Translations on the polar grid (paper §5, eq. 118–121): shift sets, phases, refinement and
the translation-aware radial kernels.

Convention.  T_δ moves an image's density by +δ: (T_δ A)(x) = A(x − δ), so on the polar grid it
is the pointwise phase e^{−i k·δ} = e^{−i k_r (δx cos ψ_j + δy sin ψ_j)} (δ in box units,
δ = δ_px · 2/N; x the last array axis, y the first).  The landscape with shifts is
    X(γ, δ; A, B) = <Â, T_δ R_γ B̂> = <T_{−δ} Â, R_γ B̂>,
so the engine multiplies the IMAGE's polar samples by e^{+i k·δ} (the image moved by −δ) and
runs the rotation-only contraction on the result: the image is the target rotated by γ, then
translated by +δ.  Shifted images stay real, so their Fourier–Bessel coefficients keep
a(k, −q) = (−1)^q conj(a(k, q)) and q = 0 … Q/2 still suffice.

Shift sets: the grid points (i, j)·step with i² + j² ≤ (max_shift/step)², ordered by radius,
then y, then x (the zero shift first): 49 shifts for max_shift = 4, step = 1.

Kernels:
- :func:`shift_kernel` — eq. 118 for a discrete, weighted shift set and the targets given,
  averaged over targets (eq. 85); with the zero shift alone it is :func:`radial_kernel`;
- :func:`gaussian_shift_kernel` — eq. 119–121 for an isotropic Gaussian σ_δ and targets
  uniform over SO(3), from the map's shell coefficients
  (:func:`radsvd.volumes.shells.map_shells`).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft

from radsvd._validate import InputError, finite_array, grid_of
from radsvd.grids import PolarGrid
from radsvd.images._radial import fb_stack, gram, polar_samples, pool_ctf

__all__ = ["shift_grid", "check_shift_options", "shift_phases", "refine_poses", "shift_kernel",
           "gaussian_shift_kernel", "gaussian_E_plus", "gaussian_E_minus"]


# ----------------------------------------------------------------------------- shift sets
def check_shift_options(max_shift, shift_step, box: int | None = None) -> tuple[float, float]:
    """Validate (max_shift, shift_step) in pixels; ``box`` (N) bounds max_shift by N/2."""
    try:
        m = float(max_shift)
        s = float(shift_step)
    except (TypeError, ValueError):
        raise InputError(f"max_shift and shift_step must be numbers of pixels, got "
                         f"{max_shift!r} and {shift_step!r}") from None
    if not (math.isfinite(m) and m >= 0):
        raise InputError(f"max_shift must be a finite number >= 0 (pixels), got {max_shift!r}")
    if m == 0:
        return 0.0, s if (math.isfinite(s) and s > 0) else 1.0
    if not (math.isfinite(s) and s > 0):
        raise InputError(f"shift_step must be a finite number > 0 (pixels), got {shift_step!r}")
    if s > m:
        raise InputError(f"shift_step = {s:g} px is larger than max_shift = {m:g} px: the disc "
                         "would hold only the zero shift; lower the step or raise max_shift")
    if box is not None and m > box / 2:
        raise InputError(f"max_shift = {m:g} px is beyond half the box ({box} px / 2 = "
                         f"{box / 2:g} px)")
    return m, s


def shift_grid(max_shift: float, shift_step: float = 1.0, box: int | None = None) -> np.ndarray:
    """The shift set (n, 2) = (sx, sy) in pixels: grid points of ``shift_step`` in the disc of
    radius ``max_shift``, ordered by radius, then y, then x (the zero shift first)."""
    m, s = check_shift_options(max_shift, shift_step, box)
    if m == 0:
        return np.zeros((1, 2))
    n = int(math.floor(m / s + 1e-9))
    i = np.arange(-n, n + 1)
    ix, iy = np.meshgrid(i, i)
    ix, iy = ix.ravel(), iy.ravel()
    r2 = ix * ix + iy * iy
    keep = r2 * s * s <= m * m * (1 + 1e-12)
    ix, iy, r2 = ix[keep], iy[keep], r2[keep]
    order = np.lexsort((ix, iy, r2))
    return np.stack([ix[order] * s, iy[order] * s], axis=1).astype(np.float64)


def _to_box(shifts_px, box: int) -> np.ndarray:
    return np.asarray(shifts_px, np.float64) * (2.0 / box)


def shift_phases(grid: PolarGrid, shifts_px, box: int, sign: float = +1.0) -> np.ndarray:
    """e^{sign·i k·δ} on the polar grid for every shift, shape (n_shift, R, Q) complex128.

    sign = +1 moves an image by −δ (the engine's image side), −1 applies T_δ."""
    d = _to_box(shifts_px, box)
    kx, ky = grid.points()
    return np.exp(sign * 1j * (d[:, 0, None, None] * kx[None] + d[:, 1, None, None] * ky[None]))


# ----------------------------------------------------------------------------- refinement
def _rotated(b_full: np.ndarray, qs: np.ndarray, Q: int, gamma: np.ndarray, order: int):
    """∂^order/∂γ^order of (R_γ B)(k_r, ψ_j) = Σ_q b_q e^{iq(ψ_j − γ)}, (n, R, Q).

    b_full in FFT order (all Q frequencies); the q = Q/2 term uses cos(Qγ/2) (its value on the
    grid γ_j, real for real images), as the engine's trigonometric polynomial does."""
    g = gamma[:, None, None]
    fac = np.exp(-1j * qs[None, None, :] * g) * (-1j * qs[None, None, :]) ** order
    h = Q // 2
    c, s = np.cos(h * g[..., 0]), np.sin(h * g[..., 0])
    fac[..., h] = [c, -h * s, -h * h * c][order]
    return scipy.fft.ifft(b_full * fac, axis=-1, workers=1) * Q


def refine_poses(fb_a, fb_b, grid: PolarGrid, gamma0, shift0_px, box: int, step_px: float,
                 iterations: int = 8):
    """Off-grid (γ, δ) of each pair near a grid maximum: Newton in (γ, δx, δy) on
    X(γ, δ) = Δψ Σ_{r,j} w_r conj(Â) e^{−i k·δ} R_γ B̂ (eq. 23 in γ, its analogue in δ).

    fb_a, fb_b: (n, R, Q//2+1) coefficients of each image and of its (projected, see
    :mod:`radsvd.images.align`) target; gamma0 (n,), shift0_px (n, 2) the grid maximum.
    Steps stay within ±Δγ and ±step_px of the start; the best point met is kept, so the value
    never drops below the grid value.  Returns (gamma (n,), shift_px (n, 2), value (n,)).
    """
    Q = grid.Q
    n = fb_a.shape[0]
    A = polar_samples(fb_a, Q)
    b_full = np.fft.fft(polar_samples(fb_b, Q), axis=-1) / Q
    qs = np.fft.fftfreq(Q, 1.0 / Q)
    qs[Q // 2] = Q // 2
    kx, ky = grid.points()
    wA = np.conj(A) * (grid.w[:, None] * grid.dpsi)
    scale = 2.0 / box
    g0 = np.asarray(gamma0, np.float64).copy()
    d0 = np.asarray(shift0_px, np.float64) * scale
    dg, dd = 2 * np.pi / Q, step_px * scale
    g, d = g0.copy(), d0.copy()
    best_g, best_d, best_v = g0.copy(), d0.copy(), np.full(n, -np.inf)
    active = np.ones(n, bool)
    for it in range(iterations + 1):
        c = wA * np.exp(-1j * (d[:, 0, None, None] * kx + d[:, 1, None, None] * ky))
        G0 = _rotated(b_full, qs, Q, g, 0)
        val = np.einsum("nrj,nrj->n", c, G0).real
        better = active & (val > best_v)
        best_v[better], best_g[better], best_d[better] = val[better], g[better], d[better]
        if it == iterations or not active.any():
            break
        G1 = _rotated(b_full, qs, Q, g, 1)
        G2 = _rotated(b_full, qs, Q, g, 2)
        cx, cy = c * (-1j * kx), c * (-1j * ky)
        grad = np.stack([np.einsum("nrj,nrj->n", c, G1).real,
                         np.einsum("nrj,nrj->n", cx, G0).real,
                         np.einsum("nrj,nrj->n", cy, G0).real], axis=1)
        Hm = np.empty((n, 3, 3))
        Hm[:, 0, 0] = np.einsum("nrj,nrj->n", c, G2).real
        Hm[:, 0, 1] = Hm[:, 1, 0] = np.einsum("nrj,nrj->n", cx, G1).real
        Hm[:, 0, 2] = Hm[:, 2, 0] = np.einsum("nrj,nrj->n", cy, G1).real
        Hm[:, 1, 1] = np.einsum("nrj,nrj->n", cx * (-1j * kx), G0).real
        Hm[:, 1, 2] = Hm[:, 2, 1] = np.einsum("nrj,nrj->n", cx * (-1j * ky), G0).real
        Hm[:, 2, 2] = np.einsum("nrj,nrj->n", cy * (-1j * ky), G0).real
        # Newton only where X is locally concave (negative definite Hessian)
        concave = np.all(np.linalg.eigvalsh(Hm) < 0, axis=1)
        active &= concave
        step = np.zeros((n, 3))
        if active.any():
            step[active] = -np.linalg.solve(Hm[active], grad[active][..., None])[..., 0]
        g = np.clip(g + step[:, 0], g0 - dg, g0 + dg)
        d = np.clip(d + step[:, 1:], d0 - dd, d0 + dd)
        active &= np.abs(step).max(axis=1) > 1e-13
    return best_g % (2 * np.pi), best_d / scale, best_v


# ----------------------------------------------------------------------------- kernels
def _shift_weights(shifts_px, weights) -> tuple[np.ndarray, np.ndarray]:
    s = finite_array(shifts_px, "shifts", dtype=np.float64)
    if s.ndim != 2 or s.shape[1] != 2 or s.shape[0] == 0:
        raise InputError(f"shifts: expected shape (n, 2) = (sx, sy) pixels, got {s.shape}")
    if weights is None:
        w = np.full(s.shape[0], 1.0 / s.shape[0])
    else:
        w = finite_array(weights, "shift weights", dtype=np.float64).ravel()
        if w.shape != (s.shape[0],) or np.any(w < 0) or w.sum() <= 0:
            raise InputError(f"shift weights: need {s.shape[0]} non-negative numbers with a "
                             "positive sum")
        w = w / w.sum()
    return s, w


def _ring_mean_phase(dk: np.ndarray, d: np.ndarray, w: np.ndarray, grid: PolarGrid):
    """(1/Q) Σ_j Σ_s w_s e^{i dk ê_j·δ_s} for an array of dk (real: ê_j and −ê_j pair up).

    Jacobi–Anger: the mean over Q equispaced ψ_j of e^{ix cos(ψ_j − φ)} is
    Σ_{m ≡ 0 (mod Q)} i^m J_m(x) e^{−imφ} = J_0(x) + 2 Σ_{p≥1} i^{pQ} J_{pQ}(x) cos(pQφ); for
    x ≤ Q/4 the terms p ≥ 1 are below (e/4)^Q/√Q ≪ 1e-16 (J_n(x) ≤ (x/2)^n/n!), so
    Σ_s w_s J_0(dk |δ_s|) is exact to rounding.  Larger x: the explicit mean over ψ_j.
    """
    from scipy.special import j0

    rad = np.hypot(d[:, 0], d[:, 1])
    if np.abs(dk).max(initial=0.0) * rad.max(initial=0.0) <= grid.Q / 4:
        return np.tensordot(j0(dk[..., None] * rad), w, axes=(-1, 0))
    proj = d @ np.stack([np.cos(grid.psi), np.sin(grid.psi)])
    out = np.zeros(dk.shape)
    for ws, ps in zip(w, proj):
        out += ws * np.cos(dk[..., None] * ps).mean(axis=-1)
    return out


def shift_kernel(fb_targets, grid: PolarGrid, shifts_px, box: int, *, weights=None, ctf=None,
                 group_sizes=None) -> np.ndarray:
    """Radial kernel of eq. 118 for a discrete shift set, averaged over the targets (eq. 85).

    ½ E|u^T[T_δ R_γ B − T_δ' R_γ' B]|² over independent (δ, γ), (δ', γ') (δ from the weighted
    set, γ uniform) is u^T C u with, writing Φ(κ) = Σ_s w_s e^{iκ·δ_s} for the characteristic
    function of the shift set, φ_rj = Φ(−k_r ê_j) and b̃ = η b,
        C_{r,r'} = (1/N_B) Σ_B [ Σ_q conj(b̃_rq) b̃_r'q · (1/Q) Σ_j Φ((k_r − k_r') ê_j)
                                 − conj(b̃_r0) b̃_r'0 · (1/Q) Σ_j conj(φ_rj) φ_r'j ]
    (the average over γ removes every q ≠ q' cross term; Parseval over ψ).  With δ = 0 alone
    it equals :func:`radial_kernel` (q ≠ 0 terms).  ``shifts_px`` (n, 2) in pixels of an
    N = ``box`` image; ``weights`` default uniform; ``ctf``/``group_sizes`` as in
    :func:`radial_kernel`.
    """
    grid = grid_of(grid, PolarGrid)
    b = fb_stack(fb_targets, grid, "fb_targets")
    s, w = _shift_weights(shifts_px, weights)
    proj = _to_box(s, box) @ np.stack([np.cos(grid.psi), np.sin(grid.psi)])   # (S, Q)
    k = grid.k
    Phi = _ring_mean_phase(k[:, None] - k[None, :], s * (2.0 / box), w, grid)
    phi = np.einsum("s,rsj->rj", w, np.exp(-1j * k[:, None, None] * proj[None]))
    gram_all = gram(b, grid, include_zero=True)
    b0 = b[:, :, 0] * grid.eta[None, :]
    gram_0 = (np.conj(b0).T @ b0).real / b.shape[0]
    C = gram_all * Phi - gram_0 * (np.conj(phi) @ phi.T).real / grid.Q
    return pool_ctf(0.5 * (C + C.T), grid, ctf, group_sizes)


def gaussian_E_plus(k, k2, sigma):
    """E⁺(k, k') of eq. 120 for a Gaussian shift of per-axis width σ (box units):
    exp(−σ²(k² + k'²)/2)·exp(k k' σ²) = exp(−σ²(k − k')²/2), E over δ of e^{i(k − k')ê·δ} for
    two frequencies on one ray ê (the Monte Carlo test of tests/images checks it)."""
    return np.exp(-0.5 * sigma ** 2 * (np.subtract.outer(k, k2)) ** 2)


def gaussian_E_minus(k, sigma):
    """E⁻(k) of eq. 121: k̃√(π/2) e^{−k̃²}(I_{−1/2}(k̃²) − I_{1/2}(k̃²)), k̃ = kσ/2, which is
    exp(−σ²k²/2) = E over δ of e^{−ik·δ} (I_{−1/2}(z) − I_{1/2}(z) = √(2/(πz)) e^{−z})."""
    return np.exp(-0.5 * sigma ** 2 * np.asarray(k, np.float64) ** 2)


def gaussian_shift_kernel(shells, grid: PolarGrid, sigma_px: float, box: int, *,
                          ctf=None, group_sizes=None) -> np.ndarray:
    """Radial kernel of eq. 119–121: isotropic Gaussian shifts (std ``sigma_px`` pixels per
    axis) and targets spread uniformly over SO(3), from the map's shell coefficients
    (:func:`radsvd.volumes.shells.map_shells`, (R, n_lm) m-major on the grid's radii):
        C_{r,r'} = η_r η_r' [Σ_{l,m} conj(B_l^m(k_r)) B_l^m(k_r') E⁺(k_r, k_r')
                              − conj(B_0^0(k_r)) B_0^0(k_r') E⁻(k_r) E⁻(k_r')].
    This is 4π × ½ E|[T_δ R_γ B − T_δ' R_γ' B']|² over independent poses of B, B' (the mean over
    targets taken inside the second term, as the reference code's kernel does): only l = 0
    survives there.  σ = 0 keeps every degree l ≥ 1 of the map, no templates needed.
    """
    grid = grid_of(grid, PolarGrid)
    c = finite_array(shells, "shells", dtype=np.complex128)
    if c.ndim != 2 or c.shape[0] != grid.R:
        raise InputError(f"shells: expected (R={grid.R}, n_lm) coefficients, got {c.shape}")
    L = int(round((math.sqrt(8 * c.shape[1] + 1) - 3) / 2))
    if (L + 1) * (L + 2) // 2 != c.shape[1]:
        raise InputError(f"shells: {c.shape[1]} coefficients is not (L+1)(L+2)/2 for any L")
    if not (math.isfinite(sigma_px) and sigma_px >= 0):
        raise InputError(f"sigma must be a finite number >= 0 (pixels), got {sigma_px!r}")
    sigma = float(sigma_px) * 2.0 / box
    orders = np.concatenate([np.full(L + 1 - m, m) for m in range(L + 1)])
    mult = np.where(orders == 0, 1.0, 2.0)
    degree_gram = ((np.conj(c) * mult) @ c.T).real               # Σ_{l, |m| ≤ l}
    b00 = c[:, 0]                                                 # (l, m) = (0, 0) is index 0
    k = grid.k
    Em = gaussian_E_minus(k, sigma)
    C = degree_gram * gaussian_E_plus(k, k, sigma) - np.outer(np.conj(b00) * Em, b00 * Em).real
    C = C * np.outer(grid.eta, grid.eta)
    return pool_ctf(0.5 * (C + C.T), grid, ctf, group_sizes)
