"""Streaming accuracy metrics of approximate landscapes (paper §3.5, Fig 8; DESIGN §2).

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


class LandscapeMetrics:
    """Accumulate rel. Frobenius error, correlation and backward-error fraction f over tiles."""

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
        self.ss_diff += float(np.sum(d * d))
        self.ss_ref += float(np.sum(X * X))
        # Pearson: merge (n, means, centred second moments) of the tile (Chan et al.)
        nb = X.size
        mx_b = float(X.mean())
        my_b = float(XH.mean())
        xc = X - mx_b
        yc = XH - my_b
        sxx_b = float(np.sum(xc * xc))
        syy_b = float(np.sum(yc * yc))
        sxy_b = float(np.sum(xc * yc))
        na = self.n
        n = na + nb
        dx = mx_b - self.mx
        dy = my_b - self.my
        self.sxx += sxx_b + dx * dx * na * nb / n
        self.syy += syy_b + dy * dy * na * nb / n
        self.sxy += sxy_b + dx * dy * na * nb / n
        self.mx += dx * nb / n
        self.my += dy * nb / n
        self.n = n
        # backward error fraction
        j = np.argmax(XH, axis=1)
        xstar = X[np.arange(X.shape[0]), j]
        self.f_sum += float(np.sum(np.mean(X <= xstar[:, None], axis=1)))
        self.n_pairs += X.shape[0]
        return self

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
