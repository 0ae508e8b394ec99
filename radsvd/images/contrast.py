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

__all__ = ["ContrastEvidence", "contrast_evidence", "choose_contrast", "decide_contrast",
           "sample_rows", "SAMPLE"]

SAMPLE = 32   # particles in the subsample (evenly spaced through the whole selected table)


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


def sample_rows(n_rows: int, n_sample: int = SAMPLE) -> np.ndarray:
    """The subsample of the check: ``n_sample`` rows evenly spaced through ``n_rows`` (the
    whole selected table, so every shard of a run checks the same particles)."""
    n_rows = int(n_rows)
    if n_rows <= 0:
        return np.zeros(0, np.int64)
    return np.unique(np.linspace(0, n_rows - 1, min(int(n_sample), n_rows)).round()
                     .astype(np.int64))


def contrast_evidence(prob, rank=6, max_shift_px: float = 0.0, step_px: float = 1.0,
                      n_sample: int = SAMPLE, images=None, rows=None,
                      basis=None) -> ContrastEvidence:
    """The scores both ways (module doc) for a :class:`radsvd.images.particles.ParticleProblem`:
    of ``images`` (preprocessed, as given) of its table rows ``rows``, or by default of
    :func:`sample_rows` of its in-memory images.  ``basis``: the run's radial basis for rank
    H (default: radial-SVD pooled over the CTF groups, no shifts)."""
    from radsvd.images.align import align_images
    from radsvd.images.methods import make_basis
    from radsvd.images.polar import images_to_fb

    if images is None:
        pick = sample_rows(len(prob.images), n_sample)
        images, labels = prob.images[pick], prob.labels[
            pick if prob.rows is None else prob.rows[pick]]
    else:
        labels = prob.labels[np.asarray(rows, np.int64)]
    if len(images) == 0:
        return ContrastEvidence(float("nan"), float("nan"), 0)
    H = None if rank in (None, "full") else int(rank)
    if H is not None and basis is None:
        basis = make_basis("radial-svd", prob.grid, prob.templates,
                           ctf_rings=None if prob.counts is None else prob.rings,
                           group_sizes=prob.counts)
    best = np.empty((2, len(images)))
    for g in np.unique(labels):
        sel = np.flatnonzero(labels == g)
        fb = images_to_fb(images[sel], prob.grid)
        res = align_images(np.concatenate([fb, -fb]), prob.targets(int(g)), prob.grid,
                           basis=basis if H is not None else None, rank=H,
                           max_shift=max_shift_px, shift_step=step_px, box=prob.box)
        best[:, sel] = res.score.reshape(2, sel.size)
    return ContrastEvidence(float(best[0].mean()), float(best[1].mean()), int(len(images)))


def decide_contrast(invert, ev: ContrastEvidence) -> bool:
    """The contrast policy: ``invert`` "auto" follows the evidence (as given when there is
    none); True/False is obeyed, with a warning when the evidence disagrees."""
    if invert == "auto":
        return bool(ev.n and ev.prefers_inverted)
    use = bool(invert)
    if ev.n and use != ev.prefers_inverted:
        flag = "--invert" if use else "--no-invert"
        warnings.warn(f"{flag} disagrees with the particles: {ev.describe()}; the poses "
                      "are likely wrong (use --invert auto)", stacklevel=3)
    return use


def choose_contrast(prob, invert, **options) -> tuple[bool, ContrastEvidence]:
    """Apply the contrast policy (:func:`decide_contrast`) to a problem prepared WITHOUT
    inversion, its images in memory.  Negates ``prob.images`` in place when inverting;
    returns (inverted, evidence).  The streamed run checks a subsample read from the stacks
    instead (:func:`radsvd.images.particles.check_contrast`)."""
    ev = contrast_evidence(prob, **options)
    use = decide_contrast(invert, ev)
    if use:
        np.negative(prob.images, out=prob.images)
    return use, ev
