"""finufft type-2 transforms at the data's precision, with plans reused over many transforms.

Precision and tolerance (:func:`transform_precision`): by default the transform runs at the
precision of the input data — single precision at tolerance 1e-6 for float32 (and smaller)
data, double at 1e-12 for float64 — since cryo-EM maps and stacks are float32 with noise far
above 1e-6.  ``eps=`` and ``precision=`` override either; an ``eps`` below what single
precision reaches (1e-6) selects double precision.  Results are returned in complex128
whatever the precision, so every consumer sees one dtype.

:class:`Type2` holds one finufft plan per batch size with the points set once, and runs it
on many batches (``setpts`` sorts the points: 30–40 ms for the 235 200 sphere-rule points of
K = 48, paid once instead of per map).
"""

from __future__ import annotations

import numpy as np

from radsvd._precision import check_precision
from radsvd._validate import InputError

SINGLE_EPS = 1e-6     # default tolerance in single precision, and the smallest it reaches
DOUBLE_EPS = 1e-12    # default tolerance in double precision


def data_is_single(dtype) -> bool:
    """True for data with at most single precision: float16/32, (u)int8/16, bool."""
    dt = np.dtype(dtype)
    return (dt.kind == "f" and dt.itemsize <= 4) or (dt.kind in "iub" and dt.itemsize <= 2)


def transform_precision(dtype, eps=None, precision=None) -> tuple[str, float]:
    """The (precision, eps) of a transform of data of ``dtype``.

    ``precision``: None/"auto" (single for :func:`data_is_single` data unless ``eps`` asks
    for less than 1e-6, else double), "single" or "double".  ``eps``: None (1e-6 single,
    1e-12 double) or a tolerance in (0, 1).  Raises :class:`InputError` for other values and
    for single precision below 1e-6.
    """
    precision = check_precision("auto" if precision is None else precision)
    if eps is not None:
        if isinstance(eps, bool) or not isinstance(eps, (int, float, np.floating)) \
                or not 0 < eps < 1:
            raise InputError(f"eps must be a number in (0, 1), got {eps!r}")
        eps = float(eps)
    if precision == "auto":
        single = data_is_single(dtype) and (eps is None or eps >= SINGLE_EPS)
        precision = "single" if single else "double"
    if eps is None:
        eps = SINGLE_EPS if precision == "single" else DOUBLE_EPS
    if precision == "single" and eps < SINGLE_EPS:
        raise InputError(f"eps = {eps:g} is below what single precision reaches "
                         f"({SINGLE_EPS:g}); use precision='double'")
    return precision, eps


class Type2:
    """finufft type-2 transforms (uniform modes → the given points), sign -1.

    ``points``: the coordinates, one array per dimension (finufft pairs the first with the
    first array axis); ``shape``: the modes' shape.  ``__call__(f)`` takes a stack
    (n, *shape) of real data and returns (n, n_points) complex128.  Not thread-safe: give
    each thread its own instance.
    """

    def __init__(self, points, shape, precision: str, eps: float, threads: int = 1,
                 upsampfac: float | None = None):
        self.real = np.float32 if precision == "single" else np.float64
        self.complex = np.complex64 if precision == "single" else np.complex128
        self.points = [np.ascontiguousarray(p, dtype=self.real) for p in points]
        self.shape = tuple(int(s) for s in shape)
        self.precision, self.eps, self.threads = precision, eps, int(threads)
        # upsampfac 1.25: a smaller fine grid, a wider kernel (finufft warns that it narrows
        # the kernel at some tolerances; the tolerance is still met, measured by the tests)
        self._options = {} if upsampfac is None else dict(upsampfac=upsampfac, showwarn=0)
        self._plans = {}

    def _plan(self, n: int):
        import finufft

        plan = self._plans.get(n)
        if plan is None:
            plan = finufft.Plan(2, self.shape, n_trans=n, eps=self.eps, isign=-1,
                                dtype=self.complex, nthreads=self.threads, **self._options)
            plan.setpts(*self.points)
            self._plans[n] = plan
        return plan

    def __call__(self, f, native: bool = False) -> np.ndarray:
        """(n, n_points) complex128 (``native``: at the transform's precision)."""
        f = np.asarray(f)
        n = f.shape[0]
        data = f.astype(self.complex)
        out = self._plan(n).execute(data if n > 1 else data[0]).reshape(n, -1)
        return out if native else out.astype(np.complex128, copy=False)
