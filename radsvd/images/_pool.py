"""Former home of the 2D task pool, now :mod:`radsvd._pool` (kept for existing imports)."""

from radsvd._pool import n_workers, pool_map
from radsvd._validate import all_finite

__all__ = ["n_workers", "pool_map", "all_finite"]
