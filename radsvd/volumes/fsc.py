"""Fourier shell correlation of two maps and the resolutions where it crosses 0.5 and 0.143.

FSC(s) = Re Σ_{k ∈ shell s} Â(k) conj(B̂(k)) / sqrt(Σ |Â|² Σ |B̂|²) over shells of the N³ DFT
grid at integer radius s = round(|k|) in grid units (spatial frequency s / (N p) Å⁻¹), s = 1 …
N/2 (Nyquist).  A threshold's resolution is 1 / (the frequency where the curve first drops
below it), linearly interpolated between shells; if it never does, Nyquist (2p Å).  No mask is
applied: give masked maps for masked FSCs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from radsvd._validate import InputError, real_stack

__all__ = ["FSCCurve", "fsc", "THRESHOLDS"]

THRESHOLDS = (0.5, 0.143)


@dataclass
class FSCCurve:
    """frequency (1/Å, per shell), fsc, voxel counts per shell, and the pixel size."""

    frequency: np.ndarray
    fsc: np.ndarray
    counts: np.ndarray
    pixel_size: float

    def resolution(self, threshold: float) -> float:
        """Å where the FSC first drops below ``threshold`` (module doc)."""
        below = np.flatnonzero(self.fsc < threshold)
        if below.size == 0:
            return 2.0 * self.pixel_size
        i = int(below[0])
        if i == 0:
            return 1.0 / self.frequency[0]
        f0, f1 = self.fsc[i - 1], self.fsc[i]
        s = self.frequency[i - 1] + (f0 - threshold) / (f0 - f1) * (self.frequency[i]
                                                                   - self.frequency[i - 1])
        return 1.0 / s


def fsc(a, b, pixel_size: float = 1.0) -> FSCCurve:
    """The FSC curve of two cubic maps of one shape (module doc)."""
    A = real_stack(a, "map A", 3)
    B = real_stack(b, "map B", 3)
    if A.shape[0] != 1 or B.shape[0] != 1:
        raise InputError("fsc: expected one map each, not stacks")
    A, B = A[0], B[0]
    if A.shape != B.shape or len(set(A.shape)) != 1:
        raise InputError(f"fsc: the maps must be cubic and of one shape, got {A.shape} and "
                         f"{B.shape}")
    if not (np.isfinite(pixel_size) and pixel_size > 0):
        raise InputError(f"fsc: pixel size must be > 0 Å, got {pixel_size!r}")
    N = A.shape[0]
    FA, FB = np.fft.fftn(A), np.fft.fftn(B)
    f = np.fft.fftfreq(N) * N
    r = np.sqrt(f[:, None, None] ** 2 + f[None, :, None] ** 2 + f[None, None, :] ** 2)
    shell = np.rint(r).astype(np.int64).ravel()
    n_shell = N // 2 + 1
    keep = shell < n_shell
    sh = shell[keep]
    cross = np.bincount(sh, (FA * FB.conj()).real.ravel()[keep], n_shell)
    pa = np.bincount(sh, (np.abs(FA) ** 2).ravel()[keep], n_shell)
    pb = np.bincount(sh, (np.abs(FB) ** 2).ravel()[keep], n_shell)
    counts = np.bincount(sh, minlength=n_shell)
    with np.errstate(invalid="ignore", divide="ignore"):
        curve = np.where(pa * pb > 0, cross / np.sqrt(pa * pb), 0.0)
    s = np.arange(1, n_shell)
    return FSCCurve(s / (N * float(pixel_size)), curve[1:], counts[1:], float(pixel_size))
