"""Rigid fit of maps onto a target: rotation, translation and hand, any box and voxel size.

The frame is the TARGET's: its box units ([-1, 1]³, voxel spacing 2/N_B, origin at voxel
N_B//2, x = last array axis).  A map of box N_A and voxel size p_A has the voxel spacing
dx_A = 2 p_A / (N_B p_B) there, and its Fourier transform is sampled at the shell grid's
nodes through :class:`~radsvd.volumes.shells.ShellTransform` with that spacing: every map is
seen at the same physical frequencies and no map is resampled before alignment.

Model (Fourier convention of :mod:`radsvd.volumes.shells`): after centring both maps on
their centres of mass c_A, c_B (a phase e^{ik·c}), the map is the target rotated by R_τ
and moved by t, A_c(u) = B_c(R_τ⁻¹(u - t)), so e^{ik·t} Â_c(k) = (R_τ B̂_c)(k) and

    X(τ, t) = <e^{ik·t} Â_c, R_τ B̂_c> = Re Σ_nodes W conj(Â_c) (R_τ B̂_c) e^{-ik·t},

the landscape of eq. 98 of the shifted map (W: the radial × sphere quadrature weights,
exact for band-limited shells).  The search: the rotational landscape of the centred maps
(full or compressed, eq. 103/117) gives candidate rotations; at each, X(τ, ·) over a grid of
translations is one type-1 NUFFT (the translation analogue of the 2D shift search, the
paper's §5 phases applied to the spherical grid); the best candidates are refined jointly,
alternating τ (Nelder–Mead on eq. 103 of the shifted map) and t (BFGS on the phase sum).
The mirrored map is A_c(-u), whose transform is conj(Â_c) (real maps).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from radsvd._validate import InputError
from radsvd.volumes.shells import ShellGrid, sht
from radsvd.volumes.wigner import rotation_matrix

__all__ = ["MapSamples", "RotatedTarget", "centre_of_mass", "map_samples",
           "refine_rotation", "rotation_candidates",
           "translation_grid", "translation_value", "refine_pose", "pose_transform",
           "resample_map", "chimerax_matrix", "choose_rank"]


def centre_of_mass(vol: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """(x, y, z) in voxels from the centre voxel N//2 of the density's mass: the map
    smoothed (Gaussian, σ voxels: noise averages out), its median subtracted and values
    below a tenth of the maximum dropped (background and noise do not pull the centre
    towards the box centre).  Zeros for a map with nothing above that level."""
    from scipy.ndimage import gaussian_filter

    s = gaussian_filter(np.asarray(vol, dtype=np.float64), sigma, mode="constant")
    s -= np.median(s)
    s = np.clip(s - 0.1 * s.max(), 0.0, None)
    total = s.sum()
    if not total > 0:
        return np.zeros(3)
    N = s.shape[0]
    ax = np.arange(N) - N // 2
    return np.array([ax @ s.sum((0, 1)), ax @ s.sum((0, 2)), ax @ s.sum((1, 2))]) / total


def soft_sphere(N: int, centre_vox, radius_vox: float, edge_vox: float = 3.0) -> np.ndarray:
    """1 inside ``radius_vox`` of ``centre_vox`` (x, y, z from voxel N//2), a raised-cosine
    edge of ``edge_vox`` voxels, 0 outside; (N, N, N) float."""
    ax = np.arange(N) - N // 2
    cx, cy, cz = (float(c) for c in centre_vox)
    r = np.sqrt((ax[None, None, :] - cx) ** 2 + (ax[None, :, None] - cy) ** 2
                + (ax[:, None, None] - cz) ** 2)
    t = np.clip((r - radius_vox) / edge_vox, 0.0, 1.0)
    return 0.5 * (1.0 + np.cos(np.pi * t))


def _nodes(grid: ShellGrid) -> np.ndarray:
    """(3, n_nodes) (kx, ky, kz) of the grid's nodes, in the order of ``samples.ravel()``."""
    return np.stack([c.ravel() for c in grid.points()])


def _half(grid: ShellGrid) -> np.ndarray:
    """Flat indices of half of the nodes, one of each antipodal pair (the ShellTransform's
    half: the θ rows above the equator, and the first n_φ/2 equator nodes for odd n_θ).
    For sums with c(-k) = conj(c(k)) (real maps), Re Σ_all c e^{-ik·t} = 2 Re Σ_half."""
    nt, h, P = grid.n_theta, grid.n_theta // 2, grid.n_phi // 2
    theta = np.arange(nt)[:, None]
    phi = np.arange(grid.n_phi)[None, :]
    keep = (theta < h) | ((theta == h) & (nt % 2 == 1) & (phi < P))
    return np.flatnonzero(np.broadcast_to(keep, (grid.R, nt, grid.n_phi)).ravel())


def half_nodes(grid: ShellGrid) -> np.ndarray:
    """(3, n_nodes/2) (kx, ky, kz) of :func:`_half`, the nodes of the translation sums."""
    return _nodes(grid)[:, _half(grid)]


def _weights(grid: ShellGrid) -> np.ndarray:
    """Quadrature weights W of the nodes: Σ W conj(a) b = <â, b̂> on band-limited shells."""
    w = grid.w[:, None, None] * grid.theta_weights[None, :, None]
    return np.broadcast_to(w * (2.0 * np.pi / grid.n_phi),
                           (grid.R, grid.n_theta, grid.n_phi)).ravel()


@dataclass
class MapSamples:
    """One map on the shell grid: ``samples`` Â_c at the nodes (R, n_θ, n_φ), centred on
    ``centre`` (x, y, z, target box units from the map's centre voxel), with ``norm``
    ||Â_c||, ``voxel_size`` (Å) and box ``N``."""

    samples: np.ndarray
    centre: np.ndarray
    norm: float
    voxel_size: float
    N: int

    def coefficients(self, grid: ShellGrid, shift=None, mirrored: bool = False) -> np.ndarray:
        """Shell coefficients (R, n_lm) of the centred map moved back by ``shift`` (box
        units): sht(e^{ik·t} Â_c); ``mirrored``: of A_c(-u)."""
        s = np.conj(self.samples) if mirrored else self.samples
        if shift is not None and np.any(shift):
            s = s * np.exp(1j * (np.asarray(shift, float) @ _nodes(grid))).reshape(s.shape)
        return sht(s[None], grid)[0]


def map_samples(vol: np.ndarray, grid: ShellGrid, transform, *, voxel_size: float,
                lowpass_k: float | None = None, mask_radius: float | None = None,
                mask: np.ndarray | None = None) -> MapSamples:
    """:class:`MapSamples` of one map through ``transform`` (a ShellTransform with the map's
    spacing dx in the target's box units).  ``mask``: multiplies the map; ``mask_radius``
    (voxels): a soft sphere about the centre of mass; ``lowpass_k``: the samples are
    weighted by exp(-ln2 (k/lowpass_k)²), half amplitude at lowpass_k (box units)."""
    vol = np.asarray(vol)
    if mask is not None:
        vol = vol * mask
    c_vox = centre_of_mass(vol)
    if mask_radius is not None:
        vol = vol * soft_sphere(vol.shape[0], c_vox, mask_radius)
    c = c_vox * transform.dx
    s = transform.samples(vol.astype(transform._nufft().real, copy=False))
    s = s * np.exp(1j * (c @ _nodes(grid))).reshape(s.shape)
    if lowpass_k is not None:
        s = s * np.exp(-np.log(2.0) * (grid.k / lowpass_k) ** 2)[:, None, None]
    norm = float(np.sqrt(np.sum(_weights(grid) * np.abs(s.ravel()) ** 2)))
    return MapSamples(samples=s, centre=c, norm=norm, voxel_size=float(voxel_size),
                      N=int(vol.shape[0]))


def rotation_candidates(landscape: np.ndarray, plan, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``n`` distinct local maxima of a landscape (n_β, M, M) [b, i (α), j (γ)]:
    τ (k, 3) = (γ, β, α) and their values, best first.  Grid points are local maxima among
    their 26 neighbours (periodic); maxima closer than two grid steps in rotation angle
    (the mirrored β copies of one rotation among them) count once."""
    from scipy.ndimage import maximum_filter

    X = np.asarray(landscape, dtype=np.float64)
    peak = np.flatnonzero((X == maximum_filter(X, size=3, mode="wrap")).ravel())
    order = peak[np.argsort(-X.ravel()[peak], kind="stable")]
    step = 2.0 * np.pi / max(plan.M, plan.n_beta)
    taus, vals, mats = [], [], []
    for flat in order:
        b, i, j = np.unravel_index(flat, X.shape)
        tau = np.array([plan.gammas[j], plan.betas[b], plan.alphas[i]])
        Rt = rotation_matrix(tau)
        if any(_angle(Rt, Q) < 2.0 * step for Q in mats):
            continue
        taus.append(tau)
        vals.append(X.ravel()[flat])
        mats.append(Rt)
        if len(taus) == n:
            break
    return np.array(taus), np.array(vals)


def _angle(R1, R2) -> float:
    """Rotation angle (rad) of R1ᵀ R2."""
    return float(np.arccos(np.clip((np.trace(R1.T @ R2) - 1.0) / 2.0, -1.0, 1.0)))


class RotatedTarget:
    """(R_τ B̂_c)(k) = B̂_c(R_τᵀ k) at the grid's nodes straight from the target map: one
    type-2 NUFFT at the rotated nodes (no rotation of coefficients), times the centring
    phase e^{i (R_τᵀk)·c_B} and the low-pass weight (a function of |k|)."""

    def __init__(self, vol: np.ndarray, grid: ShellGrid, transform, b: "MapSamples",
                 lowpass_k: float | None = None):
        self.grid, self.transform, self.centre = grid, transform, b.centre
        cdt = np.complex64 if transform.precision == "single" else np.complex128
        self.vol = np.ascontiguousarray(vol, dtype=cdt)
        # the transform's half of the nodes (the rest are their antipodes), (x, y, z) × dx
        self.half = np.stack(transform._points[::-1])
        self.half_nodes = half_nodes(grid)
        lp = np.ones(grid.R) if lowpass_k is None else np.exp(
            -np.log(2.0) * (grid.k / lowpass_k) ** 2)
        self.weight = np.broadcast_to(lp[:, None, None], (grid.R, grid.n_theta,
                                                          grid.n_phi)).ravel()[_half(grid)]

    def __call__(self, tau) -> np.ndarray:
        """(R_τ B̂_c)(k) on the half nodes (:func:`half_nodes`)."""
        import finufft

        t = self.transform
        Rt = rotation_matrix(tau).T
        real = np.float32 if t.precision == "single" else np.float64
        x, y, z = (np.ascontiguousarray(c, dtype=real) for c in Rt @ self.half)
        opts = dict(upsampfac=1.25, showwarn=0) if t.precision == "single" else {}
        v = finufft.nufft3d2(z, y, x, self.vol, isign=-1, eps=t.eps, nthreads=1, **opts)
        return (v.astype(np.complex128) * t.dx ** 3
                * np.exp(1j * (self.centre @ (Rt @ self.half_nodes))) * self.weight)


def _phase_sum(a: "MapSamples", target: RotatedTarget, tau, mirrored: bool) -> np.ndarray:
    """c = 2 W conj(Â_c) (R_τ B̂_c) on the half nodes: X(τ, t) = Re Σ c e^{-ik·t}."""
    s = np.conj(a.samples) if mirrored else a.samples
    idx = _half(target.grid)
    return 2.0 * _weights(target.grid)[idx] * np.conj(s.ravel()[idx]) * target(tau)


def refine_rotation(T_rows: np.ndarray, plan, tau0, step: float):
    """Off-grid maximum of X(τ) (eq. 103) near τ0 = (γ, β, α): for each β the sums X̂(m1,
    m2; β) cost one Wigner-d column and X(α, β, γ) = Re Σ c_m1 e^{-im1α} X̂ e^{-im2γ} is
    maximised over (α, γ) cheaply (BFGS, exact gradient); β by a bounded scalar search
    within one grid step.  Returns (τ, X); τ0 if nothing better is found."""
    from scipy.optimize import minimize, minimize_scalar

    from radsvd.volumes.wigner import WignerTable

    L = plan.L
    m1 = np.arange(L + 1)
    m2 = np.arange(-L, L + 1)
    w1 = np.where(m1 == 0, 1.0, 2.0)

    def xhat(beta):
        d = WignerTable(L, [beta]).data
        return np.add.reduceat(T_rows * d, plan.row_start[:-1]).reshape(L + 1, 2 * L + 1)

    def inner(xh, ag0):
        def f(ag):
            # einsum, not BLAS: products this small lose more to waking BLAS threads on a
            # busy machine than they compute
            e1 = w1 * np.exp(-1j * m1 * ag[0])
            e2 = np.exp(-1j * m2 * ag[1])
            u, v = np.einsum("i,ij->j", e1, xh), np.einsum("ij,j->i", xh, e2)
            return -float(np.real(np.sum(u * e2))), -np.array(
                [np.real(np.sum(-1j * m1 * e1 * v)), np.real(np.sum(u * (-1j * m2 * e2)))])

        res = minimize(f, ag0, jac=True, method="BFGS", options=dict(gtol=1e-12, maxiter=50))
        return res.x, -float(res.fun)

    tau0 = np.asarray(tau0, float)
    ag, val = inner(xhat(tau0[1]), np.array([tau0[2], tau0[0]]))
    state = {"ag": ag}
    best = {"val": val, "tau": np.array([ag[1], tau0[1], ag[0]])}

    def g(beta):
        ag, val = inner(xhat(beta), state["ag"])
        if val > best["val"]:
            best.update(val=val, tau=np.array([ag[1], beta, ag[0]]))
            state["ag"] = ag
        return -val

    minimize_scalar(g, bounds=(tau0[1] - step, tau0[1] + step), method="bounded",
                    options=dict(xatol=1e-7))
    return best["tau"], best["val"]


def translation_value(c: np.ndarray, nodes: np.ndarray, t) -> float:
    """X(τ, t) = Re Σ c e^{-ik·t} from :func:`_phase_sum`'s c (t in box units)."""
    return float(np.real(np.sum(c * np.exp(-1j * (np.asarray(t, float) @ nodes)))))


def translation_grid(c: np.ndarray, nodes: np.ndarray, h: float, radius: float):
    """Best translation on the cubic grid t = h m, |t| ≤ radius (box units): one type-1
    NUFFT f(m) = Σ c e^{-i (h k)·m}; returns (t, X(τ, t))."""
    import finufft

    n = 2 * int(np.floor(radius / h + 1e-9)) + 1
    if n == 1:
        return np.zeros(3), float(np.real(np.sum(c)))
    x, y, z = (np.ascontiguousarray(h * k) for k in nodes)
    f = finufft.nufft3d1(x, y, z, np.ascontiguousarray(c, np.complex128), (n, n, n),
                         isign=-1, eps=1e-6, nthreads=1).real
    m = np.arange(n) - n // 2
    r2 = m[:, None, None] ** 2 + m[None, :, None] ** 2 + m[None, None, :] ** 2
    f = np.where(r2 * h * h <= radius * radius * (1 + 1e-9), f, -np.inf)
    a, b, d = np.unravel_index(int(np.argmax(f)), f.shape)
    return h * np.array([m[a], m[b], m[d]], dtype=float), float(f[a, b, d])


def _best_translation(c, nodes, t0, radius, iterations: int = 8):
    """Local maximum of X(τ, ·) = Re Σ c e^{-ik·t} from t0: Newton steps with the exact
    gradient Σ k Im(c e) and Hessian -Σ Re(c e) k kᵀ (e = e^{-ik·t}), halved until X
    increases; kept within ``radius``.  Returns (t, X)."""
    def terms(t):
        e = c * np.exp(-1j * (t @ nodes))
        return float(np.sum(e.real)), e

    # einsum, not BLAS, for these thin products (see refine_rotation)

    t = np.asarray(t0, float)
    val, e = terms(t)
    for _ in range(iterations):
        g = np.einsum("dn,n->d", nodes, e.imag)
        H = -np.einsum("dn,en,n->de", nodes, nodes, e.real, optimize=False)
        try:
            d = -np.linalg.solve(H, g)
        except np.linalg.LinAlgError:
            break
        if not np.all(np.isfinite(d)) or g @ d <= 0:      # not an ascent direction
            d = g * (np.linalg.norm(d) / max(np.linalg.norm(g), 1e-300)) if np.all(
                np.isfinite(d)) else g * 1e-6
        if np.max(np.abs(d)) < 1e-7:                      # converged (box units)
            break
        for _ in range(8):
            t_new = t + d
            if np.linalg.norm(t_new) <= radius * (1 + 1e-9):
                v_new, e_new = terms(t_new)
                if v_new > val:
                    break
            d = d / 2.0
        else:
            break
        moved = np.max(np.abs(t_new - t))
        t, val, e = t_new, v_new, e_new
        if moved < 1e-6:
            break
    return t, val


def refine_pose(a: MapSamples, target: RotatedTarget, grid: ShellGrid, full_plan, tau, t, *,
                mirrored: bool, radius: float, step: float, rounds: int = 2):
    """Joint refinement of (τ, t) from a grid candidate: alternate τ (Nelder–Mead on eq. 103
    of the map moved back by t) and t (BFGS at fixed τ) for ``rounds`` rounds or until
    neither moves (10⁻⁴ of a grid step, 10⁻⁴ box units).  Returns (τ, t, X)."""
    from radsvd.volumes.align import _full_T

    nodes = half_nodes(grid)
    tau, t = np.asarray(tau, float), np.asarray(t, float)
    value = -np.inf
    for _ in range(rounds):
        T = _full_T(a.coefficients(grid, t, mirrored), full_plan)
        tau_new, _ = refine_rotation(T, full_plan, tau, step)
        c = _phase_sum(a, target, tau_new, mirrored)
        t_new, value = _best_translation(c, nodes, t, radius)
        moved = (np.max(np.abs(tau_new - tau)) > 1e-4 * step
                 or np.max(np.abs(t_new - t)) > 1e-4)
        tau, t = tau_new, t_new
        step = max(step / 4.0, 1e-3)
        if not moved:
            break
    return tau, t, value


def pose_transform(tau, t, a: MapSamples, b: MapSamples, mirrored: bool):
    """(Rm, tv) of the map-to-target transform y = Rm x + tv, x and y in the target's box
    units from each box's centre voxel (module docstring: R = R_τ⁻¹; Rm = R, tv = c_B -
    R (c_A + t); mirrored: Rm = -R, tv = c_B + R (c_A - t))."""
    R = rotation_matrix(tau).T
    if mirrored:
        return -R, b.centre + R @ (a.centre - t)
    return R, b.centre - R @ (a.centre + t)


def resample_map(vol: np.ndarray, voxel_size: float, N_target: int, target_voxel_size: float,
                 Rm: np.ndarray, tv_angstrom: np.ndarray, order: int = 3) -> np.ndarray:
    """The map moved by y = Rm x + tv (Å from each box's centre voxel, (x, y, z)) and
    sampled on the target's box: out(y) = A(Rmᵀ (y - tv)), cubic splines, 0 outside the
    map; float32 (N_target,)³, one z-plane of coordinates at a time."""
    from scipy.ndimage import map_coordinates, spline_filter

    vol = np.asarray(vol, dtype=np.float64)
    coef = spline_filter(vol, order=order, mode="constant") if order > 1 else vol
    N_A = vol.shape[0]
    ax = (np.arange(N_target) - N_target // 2) * float(target_voxel_size)
    Y, X = np.meshgrid(ax, ax, indexing="ij")
    out = np.empty((N_target,) * 3, dtype=np.float32)
    Rinv = np.asarray(Rm, float).T
    for iz, z in enumerate(ax):
        y = np.stack([X.ravel(), Y.ravel(), np.full(X.size, z)]) - np.asarray(tv_angstrom,
                                                                               float)[:, None]
        x = Rinv @ y / float(voxel_size) + N_A // 2                     # map voxel (x, y, z)
        out[iz] = map_coordinates(coef, [x[2], x[1], x[0]], order=order, mode="constant",
                                  cval=0.0, prefilter=False).reshape(N_target, N_target)
    return out


def chimerax_matrix(Rm, tv_angstrom, N_map: int, map_voxel_size: float, map_origin,
                    N_target: int, target_voxel_size: float, target_origin) -> np.ndarray:
    """4×4 placement of the map in the target's scene coordinates (Å, ChimeraX's: voxel
    index i of a map sits at origin + i · voxel size, x = fast axis): Y = M X for map
    coordinates X, M = [[Rm, tv + o_B - Rm o_A], [0, 0, 0, 1]], o the centre voxel's
    position.  Its first three rows, row by row, are the 12 numbers of ChimeraX's
    ``view matrix models #MAP,...`` when the target model is unmoved."""
    o_a = np.asarray(map_origin, float) + (N_map // 2) * float(map_voxel_size)
    o_b = np.asarray(target_origin, float) + (N_target // 2) * float(target_voxel_size)
    M = np.eye(4)
    M[:3, :3] = Rm
    M[:3, 3] = np.asarray(tv_angstrom, float) + o_b - np.asarray(Rm) @ o_a
    return M


def choose_rank(basis, grid: ShellGrid, rank, keep: float = 0.999):
    """Rank of the compressed search from the target's spectra (issue 23).

    The landscape's rotation-dependent energy is Σ λ(C) over principal shells and Σ λ(D)
    over principal degrees (eq. 111, 116); rank H keeps the fractions F_C(H), F_D(H).  When
    the spectra are flat (K near the map's Nyquist frequency: noise-like shells) rank 8
    keeps too little and the compressed landscape's maximum moves.  rank "auto": the
    smallest H with F_C, F_D ≥ ``keep``; an explicit H that keeps less than ``keep`` of
    either, or an H ≥ 3/4 of the full size (no gain), falls back to the full landscape.
    Returns (rank or None for full, dict of the choice for the report)."""
    fc = np.cumsum(np.clip(basis.C_values, 0, None))
    fd = np.cumsum(np.clip(basis.D_values, 0, None))
    fc, fd = fc / fc[-1], fd / max(fd[-1], 1e-300)
    n_full = min(grid.R, grid.L + 1)
    if rank == "auto":
        H = int(max(np.searchsorted(fc, keep), np.searchsorted(fd, keep))) + 1
    else:
        H = int(rank)
    H = min(H, n_full)
    kept_c, kept_d = float(fc[min(H, grid.R) - 1]), float(fd[min(H, grid.L + 1) - 1])
    info = dict(rank_requested=str(rank), spectrum_kept_C=kept_c, spectrum_kept_D=kept_d,
                rank_threshold=keep)
    if H >= 0.75 * n_full:
        return None, dict(info, rank_used="full",
                          rank_reason=f"H = {H} is at least 3/4 of the full {n_full}")
    if min(kept_c, kept_d) < keep:
        return None, dict(info, rank_used="full", rank_reason=(
            f"rank {H} keeps {kept_c:.4f} of the radial and {kept_d:.4f} of the degree "
            f"spectrum (< {keep}): the compressed landscape may move the optimum"))
    return H, dict(info, rank_used=str(H), rank_reason=(
        f"rank {H} keeps {kept_c:.4f} / {kept_d:.4f} of the radial / degree spectrum"))


def check_max_shift(max_shift) -> float:
    if isinstance(max_shift, bool) or not np.isfinite(float(max_shift)) or max_shift < 0:
        raise InputError(f"max_shift must be a finite number of Å >= 0, got {max_shift!r}")
    return float(max_shift)
