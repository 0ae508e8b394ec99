"""radsvd: radial- and degree-SVD for fast rigid rotational alignment (Rangan 2022)."""

from radsvd._jit import set_threads, threads
from radsvd._validate import InputError
from radsvd.grids import PolarGrid, radial_quadrature

__version__ = "0.1.0"

__all__ = ["InputError", "PolarGrid", "radial_quadrature", "set_threads", "threads"]
