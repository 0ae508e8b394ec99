"""3D benchmarks: Wigner-d table, spherical-harmonic shells, full and compressed SO(3) landscapes.

Numba kernels are compiled in ``setup`` (one warm-up call), never inside a timed region.
"""


from radsvd.volumes import (ShellGrid, WignerTable, align_volumes, beta_grid, prepare,
                            to_shells, volume_svd)

from ._data import volumes


class Wigner:
    """d^l_{m1,m2}(β) for l ≤ L on the reference's n_β = 2(L+1) β grid (stable recursion)."""

    params = [[24, 48]]
    param_names = ["L"]

    def setup(self, L):
        WignerTable(2, beta_grid(6))

    def time_wigner_table(self, L):
        WignerTable(L, beta_grid(2 * (L + 1)))

    def track_wigner_table_bytes(self, L):
        return WignerTable(L, beta_grid(2 * (L + 1))).nbytes

    track_wigner_table_bytes.unit = "bytes"


class Shells:
    """Volume (64³) → spherical-harmonic shell coefficients (NUFFT + SHT)."""

    params = [[16, 32]]
    param_names = ["K"]

    def setup(self, K):
        self.grid = ShellGrid(K)
        self.vol = volumes(1)[0]
        to_shells(self.vol, ShellGrid(4))

    def time_to_shells(self, K):
        to_shells(self.vol, self.grid)


class VolumeLandscapes:
    """8 volumes aligned to one target on the whole SO(3) grid: full and at rank H (eq. 104, 117)."""

    params = [[16, 24], ["full", 4, 8]]
    param_names = ["K", "H"]
    timeout = 300

    def setup(self, K, H):
        self.grid = ShellGrid(K)
        coef = to_shells(volumes(9), self.grid)
        self.target, self.vols = coef[0], coef[1:]
        self.basis = None if H == "full" else volume_svd(self.target[None], self.grid)
        self.ranks = None if H == "full" else (H, H)
        self.plan = prepare(self.grid, self.target, self.basis, self.ranks)
        align_volumes(self.vols[:1], self.target, self.grid, self.basis, self.ranks,
                      plan=self.plan)

    def time_align_volumes(self, K, H):
        align_volumes(self.vols, self.target, self.grid, self.basis, self.ranks, plan=self.plan)

    def time_precompute(self, K, H):
        prepare(self.grid, self.target, self.basis, self.ranks)
