"""Templates: central slices of a map's Fourier transform on the polar grid, times the CTF.

By the central-slice theorem the template of pose R (:mod:`radsvd.data.rotations`) is
T̂(k_r, ψ_j) = V̂(R (k_r cos ψ_j, k_r sin ψ_j, 0)); V̂(k) = dx³ Σ_n V(x_n) e^{-i k·x_n}
(docs/design.md) is evaluated directly at those rotated points by one 3D type-2 NUFFT (finufft
nufft3d2, which pairs its first coordinate with the first array axis: vol[iz, iy, ix] gets
(kz, ky, kx)·dx).  The output has the layout of ``radsvd.images.polar.to_polar``: (n, R, Q)
complex, ring r, angle ψ_j = 2πj/Q measured from +x towards +y.
"""

from __future__ import annotations

import numpy as np

from radsvd._validate import InputError, real_stack
from radsvd.data.rotations import as_rotations

_MAX_POINTS = 1 << 24  # points per NUFFT call (~400 MB of coordinates and output)


def rotated_polar_points(grid, rotations) -> np.ndarray:
    """3D frequencies (n, R, Q, 3) ordered (kx, ky, kz) of the polar grid under each pose."""
    R = as_rotations(rotations)
    kx, ky = grid.points()
    return kx[None, :, :, None] * R[:, None, None, :, 0] + ky[None, :, :, None] * R[:, None, None, :, 1]


def project_fourier(volume, rotations, grid, eps: float = 1e-6) -> np.ndarray:
    """Fourier slices V̂(R (kx, ky, 0)) of a real map on the polar grid, shape (n, R, Q).

    ``volume``: cubic array vol[iz, iy, ix] on the box [-1, 1]³; ``rotations``: poses
    (n, 3, 3); ``eps``: NUFFT tolerance (relative to Σ|V|).
    """
    import finufft

    vol = real_stack(volume, "volume", 3)
    if vol.shape[0] != 1:
        raise InputError(f"volume: expected one map, got a stack of {vol.shape[0]}")
    vol = vol[0].astype(np.complex128)
    N = vol.shape[0]
    try:
        grid.check_box(N)
    except ValueError as exc:
        raise InputError(f"volume: {exc}") from None
    R = as_rotations(rotations)
    dx = 2.0 / N
    n, nr, nq = R.shape[0], grid.R, grid.Q
    kx, ky = grid.points()
    kx, ky = kx.ravel() * dx, ky.ravel() * dx
    out = np.empty((n, nr * nq), dtype=np.complex128)
    # one thread: finufft's multi-threaded FFT rounds differently for each thread count
    plan = finufft.Plan(2, (N, N, N), eps=eps, isign=-1, nthreads=1)
    step = max(1, _MAX_POINTS // kx.size)
    for start in range(0, n, step):
        Rc = R[start:start + step]
        # coordinate d of the rotated point = kx R[d, 0] + ky R[d, 1]
        pts = [np.ascontiguousarray((kx[None, :] * Rc[:, d, 0:1] + ky[None, :] * Rc[:, d, 1:2]).ravel())
               for d in (2, 1, 0)]
        plan.setpts(*pts)
        out[start:start + step] = plan.execute(vol).reshape(len(Rc), -1)
    out *= dx ** 3
    return out.reshape(n, nr, nq)


def apply_ctf(templates, ctf) -> np.ndarray:
    """CTF ⊙ templates: ``ctf`` of shape (R, Q), (R,) (ring CTF), or one per template (n, R, Q)."""
    t = np.asarray(templates)
    c = np.asarray(ctf, dtype=np.float64)
    if t.ndim != 3:
        raise InputError(f"apply_ctf: templates must have shape (n, R, Q), got {t.shape}")
    if c.shape == t.shape[1:2]:
        return t * c[:, None]
    if c.shape not in (t.shape[1:], t.shape):
        raise InputError(f"apply_ctf: CTF shape {c.shape} does not match templates {t.shape} "
                         "(expected (R, Q), (R,) or (n, R, Q))")
    return t * c


def make_templates(volume, rotations, grid, ctf=None, eps: float = 1e-6) -> np.ndarray:
    """Templates (n, R, Q): Fourier slices of ``volume`` at the poses (a type-2 NUFFT),
    times ``ctf`` if given.

    Parameters
    ----------
    volume : ndarray, shape (N, N, N)
        The map, vol[iz, iy, ix] on the box [-1, 1]³.
    rotations : array_like, shape (n, 3, 3)
        Poses (RELION's ZYZ convention, :mod:`radsvd.data.rotations`).
    grid : PolarGrid
        The polar grid of the templates.
    ctf : ndarray or (CTFParams, float), optional
        CTF values broadcasting against (n, R, Q), or ``(params, pixel_size)``: a
        :class:`CTFParams` and the pixel size (Å) that places it on the grid.
    eps : float
        NUFFT tolerance.

    Returns
    -------
    ndarray, shape (n, R, Q), complex128
        The templates' Fourier transforms on the polar grid.

    Examples
    --------
    >>> mol = radsvd.GaussianMolecule([[0, 0, 0], [0.3, 0, 0]], [0.1, 0.1], [1.0, 2.0])
    >>> grid = radsvd.PolarGrid(K=8)
    >>> poses = radsvd.shell_directions(4).rotations()
    >>> t = radsvd.make_templates(mol.volume(32), poses, grid)
    >>> t.shape == (len(poses), grid.R, grid.Q)
    True
    >>> exact = mol.projection_fourier(np.stack(grid.points(), -1), poses[0])
    >>> bool(np.abs(t[0] - exact).max() < 1e-6 * np.abs(exact).max())
    True
    """
    t = project_fourier(volume, rotations, grid, eps=eps)
    if ctf is None:
        return t
    if isinstance(ctf, tuple) and len(ctf) == 2:
        params, pixel_size = ctf
        ctf = params.polar(grid, np.shape(volume)[-1], pixel_size)
    return apply_ctf(t, ctf)
