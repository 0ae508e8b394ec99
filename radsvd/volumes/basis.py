"""The radial- and degree-SVD for volumes (paper §4.5–4.8, eq. 105–116).

* radial kernel (eq. 111): C_{r,r'} = η_r η_r' Σ_{l≥1} Σ_{|m|≤l} conj(B_l^m(k_r)) B_l^m(k_r'),
  η_r = sqrt(w_r) (k² dk weights).  Real symmetric for real volumes (the ±m terms pair up).
* principal volume shells (eq. 106): [u_hᵀÂ]_l^m = Σ_r u_h[r] η_r Â_l^m(k_r).
* degree kernel (eq. 116) on the radially compressed target:
  D_{l,l'} = Σ_{h≤H_C} Σ_{|m|≤min(l,l')} conj(B̃_{h,l}^m) B̃_{h,l'}^m for l, l' ≥ 1, 0 otherwise.
  With H_C = R this is eq. 116 exactly (η_r² = w_r).  D is Hermitian; the paper takes real
  degree vectors v ∈ R^{L+1}, and for real v, vᵀDv = vᵀ Re(D) v (Im D is antisymmetric), so
  the principal degree vectors are the eigenvectors of Re(D).  Real v also keep the
  compressed landscape real (d^l is real and the (m1, m2) ↔ (-m1, -m2) symmetry survives).
Several targets: kernels are summed over the targets (as in the 2D side's eq. 85 average).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from radsvd._validate import InputError, grid_of, finite_array, rank as _rank
from radsvd.volumes.shells import ShellGrid

__all__ = ["radial_kernel", "degree_kernel", "VolumeBasis", "volume_svd", "check_coefficients"]


def check_coefficients(coef, grid: ShellGrid, name: str) -> np.ndarray:
    """(n, R, n_lm) complex128 C-contiguous shell coefficients (a single (R, n_lm) promoted)."""
    grid_of(grid, ShellGrid)
    c = np.asarray(coef)
    if c.ndim == 2:
        c = c[None]
    if c.ndim != 3 or c.shape[1:] != (grid.R, grid.n_lm):
        raise InputError(f"{name}: expected shell coefficients of shape (n, R={grid.R}, "
                         f"n_lm={grid.n_lm}) for this ShellGrid, got {np.shape(coef)}")
    if c.shape[0] == 0:
        raise InputError(f"{name}: the stack is empty")
    return finite_array(c, name, dtype=np.complex128)


def _mult(grid: ShellGrid) -> np.ndarray:
    """Multiplicity of each stored (l, m ≥ 0) when summing over ±m."""
    return np.where(grid.orders == 0, 1.0, 2.0)


def radial_kernel(coef_targets, grid: ShellGrid) -> np.ndarray:
    """Radial kernel C (eq. 111), l = 0 excluded, summed over targets: (R, R) real."""
    b = check_coefficients(coef_targets, grid, "coef_targets")
    keep = (grid.degrees >= 1) * _mult(grid)
    bt = b * np.sqrt(keep)[None, None, :] * grid.eta[None, :, None]
    # Σ over ±m of conj(B(r)) B(r') is 2 Re for m > 0 and real for m = 0 (real volumes);
    # Re(conj(x) y) = x_re y_re + x_im y_im: one real product on the interleaved values
    X = bt.view(np.float64).transpose(1, 0, 2).reshape(grid.R, -1)
    C = X @ X.T
    return 0.5 * (C + C.T)


def degree_kernel(coef_compressed, grid: ShellGrid) -> np.ndarray:
    """Degree kernel Re D (eq. 116) from radially compressed coefficients (n, H_C, n_lm):
    (L+1, L+1) real symmetric, zero row and column at l = 0."""
    c = np.ascontiguousarray(coef_compressed, dtype=np.complex128)
    if c.ndim == 2:
        c = c[None]
    if c.ndim != 3 or c.shape[2] != grid.n_lm:
        raise InputError(f"coef_compressed: expected (n, H_C, n_lm={grid.n_lm}), got {c.shape}")
    L = grid.L
    D = np.zeros((L + 1, L + 1))
    starts = grid.m_start
    parity = 1.0 + (-1.0) ** np.add.outer(np.arange(L + 1), np.arange(L + 1))
    for m in range(L + 1):
        blk = c[:, :, starts[m]:starts[m + 1]]          # degrees l = m..L
        # Re G_{l,l'} = Σ Re(conj(x_l) x_l'), one real product on the interleaved values
        # (as in radial_kernel)
        n_l = L + 1 - m
        x = blk.view(np.float64).reshape(c.shape[0], c.shape[1], n_l, 2)
        x = x.transpose(2, 0, 1, 3).reshape(n_l, -1)
        G = x @ x.T
        # ±m: z + (-1)^{l+l'} conj(z); the real part is (1 + (-1)^{l+l'}) Re z for m > 0
        D[m:, m:] += G if m == 0 else G * parity[m:, m:]
    D[0, :] = 0.0
    D[:, 0] = 0.0
    return 0.5 * (D + D.T)


def _eig_desc(K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    vals, vecs = np.linalg.eigh(K)
    order = np.argsort(vals, kind="stable")[::-1]
    vals, vecs = vals[order], vecs[:, order]
    idx = np.argmax(np.abs(vecs), axis=0)
    vecs = vecs * np.sign(vecs[idx, np.arange(vecs.shape[1])])[None, :]
    return vals, np.ascontiguousarray(vecs)


@dataclass(frozen=True)
class VolumeBasis:
    """Radial vectors U (R×R, columns u_h) with eigenvalues of C, and degree vectors
    V ((L+1)×(L+1), columns v_j) with eigenvalues of Re D, both largest first.
    ``H_C_for_D``: the radial rank at which D was formed (R: eq. 116 exactly)."""

    U: np.ndarray
    C_values: np.ndarray
    V: np.ndarray
    D_values: np.ndarray
    eta: np.ndarray
    H_C_for_D: int

    @property
    def R(self) -> int:
        return self.U.shape[0]

    @property
    def n_degrees(self) -> int:
        return self.V.shape[0]

    def radial_matrix(self, H_C: int) -> np.ndarray:
        """diag(η) U[:, :H_C] (R × H_C)."""
        H_C = _rank(H_C, self.R, "radial rank H_C")
        return self.eta[:, None] * self.U[:, :H_C]

    def compress(self, coef, H_C: int) -> np.ndarray:
        """Principal volume shells (eq. 106): (n, R, n_lm) → (n, H_C, n_lm)."""
        c = np.asarray(coef, dtype=np.complex128)
        if c.ndim == 2:
            c = c[None]
        if c.ndim != 3 or c.shape[1] != self.R:
            raise InputError(f"coef: expected (n, R={self.R}, n_lm), got {c.shape}")
        P = self.radial_matrix(H_C)
        return np.ascontiguousarray(np.einsum("rh,nrj->nhj", P, c, optimize=True))

    def degree_matrix(self, H_D: int) -> np.ndarray:
        """V[:, :H_D] ((L+1) × H_D)."""
        H_D = _rank(H_D, self.n_degrees, "degree rank H_D")
        return np.ascontiguousarray(self.V[:, :H_D])


def volume_svd(coef_targets, grid: ShellGrid, H_C: int | None = None) -> VolumeBasis:
    """Radial- and degree-SVD basis of the target(s): eigenvectors of C (eq. 111), then of
    Re D (eq. 116) formed on the target compressed to H_C principal shells (default R)."""
    b = check_coefficients(coef_targets, grid, "coef_targets")
    cv, U = _eig_desc(radial_kernel(b, grid))
    H_C = grid.R if H_C is None else _rank(H_C, grid.R, "radial rank H_C")
    bt = np.einsum("rh,nrj->nhj", grid.eta[:, None] * U[:, :H_C], b, optimize=True)
    dv, V = _eig_desc(degree_kernel(bt, grid))
    return VolumeBasis(U=U, C_values=cv, V=V, D_values=dv, eta=grid.eta.copy(), H_C_for_D=H_C)
