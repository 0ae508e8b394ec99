"""Contrast check: do the particles match the map better as given or inverted?

A simulator or a pipeline with the opposite CTF sign (or dark-on-light particles) leaves the
search running normally and returning wrong poses, with lower scores the only sign.  The
landscape is linear in the image, so inverting a particle turns X into −X: the inverted
particles' best score is −min X.  The check aligns a subsample of the particles and their
negatives to the templates (the global search at rank H, rotations × the command's shifts)
and compares the mean best correlation both ways; the larger wins.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

__all__ = ["ContrastEvidence", "contrast_evidence", "choose_contrast", "SAMPLE"]

SAMPLE = 32   # particles in the subsample (evenly spaced through the chunk)


@dataclass(frozen=True)
class ContrastEvidence:
    """Mean best score of the subsample as given and inverted, and its size."""

    given: float
    inverted: float
    n: int

    @property
    def prefers_inverted(self) -> bool:
        return self.inverted > self.given

    def describe(self) -> str:
        choice = "inverted" if self.prefers_inverted else "as given"
        return (f"contrast: {self.n} particles match the map better {choice} (mean best "
                f"score {self.given:.4g} as given, {self.inverted:.4g} inverted)")


def contrast_evidence(prob, rank=6, max_shift_px: float = 0.0, step_px: float = 1.0,
                      n_sample: int = SAMPLE) -> ContrastEvidence:
    """The scores both ways (module doc) for a prepared
    :class:`radsvd.images.particles.ParticleProblem` (its images taken as given)."""
    from radsvd.images.align import align_images
    from radsvd.images.methods import make_basis
    from radsvd.images.polar import images_to_fb

    n = len(prob.images)
    pick = np.unique(np.linspace(0, n - 1, min(int(n_sample), n)).round().astype(np.int64))
    H = None if rank in (None, "full") else int(rank)
    basis = None if H is None else make_basis(
        "radial-svd", prob.grid, prob.templates,
        ctf_rings=None if prob.counts is None else prob.rings, group_sizes=prob.counts)
    best = np.empty((2, pick.size))
    for g in np.unique(prob.labels[pick]):
        sel = np.flatnonzero(prob.labels[pick] == g)
        fb = images_to_fb(prob.images[pick[sel]], prob.grid)
        res = align_images(np.concatenate([fb, -fb]), prob.targets(int(g)), prob.grid,
                           basis=basis, rank=H, max_shift=max_shift_px, shift_step=step_px,
                           box=prob.box)
        best[:, sel] = res.score.reshape(2, sel.size)
    return ContrastEvidence(float(best[0].mean()), float(best[1].mean()), int(pick.size))


def choose_contrast(prob, invert, **options) -> tuple[bool, ContrastEvidence]:
    """Apply the contrast policy to a problem prepared WITHOUT inversion: ``invert`` "auto"
    follows the evidence; True/False is obeyed, with a warning when the evidence disagrees.
    Negates ``prob.images`` in place when inverting; returns (inverted, evidence)."""
    ev = contrast_evidence(prob, **options)
    if invert == "auto":
        use = ev.prefers_inverted
    else:
        use = bool(invert)
        if use != ev.prefers_inverted:
            flag = "--invert" if use else "--no-invert"
            warnings.warn(f"{flag} disagrees with the particles: {ev.describe()}; the poses "
                          "are likely wrong (use --invert auto)", stacklevel=2)
    if use:
        np.negative(prob.images, out=prob.images)
    return use, ev
