"""Shard-mergeable state of radsvd.metrics.LandscapeMetrics (DESIGN §2 metrics).

Each alignment shard accumulates its tiles with the library's LandscapeMetrics and saves the
accumulator's state; the gather rule merges the states of all shards (counts and sums add,
means and centred co-moments merge with Chan et al.'s pairwise formulas) and asks the merged
accumulator for its result.

TEMPORARY (workflow-side): radsvd.metrics.LandscapeMetrics has no merge() of two
accumulators yet; this module only adds that, the statistics themselves are the library's.
"""

from __future__ import annotations

import numpy as np

from radsvd.metrics import LandscapeMetrics

FIELDS = ("n_pairs", "n", "ss_diff", "ss_ref", "mx", "my", "sxx", "syy", "sxy", "f_sum")


def state(m: LandscapeMetrics) -> np.ndarray:
    return np.array([float(getattr(m, k)) for k in FIELDS])


def from_state(a) -> LandscapeMetrics:
    m = LandscapeMetrics()
    for k, v in zip(FIELDS, np.asarray(a, dtype=float)):
        setattr(m, k, int(v) if k in ("n_pairs", "n") else float(v))
    return m


def merge(a: LandscapeMetrics, b: LandscapeMetrics) -> LandscapeMetrics:
    """A new accumulator equal to having fed a's tiles and then b's."""
    out = LandscapeMetrics()
    n = a.n + b.n
    out.n, out.n_pairs = n, a.n_pairs + b.n_pairs
    out.ss_diff, out.ss_ref, out.f_sum = (a.ss_diff + b.ss_diff, a.ss_ref + b.ss_ref,
                                          a.f_sum + b.f_sum)
    if n == 0:
        return out
    dx, dy = b.mx - a.mx, b.my - a.my
    w = a.n * b.n / n
    out.sxx = a.sxx + b.sxx + dx * dx * w
    out.syy = a.syy + b.syy + dy * dy * w
    out.sxy = a.sxy + b.sxy + dx * dy * w
    out.mx = a.mx + dx * b.n / n
    out.my = a.my + dy * b.n / n
    return out
