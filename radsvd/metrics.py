"""Streaming accuracy metrics of approximate landscapes (paper §3.5, Fig 8).

Given exact landscapes X and approximations X^H for the same pairs, fed tile by tile as
(pairs × angles) arrays (2D: Q angles γ; 3D: the flattened rotation grid):
- relative Frobenius error ||X^H − X||_F / ||X||_F over the whole array;
- Pearson correlation between X^H and X over the whole array;
- backward-error fraction f: per pair γ* = argmax X^H (first maximum), f_pair = fraction of
  the angles with X(γ) ≤ X(γ*), f = mean over pairs.
Accumulation is in float64, tile statistics merged with Chan's pairwise formulas, in the order
the tiles arrive (deterministic).  Nothing of size pairs × angles is kept.
"""

from __future__ import annotations

import math

import numpy as np

from radsvd._validate import InputError

__all__ = ["LandscapeMetrics", "sweep"]

_STATE_FIELDS = ("n_pairs", "n", "ss_diff", "ss_ref", "mx", "my", "sxx", "syy", "sxy", "f_sum")


class LandscapeMetrics:
    """Relative Frobenius error, correlation and backward-error fraction f of approximate
    landscapes X^H against exact ones X, accumulated tile by tile in float64 (§3.5).

    Add tiles with :meth:`update`, read the metrics with :meth:`result`.

    Examples
    --------
    >>> X = np.array([[0.0, 1.0, 2.0, 1.0]])
    >>> m = radsvd.LandscapeMetrics().update(X, X + 0.1)
    >>> sorted(m.result())
    ['correlation', 'f', 'n_pairs', 'rel_frobenius']
    >>> round(m.result()["correlation"], 6), m.result()["f"]
    (1.0, 1.0)
    """

    def __init__(self):
        self.n_pairs = 0
        self.n = 0
        self.ss_diff = 0.0
        self.ss_ref = 0.0
        self.mx = 0.0
        self.my = 0.0
        self.sxx = 0.0
        self.syy = 0.0
        self.sxy = 0.0
        self.f_sum = 0.0

    def update(self, X, XH) -> "LandscapeMetrics":
        """Add a tile: X exact, XH approximate, both (pairs, angles) (1-D: one pair)."""
        X = np.asarray(X, dtype=np.float64)
        XH = np.asarray(XH, dtype=np.float64)
        if X.ndim == 1:
            X, XH = X[None], XH[None]
        if X.shape != XH.shape or X.ndim != 2:
            raise InputError(f"X and XH must have the same (pairs, angles) shape, got "
                             f"{X.shape} and {XH.shape}")
        if X.size == 0:
            return self
        if not (np.isfinite(X).all() and np.isfinite(XH).all()):
            raise InputError("landscapes contain NaN or inf")
        d = XH - X
        tile = LandscapeMetrics()
        tile.ss_diff = float(np.sum(d * d))
        tile.ss_ref = float(np.sum(X * X))
        tile.n = X.size
        tile.mx = float(X.mean())
        tile.my = float(XH.mean())
        xc = X - tile.mx
        yc = XH - tile.my
        tile.sxx = float(np.sum(xc * xc))
        tile.syy = float(np.sum(yc * yc))
        tile.sxy = float(np.sum(xc * yc))
        # backward error fraction
        j = np.argmax(XH, axis=1)
        xstar = X[np.arange(X.shape[0]), j]
        tile.f_sum = float(np.sum(np.mean(X <= xstar[:, None], axis=1)))
        tile.n_pairs = X.shape[0]
        return self.merge(tile)

    def merge(self, other: "LandscapeMetrics") -> "LandscapeMetrics":
        """Add another accumulator's pairs (as if its tiles came after ours); returns self.

        Sums and counts add; means and centred co-moments merge with Chan et al.'s pairwise
        formulas, so shards of a streaming run can be combined exactly.
        """
        n = self.n + other.n
        if other.n:
            dx, dy = other.mx - self.mx, other.my - self.my
            w = self.n * other.n / n
            self.sxx += other.sxx + dx * dx * w
            self.syy += other.syy + dy * dy * w
            self.sxy += other.sxy + dx * dy * w
            self.mx += dx * other.n / n
            self.my += dy * other.n / n
        self.n = n
        self.n_pairs += other.n_pairs
        self.ss_diff += other.ss_diff
        self.ss_ref += other.ss_ref
        self.f_sum += other.f_sum
        return self

    def state(self) -> np.ndarray:
        """The accumulator as a float64 vector (for saving shard results); see from_state."""
        return np.array([float(getattr(self, k)) for k in _STATE_FIELDS])

    @classmethod
    def from_state(cls, state) -> "LandscapeMetrics":
        """Rebuild an accumulator saved with :meth:`state`."""
        a = np.asarray(state, dtype=np.float64)
        if a.shape != (len(_STATE_FIELDS),) or not np.isfinite(a).all():
            raise InputError(f"metrics state: expected {len(_STATE_FIELDS)} finite numbers, "
                             f"got shape {a.shape}")
        m = cls()
        for k, v in zip(_STATE_FIELDS, a):
            setattr(m, k, int(v) if k in ("n_pairs", "n") else float(v))
        return m

    def result(self) -> dict:
        """{'rel_frobenius', 'correlation', 'f', 'n_pairs'} (NaN where undefined)."""
        if self.n_pairs == 0:
            raise InputError("no landscapes were added")
        rel = math.sqrt(self.ss_diff / self.ss_ref) if self.ss_ref > 0 else math.nan
        den = math.sqrt(self.sxx * self.syy)
        corr = self.sxy / den if den > 0 else math.nan
        return dict(rel_frobenius=rel, correlation=corr, f=self.f_sum / self.n_pairs,
                    n_pairs=self.n_pairs)


def sweep(tiles, n_approx: int | None = None) -> list[dict]:
    """Metrics of several approximations at once from a stream of tiles.

    ``tiles`` yields ``(X, [XH_1, XH_2, ...])`` (each (pairs, angles)); returns one result dict
    per approximation, in order.  2D: :func:`radsvd.images.rank_sweep` builds the stream.
    """
    acc = None
    for X, XHs in tiles:
        if acc is None:
            acc = [LandscapeMetrics() for _ in XHs]
        if len(XHs) != len(acc):
            raise InputError("every tile must carry the same number of approximations")
        for m, XH in zip(acc, XHs):
            m.update(X, XH)
    if acc is None:
        raise InputError("the tile stream was empty")
    if n_approx is not None and len(acc) != n_approx:
        raise InputError(f"expected {n_approx} approximations per tile, got {len(acc)}")
    return [m.result() for m in acc]
