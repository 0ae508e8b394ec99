"""Contrast transfer function, RELION convention, on the polar grid; grouping images by CTF.

Units (docs/design.md): for an N-pixel box of pixel size p (Å), a grid frequency k (box units,
Nyquist πN/2) is the spatial frequency s = k / (π N p) (1/Å).  The angle θ of k is measured
from the +x axis (the MRC fast axis, ψ = 0 of the polar grid) towards +y.

    λ   = 12.2643247 / sqrt(V (1 + 0.978466e-6 V))                       (Å, V in volts)
    Δf(θ) = ((DU + DV) + (DU − DV) cos 2(θ − DefocusAngle)) / 2             (Å, angle in deg)
    χ   = π λ Δf s² − (π/2) Cs λ³ s⁴ + PhaseShift                          (Cs in Å = mm·1e7)
    CTF = (sqrt(1 − A²) sin χ + A cos χ) · exp(−B s² / 4)

The sign is RELION's (ctf.h: ``-sin(K1 Δf' s² + K2 s⁴ − K5 − K3)`` with Δf' = −Δf and
K3 = atan(A / sqrt(1 − A²))): the CTF is +A at s = 0, so it multiplies projections of a map
to give particles in RELION's "white particle" contrast.  (cryoDRGN uses the opposite,
physical sign; a global sign does not change CTF groups or kernels but flips landscapes, so
images and templates must use the same one: both use this one here.)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from radsvd._validate import InputError


def electron_wavelength(voltage_kv) -> np.ndarray:
    """Relativistic electron wavelength λ in Å for an acceleration voltage in kV."""
    V = np.asarray(voltage_kv, dtype=np.float64) * 1e3
    return 12.2643247 / np.sqrt(V * (1.0 + 0.978466e-6 * V))


def ctf_value(s, theta, defocus_u, defocus_v, defocus_angle=0.0, voltage=300.0, cs=2.7,
              amplitude_contrast=0.1, phase_shift=0.0, bfactor=0.0) -> np.ndarray:
    """CTF at spatial frequency s (1/Å) and angle θ (rad); every argument broadcasts.

    Defocus in Å (positive = underfocus), angles in degrees, voltage in kV, Cs in mm,
    B-factor in Å².
    """
    s = np.asarray(s, dtype=np.float64)
    lam = electron_wavelength(voltage)
    ang = np.deg2rad(defocus_angle)
    du, dv = np.asarray(defocus_u, np.float64), np.asarray(defocus_v, np.float64)
    df = 0.5 * ((du + dv) + (du - dv) * np.cos(2.0 * (theta - ang)))
    cs_a = np.asarray(cs, np.float64) * 1e7
    s2 = s * s
    chi = np.pi * lam * df * s2 - 0.5 * np.pi * cs_a * lam ** 3 * s2 * s2 + np.deg2rad(phase_shift)
    A = np.asarray(amplitude_contrast, np.float64)
    out = np.sqrt(1.0 - A * A) * np.sin(chi) + A * np.cos(chi)
    b = np.asarray(bfactor, np.float64)
    if np.any(b != 0):
        out = out * np.exp(-0.25 * b * s2)
    return out


@dataclass(frozen=True)
class CTFParams:
    """CTF parameters in RELION's units (STAR columns rlnDefocusU/V, rlnDefocusAngle, …);
    calling it evaluates the CTF (module doc) at spatial frequencies s (1/Å).

    Parameters
    ----------
    defocus_u, defocus_v : float
        Defocus along the two astigmatism axes (Å, positive = underfocus).
    defocus_angle : float
        Angle of the defocus_u axis from +x (degrees).
    voltage : float
        Acceleration voltage (kV).
    cs : float
        Spherical aberration (mm).
    amplitude_contrast : float
        Amplitude contrast A, in [0, 1).
    phase_shift : float
        Phase-plate shift (degrees).
    bfactor : float
        Envelope B-factor (Å²).

    Examples
    --------
    >>> ctf = radsvd.CTFParams(defocus_u=15000.0, defocus_v=14000.0)
    >>> float(ctf(0.0))                     # +A at s = 0
    0.1
    >>> ctf.polar(radsvd.PolarGrid(K=8), N=32, pixel_size=2.0).shape    # (R, Q)
    (9, 18)
    """

    defocus_u: float            # Å, rlnDefocusU
    defocus_v: float            # Å, rlnDefocusV
    defocus_angle: float = 0.0  # degrees, rlnDefocusAngle
    voltage: float = 300.0      # kV, rlnVoltage
    cs: float = 2.7             # mm, rlnSphericalAberration
    amplitude_contrast: float = 0.1  # rlnAmplitudeContrast
    phase_shift: float = 0.0    # degrees, rlnPhaseShift
    bfactor: float = 0.0        # Å², rlnCtfBfactor

    def __post_init__(self):
        for key, val in asdict(self).items():
            if not np.isfinite(val):
                raise InputError(f"CTFParams: {key} = {val!r} is not a finite number")
        if self.voltage <= 0:
            raise InputError(f"CTFParams: voltage must be positive (kV), got {self.voltage}")
        if not 0.0 <= self.amplitude_contrast < 1.0:
            raise InputError("CTFParams: amplitude_contrast must be in [0, 1), got "
                             f"{self.amplitude_contrast}")

    @property
    def wavelength(self) -> float:
        return float(electron_wavelength(self.voltage))

    def __call__(self, s, theta=0.0) -> np.ndarray:
        """CTF at spatial frequency s (1/Å) and angle θ (rad)."""
        return ctf_value(s, theta, **asdict(self))

    def grid2d(self, kx, ky, N: int, pixel_size: float) -> np.ndarray:
        """CTF at box frequencies (kx, ky) of an N-pixel box of pixel size p (Å)."""
        kx, ky = np.asarray(kx, np.float64), np.asarray(ky, np.float64)
        s = np.hypot(kx, ky) / (np.pi * _box(N) * _pixel(pixel_size))
        return self(s, np.arctan2(ky, kx))

    def polar(self, grid, N: int, pixel_size: float) -> np.ndarray:
        """Full (astigmatic) CTF on the polar grid, shape (R, Q), ψ = 0 along +x."""
        kx, ky = grid.points()
        return self.grid2d(kx, ky, N, pixel_size)

    def ring(self, grid, N: int, pixel_size: float) -> np.ndarray:
        """Ring-averaged CTF, shape (R,): the mean over the Q angles of each ring."""
        return self.polar(grid, N, pixel_size).mean(axis=1)

    def cartesian(self, N: int, pixel_size: float, rfft: bool = False) -> np.ndarray:
        """CTF on the N×N FFT grid (numpy order, [iy, ix]; ``rfft``: last axis N//2+1)."""
        f = np.fft.fftfreq(_box(N))  # cycles per pixel
        fx = np.fft.rfftfreq(N) if rfft else f
        sx, sy = fx[None, :] / pixel_size, f[:, None] / pixel_size
        return self(np.hypot(sx, sy), np.arctan2(sy, sx))


def _box(N) -> int:
    if int(N) != N or N < 2:
        raise InputError(f"box size N must be an integer >= 2, got {N!r}")
    return int(N)


def _pixel(p) -> float:
    if not (np.isfinite(p) and p > 0):
        raise InputError(f"pixel size must be a positive number of Å, got {p!r}")
    return float(p)


def ctf_polar_stack(params, grid, N: int, pixel_size, ring: bool = False) -> np.ndarray:
    """CTFs of many images on the polar grid: (n, R, Q), or (n, R) ring averages.

    ``params`` is a sequence of :class:`CTFParams`; ``pixel_size`` a number or one per image.
    """
    params = list(params)
    if not params:
        raise InputError("ctf_polar_stack: no CTF parameters given")
    p = np.broadcast_to(np.asarray(pixel_size, np.float64), (len(params),))
    kx, ky = grid.points()
    theta = np.arctan2(ky, kx)
    k = np.hypot(kx, ky)
    cols = {key: np.array([getattr(c, key) for c in params])[:, None, None]
            for key in asdict(params[0])}
    s = k[None] / (np.pi * _box(N) * p[:, None, None])
    out = ctf_value(s, theta[None], **cols)
    return out.mean(axis=2) if ring else out


@dataclass(frozen=True)
class CTFGroups:
    """Result of :func:`cluster_ctf`: images grouped by ring CTF.

    labels (n,): group of each image; representatives (m,): index of the image that founded
    each group; rings (m, R): mean ring CTF of each group; counts (m,): images per group.
    """

    labels: np.ndarray
    representatives: np.ndarray
    rings: np.ndarray
    counts: np.ndarray
    tolerance: float

    @property
    def n_groups(self) -> int:
        return int(self.counts.size)

    def members(self, g: int) -> np.ndarray:
        return np.flatnonzero(self.labels == g)


def cluster_ctf(rings, weights=None, tolerance: float = 0.05) -> CTFGroups:
    """Greedy clustering of ring CTFs (the reference code's rule).

    Images are visited in order; an image not yet in a group founds a new one, and every
    ungrouped image j with ||c_j − c_f||_w ≤ tolerance·||c_f||_w joins it, where c_f is the
    founder's ring CTF and ||c||_w² = Σ_r w_r c_r² (``weights`` = the radial quadrature
    weights, e.g. ``grid.w``; default uniform).  Deterministic; groups ordered by founder.

    Parameters
    ----------
    rings : array_like, shape (n_images, R)
        Ring-averaged CTF of each image (e.g. :meth:`CTFParams.ring`).
    weights : array_like, shape (R,), optional
        Non-negative radial weights of the norm; default uniform.
    tolerance : float
        Relative distance (≥ 0) within which an image joins a founder's group.

    Returns
    -------
    CTFGroups
        ``labels`` (n_images,), ``representatives`` (founders), ``rings`` (mean ring CTF per
        group), ``counts``, ``n_groups``.

    Examples
    --------
    >>> rings = np.array([[1.0, 0.5], [1.0, 0.51], [1.0, -0.5]])
    >>> groups = radsvd.cluster_ctf(rings, tolerance=0.05)
    >>> groups.labels.tolist(), groups.n_groups
    ([0, 0, 1], 2)
    """
    c = np.asarray(rings, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] == 0:
        raise InputError(f"cluster_ctf: rings must have shape (n_images, R), got {c.shape}")
    if not np.all(np.isfinite(c)):
        raise InputError("cluster_ctf: ring CTFs contain NaN or inf")
    if not (np.isfinite(tolerance) and tolerance >= 0):
        raise InputError(f"cluster_ctf: tolerance must be >= 0, got {tolerance!r}")
    w = np.ones(c.shape[1]) if weights is None else np.asarray(weights, np.float64)
    if w.shape != (c.shape[1],) or np.any(w < 0):
        raise InputError(f"cluster_ctf: weights must be {c.shape[1]} non-negative numbers")
    sw = np.sqrt(w)
    cw = c * sw
    labels = np.full(c.shape[0], -1, dtype=np.int64)
    founders = []
    for i in range(c.shape[0]):
        if labels[i] >= 0:
            continue
        g = len(founders)
        founders.append(i)
        free = np.flatnonzero(labels < 0)
        d = np.linalg.norm(cw[free] - cw[i], axis=1)
        labels[free[d <= tolerance * np.linalg.norm(cw[i])]] = g
        labels[i] = g
    counts = np.bincount(labels, minlength=len(founders))
    sums = np.zeros((len(founders), c.shape[1]))
    np.add.at(sums, labels, c)
    return CTFGroups(labels, np.array(founders, dtype=np.int64), sums / counts[:, None],
                     counts, float(tolerance))
