"""Radial bases by name, for CTF-grouped targets: the one dispatch the CLI and workflow share.

Method names (hyphenated, as on the command line and in ``RadialBasis.method``):
- ``radial-svd``          eigenvectors of the kernel C of eq. 83/85 (:func:`radial_svd`);
- ``shift-svd``           eigenvectors of the shift-averaged kernel of eq. 118 for the disc of
                          shifts searched (:func:`radsvd.images.shifts.shift_kernel`);
- ``gaussian-shift-svd``  eigenvectors of eq. 119–121 for Gaussian shifts of width σ, from the
                          map's shell coefficients, no templates
                          (:func:`radsvd.images.shifts.gaussian_shift_kernel`);
- ``frequency-marching``  the lowest-frequency rings (baseline);
- ``energy-pca``          PCA of the rings by energy, q = 0 included (baseline).

CTF groups (paper §3.5 and the reference code): particles are grouped by their ring-averaged
CTF (:func:`ctf_groups`); group g's targets are the templates times its ring CTF
(:func:`group_targets`); the kernels pool Σ_c n_c diag(CTF_c) C diag(CTF_c) / Σ_c n_c over
the groups (``kernel="pooled"``) or use one group's CTF (``ctf_rings`` of one row).
"""

from __future__ import annotations

import numpy as np

from radsvd._validate import InputError
from radsvd.images._radial import METHODS, q_multiplicity

__all__ = ["METHODS", "canonical_method", "ctf_groups", "group_targets", "make_basis",
           "unit_norm_targets"]


def canonical_method(name: str) -> str:
    """``name`` if it is one of :data:`METHODS`; otherwise an :class:`InputError` (for an
    underscore spelling such as ``radial_svd``, naming the hyphenated one)."""
    if not isinstance(name, str):
        raise InputError(f"method must be a string, one of {', '.join(METHODS)}; got {name!r}")
    if name in METHODS:
        return name
    hint = ""
    if name.replace("_", "-") in METHODS:
        hint = f" (did you mean {name.replace('_', '-')!r}?)"
    raise InputError(f"unknown method {name!r}{hint}; choose one of {', '.join(METHODS)}")


def ctf_groups(table, grid, box: int, tolerance: float = 0.05):
    """Group particles by ring-averaged CTF (greedy, relative L2 ``tolerance`` weighted by the
    radial quadrature): :class:`radsvd.data.ctf.CTFGroups` for a normalised STAR table whose
    images have ``box`` pixels of ``table.pixel_size`` Å."""
    from radsvd.data.ctf import cluster_ctf, ctf_polar_stack
    from radsvd.data.stacks import ctf_params

    rings = ctf_polar_stack(ctf_params(table), grid, int(box),
                            table["pixel_size"].to_numpy(np.float64), ring=True)
    return cluster_ctf(rings, weights=grid.w, tolerance=tolerance)


def group_targets(templates, ring) -> np.ndarray:
    """Targets of one CTF group: Fourier–Bessel templates (n, R, Q//2+1) times its ring CTF (R,)."""
    t = np.asarray(templates)
    r = np.asarray(ring, np.float64)
    if t.ndim != 3 or r.shape != (t.shape[1],):
        raise InputError(f"group_targets: templates {t.shape} and ring CTF {r.shape} do not match")
    return t * r[None, :, None]


def unit_norm_targets(fb, grid) -> np.ndarray:
    """Targets scaled to unit norm Σ_r w_r Σ_q |b(r, q)|² = 1 over every periodic q (eq. 35
    at γ = 0 of a target with itself), so that the best target is the best correlated one
    rather than the one with the most energy; zero targets stay zero."""
    norm2 = np.einsum("nrq,r,q->n", np.abs(fb) ** 2, grid.w, q_multiplicity(grid.Q, True))
    scale = np.where(norm2 > 0, 1.0 / np.sqrt(np.where(norm2 > 0, norm2, 1.0)), 0.0)
    return fb * scale.astype(fb.real.dtype)[:, None, None]


def make_basis(method: str, grid, templates=None, *, ctf_rings=None, group_sizes=None,
               shifts=None, box: int | None = None, sigma: float | None = None, shells=None):
    """The radial basis of ``method`` for CTF-free ``templates`` (n, R, Q//2+1) seen through
    the CTF groups ``ctf_rings`` (m, R) of sizes ``group_sizes`` (None: no CTF).

    ``shift-svd`` needs ``shifts`` (S, 2) pixels of an N = ``box`` image; ``gaussian-shift-svd``
    needs ``shells`` (:func:`radsvd.volumes.shells.map_shells`), ``sigma`` (pixels) and ``box``.
    """
    from radsvd.images.basis import RadialBasis, energy_pca, frequency_marching, radial_svd
    from radsvd.images.shifts import gaussian_shift_kernel, shift_kernel

    method = canonical_method(method)

    def need(name, value):
        if value is None:
            raise InputError(f"method {method}: needs {name}")
        return value

    if method == "frequency-marching":
        return frequency_marching(grid)
    if method == "gaussian-shift-svd":
        C = gaussian_shift_kernel(need("shells", shells), grid, float(need("sigma", sigma)),
                                  int(need("box", box)), ctf=ctf_rings, group_sizes=group_sizes)
        return RadialBasis.from_kernel(C, grid, method)
    templates = need("templates", templates)
    if method == "radial-svd":
        return radial_svd(templates, grid, ctf=ctf_rings, group_sizes=group_sizes)
    if method == "shift-svd":
        C = shift_kernel(templates, grid, need("shifts", shifts), int(need("box", box)),
                         ctf=ctf_rings, group_sizes=group_sizes)
        return RadialBasis.from_kernel(C, grid, method)
    # energy-pca: energy of the CTF-modulated templates, pooled over groups through the
    # count-weighted RMS ring CTF (the energy kernel has no per-group form)
    if ctf_rings is not None:
        rings = np.atleast_2d(np.asarray(ctf_rings, np.float64))
        rms = np.sqrt(np.average(rings ** 2, axis=0, weights=group_sizes))
        templates = group_targets(templates, rms)
    return energy_pca(templates, grid)
