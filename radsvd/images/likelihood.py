"""Log-likelihoods of particles against templates under the white-noise model (paper §2.6–2.7).

Model (eq. 40–41, 55): on the polar grid the particle is Â = α T_δ R_γ t̂ + noise with
η_r Â(k_rq) ~ N(η_r · signal, σ̂²), η_r = sqrt(w_r Δψ), where t̂ is the template times the ring
CTF scaled to unit norm (the global search's target) and α ≥ 0 its amplitude.  The
log-likelihood (eq. 55, without the constant) is

    ℓ(γ, δ) = −(‖Â‖² − 2 α X(γ, δ) + α²) / (2σ̂²),   X(γ, δ) = <Â, T_δ R_γ t̂>,

since ‖T_δ R_γ t̂‖ = 1; X is the search's landscape.  The amplitude is either given (``amplitude``)
or, by default, profiled: α = max(X, 0), ℓ = −(‖Â‖² − max(X, 0)²) / (2σ̂²) (images and maps
have no common intensity scale).  Per particle i and template t:

- maximum:    max over the Q angles γ_j and the shift disc of ℓ;
- integrated: log of the mean of e^ℓ over the Q angles × the shifts (uniform prior), a
  log-sum-exp over rotations × shifts, streamed over shifts.

σ̂ from real-space noise: a per-pixel noise σ_px on the N-pixel box (dx = 2/N) gives, by
Parseval, Σ_x |a − b|² = ∫|Â − B̂|² dk / ((2π)² dx²), so σ̂ = 2π dx σ_px.  By default σ_px is each
particle's background: the standard deviation of its pixels outside the inscribed disc.

Rank H: X comes from the rank-H landscape X^H (eq. 84) when a basis is given, so ℓ^H and
its error against the full ℓ follow the landscape's (docs/poses.md has the table against H).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from radsvd._validate import InputError

__all__ = ["Likelihoods", "background_sigma", "polar_energy", "log_likelihoods",
           "group_likelihoods", "particle_likelihoods", "BLOCK"]

BLOCK = 16   # particles per landscape call (memory ~ BLOCK × N_templates × Q × 8 bytes)


@dataclass
class Likelihoods:
    """maximum, integrated (n, n_templates) log-likelihoods; sigma (n,) σ̂ used."""

    maximum: np.ndarray
    integrated: np.ndarray
    sigma: np.ndarray


def background_sigma(images) -> np.ndarray:
    """Per-pixel noise σ_px of each image (n, N, N): the standard deviation of its pixels
    outside the inscribed disc (radius N/2 about pixel N//2)."""
    from radsvd.data.preprocess import interior_mask

    imgs = np.asarray(images, np.float64)
    if imgs.ndim != 3 or imgs.shape[1] != imgs.shape[2]:
        raise InputError(f"images: expected (n, N, N), got {imgs.shape}")
    outside = ~interior_mask(imgs.shape[-1], 1.0)
    # one image at a time: a batched row std depends on the row's alignment in its last bit
    return np.array([img[outside].std() for img in imgs], np.float64)


def polar_energy(fb, grid) -> np.ndarray:
    """‖Â‖² = Σ_{r,j} w_r Δψ |Â(k_r, ψ_j)|² of each image from its q ≥ 0 FB coefficients."""
    from radsvd.images._radial import q_multiplicity

    a = np.asarray(fb)
    return 2 * np.pi * np.einsum("nrq,r,q->n", np.abs(a) ** 2, grid.w,
                                 q_multiplicity(grid.Q, True))


def _loglik(X, energy, sigma, amplitude):
    e, s2 = energy[:, None, None], (2 * sigma ** 2)[:, None, None]
    if amplitude is None:
        return -(e - np.maximum(X, 0.0) ** 2) / s2
    a = float(amplitude)
    return -(e - 2 * a * X + a * a) / s2


def log_likelihoods(fb_images, targets, grid, sigma, shifts_px=None, box: int | None = None,
                    basis=None, rank=None, amplitude: float | None = None,
                    progress=None) -> Likelihoods:
    """Maximum and integrated log-likelihoods (module doc) of images (n, R, Q//2+1 FB
    coefficients) against unit-norm targets (T, R, Q//2+1), streamed over blocks of
    :data:`BLOCK` images and over shifts.

    ``sigma``: σ̂ (n,) or a number, in the units of the polar samples (see
    :func:`background_sigma` for σ̂ = 2π dx σ_px); ``shifts_px`` (S, 2) the shift set (None:
    rotations only) of an N = ``box`` image; ``basis``/``rank``: the rank-H landscape (None:
    full); ``amplitude``: α (None: profiled); ``progress``: callable(done, n).
    """
    from radsvd.images.align import landscapes

    fb = np.asarray(fb_images)
    n = fb.shape[0]
    sig = np.broadcast_to(np.asarray(sigma, np.float64), (n,)).copy()
    if not np.all(np.isfinite(sig) & (sig > 0)):
        bad = int(np.flatnonzero(~(np.isfinite(sig) & (sig > 0)))[0])
        raise InputError(f"noise sigma must be > 0 for every particle; particle {bad} has "
                         f"{sig[bad]!r} (a noise-free background? give the noise sigma)")
    if amplitude is not None and not (np.isfinite(amplitude) and amplitude >= 0):
        raise InputError(f"amplitude must be >= 0, got {amplitude!r}")
    shifts = np.zeros((1, 2)) if shifts_px is None else np.asarray(shifts_px, np.float64)
    if shifts.ndim != 2 or shifts.shape[1] != 2 or len(shifts) == 0:
        raise InputError(f"shifts must have shape (S, 2), got {shifts.shape}")
    zero_only = shifts_px is None or not np.any(shifts)
    T = len(targets)
    maximum, integrated = np.empty((n, T)), np.empty((n, T))
    log_count = np.log(grid.Q * len(shifts))
    energy = polar_energy(fb, grid)
    for a in range(0, n, BLOCK):
        b = min(n, a + BLOCK)
        m = np.full((b - a, T), -np.inf)      # running max of ℓ
        acc = np.zeros((b - a, T))            # Σ e^{ℓ − m}
        for s in range(len(shifts)):
            if zero_only:
                X = landscapes(fb[a:b], targets, grid, basis, rank, precision="double")
            else:
                X = landscapes(fb[a:b], targets, grid, basis, rank, precision="double",
                               shifts=shifts[s:s + 1], box=box)[:, :, 0]
            ll = _loglik(X, energy[a:b], sig[a:b], amplitude)
            top = ll.max(axis=-1)
            new = np.maximum(m, top)
            acc = acc * np.exp(m - new) + np.exp(ll - new[..., None]).sum(axis=-1)
            m = new
        maximum[a:b] = m
        integrated[a:b] = m + np.log(acc) - log_count
        if progress is not None:
            progress(b, n)
    return Likelihoods(maximum, integrated, sig)


def group_likelihoods(prob, images, rows, shifts_px=None, basis=None, rank=None,
                      sigma_px=None, amplitude: float | None = None) -> Likelihoods:
    """:func:`log_likelihoods` of preprocessed ``images`` of table rows ``rows`` of a
    :class:`radsvd.images.particles.ParticleProblem` against the targets of each one's CTF
    group (one chunk of a streamed run); ``sigma_px``: per-pixel noise of the preprocessed
    images (None: each particle's background, :func:`background_sigma`)."""
    from radsvd.images.polar import images_to_fb

    rows = np.asarray(rows, np.int64)
    labels = prob.labels[rows]
    n, T = len(rows), len(prob.rotations)
    px = background_sigma(images) if sigma_px is None else np.broadcast_to(
        np.asarray(sigma_px, np.float64), (n,))
    sigma_hat = 2 * np.pi * (2.0 / prob.box) * px
    out = Likelihoods(np.empty((n, T)), np.empty((n, T)), np.empty(n))
    members = prob.member_index()
    for g in np.unique(labels):
        sel = np.flatnonzero(labels == g)
        # a landscape row's last bit depends on its place in the batch: the j-th particle of
        # the group sits in slot j mod BLOCK of a batch of BLOCK (copies elsewhere), so its
        # values are the same for any chunk or shard
        j = members[rows[sel]]
        lo = j[0] // BLOCK * BLOCK
        src = np.zeros(-(-(j[-1] + 1 - lo) // BLOCK) * BLOCK, np.int64)
        src[j - lo] = np.arange(sel.size)
        part = log_likelihoods(images_to_fb(images[sel], prob.grid)[src], prob.targets(int(g)),
                               prob.grid, sigma_hat[sel][src], shifts_px, prob.box, basis,
                               rank, amplitude)
        out.maximum[sel], out.integrated[sel], out.sigma[sel] = (
            part.maximum[j - lo], part.integrated[j - lo], part.sigma[j - lo])
    return out


def particle_likelihoods(prob, rank=6, method: str = "radial-svd", max_px: float = 0.0,
                         step_px: float = 1.0, sigma_px=None, amplitude: float | None = None,
                         sigma_shift_px: float | None = None) -> Likelihoods:
    """:func:`group_likelihoods` of a problem whose images are in memory
    (:func:`radsvd.images.particles.prepare_particles`), with a basis of ``method`` at
    ``rank`` and the shift disc (pixels) of the global search."""
    from radsvd.images.methods import make_basis
    from radsvd.images.shifts import shift_grid
    from radsvd.volumes.shells import map_shells

    grid, box = prob.grid, prob.box
    shifts = shift_grid(max_px, step_px, box) if max_px > 0 else None
    H = None if rank in (None, "full") else int(rank)
    basis = None
    if H is not None:
        basis = make_basis(method, grid, prob.templates,
                           ctf_rings=None if prob.counts is None else prob.rings,
                           group_sizes=prob.counts,
                           shifts=shifts if shifts is not None else np.zeros((1, 2)), box=box,
                           sigma=max_px / 2 if sigma_shift_px is None else sigma_shift_px,
                           shells=map_shells(prob.volume, grid)
                           if method == "gaussian-shift-svd" else None)
    rows = np.arange(len(prob.images)) if prob.rows is None else prob.rows
    return group_likelihoods(prob, prob.images, rows, shifts, basis, H, sigma_px, amplitude)
