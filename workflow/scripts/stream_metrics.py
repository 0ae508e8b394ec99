"""Streaming sufficient statistics of the Fig 8 / Fig 11 metrics (DESIGN §2), mergeable
across tiles and shards so that no job holds every landscape:

- relative Frobenius error ||X^H − X||_F / ||X||_F: sums of squares;
- Pearson correlation of X^H with X over the whole array: count, means and co-moments,
  merged with Chan et al.'s pairwise update (numerically stable);
- backward-error fraction f: per pair γ* = first argmax of X^H, f_pair = fraction of the
  grid angles with X(γ) ≤ X(γ*); f = mean over pairs.

TEMPORARY (workflow-side): used while radsvd.metrics has no streaming accumulator.
"""

from __future__ import annotations

import numpy as np

FIELDS = ("n", "mean_x", "mean_y", "m2x", "m2y", "cxy", "sse", "ssx", "f_sum", "n_pairs")


class MetricStats:
    """Accumulates the statistics of one (method, H) over tiles of pairs."""

    def __init__(self, **values):
        for k in FIELDS:
            setattr(self, k, float(values.get(k, 0.0)))

    def as_array(self) -> np.ndarray:
        return np.array([getattr(self, k) for k in FIELDS])

    @classmethod
    def from_array(cls, a) -> "MetricStats":
        return cls(**dict(zip(FIELDS, np.asarray(a, dtype=float))))

    def add(self, X, XH) -> None:
        """Add a tile: X, XH of shape (pairs, angles) (full and compressed landscapes)."""
        X = np.asarray(X, dtype=np.float64)
        XH = np.asarray(XH, dtype=np.float64)
        if X.shape != XH.shape or X.ndim != 2:
            raise ValueError(f"landscape tiles differ in shape: {X.shape} vs {XH.shape}")
        d = XH - X
        other = MetricStats(sse=float(np.sum(d * d)), ssx=float(np.sum(X * X)))
        other.n = float(X.size)
        other.mean_x = float(X.mean())
        other.mean_y = float(XH.mean())
        dx, dy = X - other.mean_x, XH - other.mean_y
        other.m2x, other.m2y, other.cxy = (float(np.sum(dx * dx)), float(np.sum(dy * dy)),
                                           float(np.sum(dx * dy)))
        star = np.argmax(XH, axis=1)
        best = X[np.arange(X.shape[0]), star]
        other.f_sum = float(np.sum(np.mean(X <= best[:, None], axis=1)))
        other.n_pairs = float(X.shape[0])
        self.merge(other)

    def merge(self, o: "MetricStats") -> "MetricStats":
        n = self.n + o.n
        if n == 0:
            return self
        dx, dy = o.mean_x - self.mean_x, o.mean_y - self.mean_y
        w = self.n * o.n / n
        self.m2x += o.m2x + dx * dx * w
        self.m2y += o.m2y + dy * dy * w
        self.cxy += o.cxy + dx * dy * w
        self.mean_x += dx * o.n / n
        self.mean_y += dy * o.n / n
        self.n = n
        for k in ("sse", "ssx", "f_sum", "n_pairs"):
            setattr(self, k, getattr(self, k) + getattr(o, k))
        return self

    @property
    def frobenius_error(self) -> float:
        return float(np.sqrt(self.sse / self.ssx)) if self.ssx > 0 else float("nan")

    @property
    def correlation(self) -> float:
        den = np.sqrt(self.m2x * self.m2y)
        return float(self.cxy / den) if den > 0 else float("nan")

    @property
    def backward_f(self) -> float:
        return self.f_sum / self.n_pairs if self.n_pairs else float("nan")
