"""Rotational landscapes of volumes on the (α, β, γ) grid (paper eq. 103–104, 117).

X(τ; A, B) = <Â, R_τ B̂> = Σ_r w_r Σ_{l,m} conj(Â_l^m(k_r)) (R_τ B̂)_l^m(k_r), τ = (γ, β, α),
R_τ = R^z_α R^y_β R^z_γ (active; eq. 93, 97): the TARGET B is rotated, and X is the Fourier
inner product (= (2π)³ times the real-space one on band-limited shells).  Landscapes have
shape (n, n_β, M, M), indexed [volume, b (β), i (α), j (γ)].

One module per concern (docs/design.md, "Architecture"):

* :mod:`~radsvd.volumes.landscape.layout`: the grid (:func:`beta_grid`, :func:`default_M`)
  and the β planes step 3 computes (mirrored β, runs of slices);
* :mod:`~radsvd.volumes.landscape.kernels`: the numba kernels of steps 1, 1b and 2 and of
  the [vᵀd] tables;
* :mod:`~radsvd.volumes.landscape.transforms`: step 3, two ducc0 passes per chunk of slices;
* :mod:`~radsvd.volumes.landscape.search`: the grid maximiser fused with step 3, an exact
  branch and bound, and the rounding margins of its bounds;
* :mod:`~radsvd.volumes.landscape.tail`: the rows step 2 leaves to the search of compressed
  plans, and the bound of what they can add;
* :mod:`~radsvd.volumes.landscape.plan`: :class:`LandscapePlan`, which strings steps 0–3.
"""

from radsvd.volumes.landscape.layout import beta_grid, default_M
from radsvd.volumes.landscape.plan import STEPS, LandscapePlan, landscapes, prepare

__all__ = ["LandscapePlan", "prepare", "landscapes", "beta_grid", "default_M", "STEPS"]
