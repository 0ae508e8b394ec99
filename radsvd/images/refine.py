"""Local pose refinement of particles, coarse to fine: viewing direction, in-plane angle and
shift off every grid, on the full (uncompressed) landscape.

The landscape is the global search's (:mod:`radsvd.images.particles`) continued off the grid:
for a particle with polar samples Â and ring CTF c(k_r), the template of any pose B is the
central slice Ŝ_B(k) = V̂(B (kx, ky, 0)) (:mod:`radsvd.data.templates`), and

    X(B, γ, δ) = <Â, T_δ R_γ t̂_B>,   t̂_B = c Ŝ_B / ‖c Ŝ_B‖

(eq. 35–36 with the shifts of §5; the target scaled to unit norm as in the global search), the
pose being B Rz(−γ) (docs/poses.md).  Starting from the best few candidates (template, γ, δ)
of the global search, each level tries the viewing directions B exp(±s J_x), B exp(±s J_y)
(tilts by ±s about the template's in-plane axes), fits a parabola through the three values
along each axis, and tries its vertex (clipped to ±s); every trial slice gets its own best
(γ, δ) by Newton steps (:func:`radsvd.images.shifts.refine_poses`).  The best point met is
kept (the score never drops), and s halves from level to level.

Candidates: all are scored once; the best goes on (with ``coarse_levels`` > 0, all are
followed through that many levels on the polar grid of K/2, 4× fewer samples, first: faster,
but at SNR 0.1 the coarse landscape misleads, so the default is 0; docs/poses.md).
Slices are type-2 NUFFTs of the map (finufft, single precision, tolerance ``eps``), two calls
per level and block of particles.

Determinism: particles are processed in fixed blocks of :data:`BLOCK` by single-threaded
tasks (:func:`radsvd._pool.pool_map`), so results are bitwise independent of the number of
threads.  Cost per particle: k + 5 · levels slices for k candidates (coarse ones at a quarter
of the samples); docs/poses.md has the measured times.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from radsvd._validate import InputError

__all__ = ["LocalPoses", "refine_local", "refine_rows", "tilt_rotations", "slice_targets"]

BLOCK = 32           # particles per task, fixed by the table rows (refine_rows)
DEFAULT_LEVELS = 2   # tilt steps s, s/2 (the parabola vertices resolve below)
DEFAULT_COARSE = 0   # levels at K/2 (faster, but noise misleads them: docs/poses.md)
DEFAULT_EPS = 1e-4   # NUFFT tolerance of the slices (single precision)
NEWTON = 1           # Newton steps in (γ, δ) per trial slice (each starts near its optimum)


@dataclass
class LocalPoses:
    """Refined poses: base rotation B (n, 3, 3) of the template slice, in-plane angle γ (n,)
    and shift δ (n, 2) pixels, so the pose is B Rz(−γ) (as for a template of the global
    search: pass ``rotation`` as template rotations with best_target = arange(n) to
    :func:`radsvd.data.poses.compose_poses`); score X at the refined pose (n,); candidate
    (n,) the index of the global candidate it started from."""

    rotation: np.ndarray
    angle: np.ndarray
    shift: np.ndarray
    score: np.ndarray
    candidate: np.ndarray


def tilt_rotations(B: np.ndarray, ax: np.ndarray, ay: np.ndarray) -> np.ndarray:
    """B exp(ax J_x + ay J_y): each B (m, 3, 3) tilted by the rotation vector (ax, ay, 0)
    (radians) of its own frame (Rodrigues' formula)."""
    w = np.stack([ax, ay, np.zeros_like(ax)], axis=-1)
    theta = np.linalg.norm(w, axis=-1)
    Kx = np.zeros(w.shape[:-1] + (3, 3))
    Kx[..., 0, 2], Kx[..., 1, 2] = w[..., 1], -w[..., 0]
    Kx[..., 2, 0], Kx[..., 2, 1] = -w[..., 1], w[..., 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        a = np.where(theta > 0, np.sin(theta) / theta, 1.0)
        b = np.where(theta > 0, (1 - np.cos(theta)) / theta ** 2, 0.5)
    E = np.eye(3) + a[..., None, None] * Kx + b[..., None, None] * (Kx @ Kx)
    return B @ E


class _Slicer:
    """Central slices V̂(B (kx, ky, 0)) of one map on one polar grid (single-threaded plan)."""

    def __init__(self, volume: np.ndarray, grid, eps: float):
        import finufft

        N = volume.shape[0]
        self.grid, self.n = grid, grid.R * grid.Q
        self.vol = np.ascontiguousarray(volume, dtype=np.complex64)
        # upsampfac 1.25: a 80³ rather than 128³ fine grid at N = 64, whose FFT is the fixed
        # cost of every call (measured 24 vs 76 ms); the tolerance is still met
        self.plan = finufft.Plan(2, (N, N, N), eps=eps, isign=-1, nthreads=1,
                                 dtype=np.complex64, upsampfac=1.25, showwarn=0)
        kx, ky = grid.points()
        self.dx = 2.0 / N
        self.kx, self.ky = kx.ravel() * self.dx, ky.ravel() * self.dx

    def __call__(self, B: np.ndarray) -> np.ndarray:
        m = B.shape[0]
        # coordinate d of the rotated point = kx B[d, 0] + ky B[d, 1]; finufft's first axis is z
        pts = [np.ascontiguousarray((self.kx[None] * B[:, d, 0:1]
                                     + self.ky[None] * B[:, d, 1:2]).ravel(), np.float32)
               for d in (2, 1, 0)]
        self.plan.setpts(*pts)
        out = self.plan.execute(self.vol).astype(np.complex128)
        out *= self.dx ** 3
        return out.reshape(m, self.grid.R, self.grid.Q)


def slice_targets(slices: np.ndarray, rings: np.ndarray, grid) -> np.ndarray:
    """Fourier–Bessel coefficients (m, R, Q//2+1) of the targets c Ŝ / ‖c Ŝ‖ (module doc):
    slices (m, R, Q) times ring CTFs (m, R), scaled to unit norm on the polar quadrature."""
    import scipy.fft

    t = slices * rings[:, :, None]
    norm2 = np.einsum("mrq,r->m", np.abs(t) ** 2, grid.w * grid.dpsi)
    t /= np.sqrt(np.maximum(norm2, np.finfo(float).tiny))[:, None, None]
    return scipy.fft.fft(t, axis=-1, workers=1)[..., : grid.n_freq] / grid.Q


class _Level:
    """One grid's data for a block: slicer, images' FB coefficients, ring CTFs."""

    def __init__(self, slicer, fb_images, rings):
        self.slicer, self.fb, self.rings = slicer, fb_images, rings

    def evaluate(self, rows, B, gamma, shift, box, step_px):
        """Best (γ, δ) near the given ones and X for the slices at B of particles ``rows``."""
        from radsvd.images.shifts import refine_poses

        grid = self.slicer.grid
        fbt = slice_targets(self.slicer(B), self.rings[rows], grid)
        return refine_poses(self.fb[rows], fbt, grid, gamma, shift, box, step_px,
                            iterations=NEWTON)


def _refine_block(images, volume, grids, rings, B0, g0, d0, box, step_px, step, levels,
                  coarse, eps):
    """The refinement of one block of particles (module doc); returns LocalPoses arrays."""
    from radsvd.images.polar import images_to_fb

    n, k = B0.shape[:2]
    lv = [None if gr is None else
          _Level(_Slicer(volume, gr, eps), images_to_fb(images, gr, threads=1), r)
          for gr, r in zip(grids, rings)]
    # candidates flattened: row i*k + c is candidate c of particle i
    rows = np.repeat(np.arange(n), k)
    B = B0.reshape(n * k, 3, 3).copy()
    g = g0.reshape(n * k).copy()
    d = d0.reshape(n * k, 2).copy()
    cand = np.tile(np.arange(k), n)
    cur = lv[0] if coarse > 0 else lv[1]
    g, d, v = cur.evaluate(rows, B, g, d, box, step_px)
    s = np.deg2rad(step)
    for level in range(levels + 1):
        if level == coarse and len(rows) > n:
            # keep each particle's best candidate (ties: the earlier); on to the fine grid
            keep = np.arange(n) * k + np.argmax(v.reshape(n, k), axis=1)
            rows, B, g, d, v, cand = rows[keep], B[keep], g[keep], d[keep], v[keep], cand[keep]
        if level == coarse and cur is not lv[1]:
            cur = lv[1]
            g, d, v = cur.evaluate(rows, B, g, d, box, step_px)
        if level == levels:
            break
        m = len(rows)
        z = np.zeros(m)
        ax = np.concatenate([z - s, z + s, z, z])
        ay = np.concatenate([z, z, z - s, z + s])
        tries = tilt_rotations(np.tile(B, (4, 1, 1)), ax, ay)
        gt, dt, vt = cur.evaluate(np.tile(rows, 4), tries, np.tile(g, 4),
                                  np.tile(d, (4, 1)), box, step_px)
        f = vt.reshape(4, m)
        # parabola through (−s, 0, +s) along each axis; its vertex if concave, clipped to ±s
        steps = []
        for lo, hi in ((f[0], f[1]), (f[2], f[3])):
            curv = lo + hi - 2 * v
            with np.errstate(divide="ignore", invalid="ignore"):
                t = np.where(curv < 0, s * (lo - hi) / (2 * curv), np.sign(hi - lo) * s)
            steps.append(np.clip(np.nan_to_num(t), -s, s))
        vert = tilt_rotations(B, steps[0], steps[1])
        pick = np.argmax(f, axis=0) * m + np.arange(m)
        gq, dq, vq = cur.evaluate(rows, vert, gt[pick], dt[pick], box, step_px)
        # best of centre, the four tilts and the vertex (ties: the earlier)
        allv = np.stack([v, *f, vq])
        allB = np.stack([B, *tries.reshape(4, m, 3, 3), vert])
        allg = np.stack([g, *gt.reshape(4, m), gq])
        alld = np.stack([d, *dt.reshape(4, m, 2), dq])
        j = np.argmax(allv, axis=0)
        idx = np.arange(m)
        B, g, d, v = allB[j, idx], allg[j, idx], alld[j, idx], allv[j, idx]
        s /= 2
    return B, g, d, v, cand


def refine_local(images, volume, grid, rotations, angle, shift_px, ctf_rings=None,
                 step_deg: float | None = None, levels: int = DEFAULT_LEVELS,
                 coarse_levels: int = DEFAULT_COARSE, step_px: float = 1.0,
                 eps: float = DEFAULT_EPS, progress=None) -> LocalPoses:
    """Refine poses locally (module doc) for one chunk of particles.

    ``images``: preprocessed particles (n, N, N); ``volume``: the map at the same box (N³);
    ``grid``: the global search's polar grid (the fine level); ``rotations`` (n, k, 3, 3),
    ``angle`` (n, k), ``shift_px`` (n, k, 2): k candidates per particle (template pose, γ,
    δ pixels) from the global search, best first; ``ctf_rings``: callable(grid) → (n, R)
    ring CTFs of the particles on that grid (None: no CTF).  ``step_deg``: the first tilt
    step (default 180°/(3 + K), half the equator spacing 360°/(3 + K) of the shell rule's
    viewing directions: 3.5° at K = 48); ``levels``: how many steps, halving (the last is
    step_deg / 2^(levels−1)); the first ``coarse_levels`` run at K/2.  ``step_px``: bound
    of one Newton call's shift move (0: shifts fixed).
    """
    from radsvd._pool import pool_map
    from radsvd.grids import PolarGrid

    imgs = np.asarray(images, np.float64)
    vol = np.asarray(volume, np.float64)
    if imgs.ndim != 3 or imgs.shape[1] != imgs.shape[2]:
        raise InputError(f"images: expected (n, N, N), got {imgs.shape}")
    N, n = imgs.shape[-1], imgs.shape[0]
    if vol.shape != (N, N, N):
        raise InputError(f"volume: expected ({N}, {N}, {N}) like the images, got {vol.shape}")
    B0 = np.asarray(rotations, np.float64)
    g0 = np.asarray(angle, np.float64)
    d0 = np.asarray(shift_px, np.float64)
    if B0.ndim != 4 or B0.shape[0] != n or B0.shape[2:] != (3, 3) or g0.shape != B0.shape[:2] \
            or d0.shape != B0.shape[:2] + (2,):
        raise InputError(f"candidates: rotations {B0.shape}, angle {g0.shape}, shift "
                         f"{d0.shape} do not fit {n} particles")
    for name, val in (("levels", levels), ("coarse_levels", coarse_levels)):
        if isinstance(val, bool) or int(val) != val or val < 0:
            raise InputError(f"{name} must be an integer >= 0, got {val!r}")
    step_deg = 180.0 / (3.0 + grid.K) if step_deg is None else step_deg
    if not (np.isfinite(step_deg) and step_deg > 0):
        raise InputError(f"step_deg must be > 0, got {step_deg!r}")
    coarse_levels = min(int(coarse_levels), int(levels))
    grids = [PolarGrid(K=grid.K / 2) if coarse_levels > 0 else None, grid]
    rings = [None if gr is None else np.ones((n, gr.R)) if ctf_rings is None
             else np.asarray(ctf_rings(gr), np.float64) for gr in grids]
    blocks = [(a, min(n, a + BLOCK)) for a in range(0, n, BLOCK)]

    def task(blk):
        a, b = blk
        return _refine_block(imgs[a:b], vol, grids, [None if r is None else r[a:b] for r in rings], B0[a:b],
                             g0[a:b], d0[a:b], N, step_px, step_deg, int(levels),
                             coarse_levels, eps)

    parts = pool_map(task, blocks, progress=progress)
    B, g, d, v, c = (np.concatenate([p[i] for p in parts]) for i in range(5))
    return LocalPoses(B, g, d, v, c)


def refine_rows(prob, images, rows, targets, angle, shift_px, step_px: float,
                levels: int = DEFAULT_LEVELS, coarse_levels: int = DEFAULT_COARSE,
                progress=None) -> LocalPoses:
    """:func:`refine_local` for preprocessed ``images`` of table rows ``rows`` of a
    :class:`radsvd.images.particles.ParticleProblem` (one chunk of a streamed run):
    candidates given as template indices ``targets`` (n, k) with their γ (n, k) and δ
    (n, k, 2) pixels; each particle's own ring CTF (none if the problem has no CTF);
    ``step_px`` 0 keeps the shifts fixed (a search without shifts).

    The blocks of :data:`BLOCK` are fixed by the table: the particle of row r sits in slot
    r mod BLOCK of the block of rows ⌊r / BLOCK⌋·BLOCK onwards, the slots of rows not in
    ``rows`` (other chunks, skipped particles) filled with copies of a particle of the block
    whose results are dropped.  Every particle thus meets the same computation at the same
    place for any chunk, shard or thread count (at most 2 (BLOCK − 1) copies per chunk)."""
    from radsvd.data.ctf import ctf_polar_stack
    from radsvd.data.stacks import ctf_params

    rows = np.asarray(rows, np.int64)
    block = rows // BLOCK
    blocks, first = np.unique(block, return_index=True)
    which = np.searchsorted(blocks, block)
    slot = which * BLOCK + rows % BLOCK
    src = np.repeat(first, BLOCK)          # each slot's particle: a copy of its block's first
    src[slot] = np.arange(len(rows))
    ctf_rings = None
    if prob.counts is not None:
        table = prob.table.iloc[rows[src]]
        params = ctf_params(table)
        pixel = table["pixel_size"].to_numpy(np.float64) * prob.source_box / prob.box

        def ctf_rings(gr):
            return ctf_polar_stack(params, gr, prob.box, pixel, ring=True)

    t = np.asarray(targets, np.int64)[src]
    local = refine_local(np.asarray(images)[src], prob.volume, prob.grid, prob.rotations[t],
                         np.asarray(angle)[src], np.asarray(shift_px)[src], ctf_rings,
                         levels=levels, coarse_levels=coarse_levels, step_px=step_px,
                         progress=progress)
    return LocalPoses(local.rotation[slot], local.angle[slot], local.shift[slot],
                      local.score[slot], local.candidate[slot])
