"""Pose assignment for a particle STAR file and a map: templates, CTF groups, rotation × shift
search, RELION poses (the library side of ``radsvd align-particles``).

Pipeline: read the STAR (RELION 1 / 3.0 / 3.1) → load the first n particles → the workflow's
preprocessing (edge artefacts, centring on the STAR's origins unless ``ignore_origins``,
Fourier cropping to ``box``, normalisation, optional contrast inversion) → the map cropped to
the same box → templates on the reference shell directions at K → particles grouped by ring
CTF, each group aligned to the templates times its ring CTF with one radial basis pooled over
the groups (:func:`radsvd.images.methods.make_basis`) → RELION poses
(:func:`radsvd.data.poses.compose_poses`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from radsvd._validate import InputError

__all__ = ["ParticlePoses", "ParticleProblem", "align_particles", "load_particle_table",
           "prepare_particles", "search_poses"]


@dataclass
class ParticlePoses:
    """Poses (rot, tilt, psi, shift_x, shift_y in RELION units), scores and the raw results."""

    poses: pd.DataFrame
    score: np.ndarray
    best_target: np.ndarray
    angle: np.ndarray
    shift: np.ndarray              # pixels of the aligned (preprocessed) images
    ctf_group: np.ndarray
    template_rotations: np.ndarray
    info: dict = field(default_factory=dict)
    likelihoods: object = None     # radsvd.images.likelihood.Likelihoods, if asked for

    def save_npz(self, path) -> None:
        from radsvd._files import save_npz

        arrays = {f"info_{k}": np.asarray(v) for k, v in self.info.items()}
        save_npz(path, best_target=self.best_target, angle=self.angle, shift=self.shift,
                 score=self.score, ctf_group=self.ctf_group,
                 template_rotations=self.template_rotations,
                 rot=self.poses["rot"].to_numpy(), tilt=self.poses["tilt"].to_numpy(),
                 psi=self.poses["psi"].to_numpy(), origin_x_A=self.poses["shift_x"].to_numpy(),
                 origin_y_A=self.poses["shift_y"].to_numpy(), **arrays)


_CANDIDATE_CHUNK = 512   # particles per all-pairs search when --refine picks candidates


def load_particle_table(star, n: int | None = None, no_ctf: bool = False, voltage=None,
                        cs=None, amplitude_contrast=None) -> pd.DataFrame:
    """The normalised STAR table of the first n particles, optics defaults filled in; raises
    if CTF columns are missing (unless ``no_ctf``)."""
    from radsvd.data.io import read_star

    table = read_star(star, require_ctf=False)
    if n is not None:
        if int(n) < 1:
            raise InputError(f"n must be >= 1, got {n}")
        table = table.iloc[: int(n)]
    for key, value in (("voltage", voltage), ("cs", cs),
                       ("amplitude_contrast", amplitude_contrast)):
        if value is not None and (key not in table.columns or table[key].isna().any()):
            filled = table[key].fillna(value) if key in table.columns else float(value)
            table = table.assign(**{key: filled})
    if not no_ctf:
        need = {"defocus_u": "rlnDefocusU", "defocus_v": "rlnDefocusV", "voltage": "rlnVoltage",
                "cs": "rlnSphericalAberration", "amplitude_contrast": "rlnAmplitudeContrast"}
        missing = [label for key, label in need.items()
                   if key not in table.columns or table[key].isna().any()]
        if missing:
            raise InputError(f"{star}: missing CTF column(s) {', '.join(missing)}; give "
                             "--voltage/--cs/--amplitude-contrast for the optics, or --no-ctf "
                             "to align without CTF")
    return table


@dataclass
class ParticleProblem:
    """Everything the search needs: preprocessed images (n, box, box), their table, the map at
    the box, the grid, template poses and FB templates, CTF groups (labels, ring CTFs, sizes:
    None without CTF), pixel size p (Å) of the images and the origins they were centred by."""

    images: np.ndarray
    table: pd.DataFrame
    volume: np.ndarray
    grid: object
    rotations: np.ndarray
    templates: np.ndarray
    labels: np.ndarray
    rings: np.ndarray
    counts: np.ndarray | None
    pixel_size: float
    origin_x: np.ndarray
    origin_y: np.ndarray

    @property
    def box(self) -> int:
        return int(self.images.shape[-1])

    def targets(self, g: int) -> np.ndarray:
        """Targets of CTF group g: templates × ring CTF, each scaled to unit norm (so the
        score ranks templates by correlation rather than by their energy)."""
        from radsvd.images.basis import _q_multiplicity
        from radsvd.images.methods import group_targets

        t = group_targets(self.templates, self.rings[g])
        norm2 = np.einsum("nrq,r,q->n", np.abs(t) ** 2, self.grid.w,
                          _q_multiplicity(self.grid.Q, True))
        return t / np.sqrt(norm2)[:, None, None]


def prepare_particles(star, map_path, K: float = 48.0, box: int | None = None,
                      n: int | None = None, data_dir=None, invert: bool = False,
                      ignore_origins: bool = False, no_ctf: bool = False, voltage=None,
                      cs=None, amplitude_contrast=None, ctf_tolerance: float = 0.05,
                      fix_edges: bool = True) -> ParticleProblem:
    """Read, preprocess and group the particles; crop the map; make the templates (module
    doc).  ``fix_edges``: replace padding strips and outlier pixels (off for noise-free images,
    whose particle pixels are outliers to a noise-free background)."""
    from radsvd.data.io import check_map_matches_particles, load_particles, read_mrc
    from radsvd.data.preprocess import downsample_volume, preprocess
    from radsvd.data.templates import project_fourier
    from radsvd.data.viewing import shell_directions
    from radsvd.grids import PolarGrid
    from radsvd.images.methods import ctf_groups
    from radsvd.images.polar import to_fb

    table = load_particle_table(star, n, no_ctf, voltage, cs, amplitude_contrast)
    images, table = load_particles(table, data_dir=data_dir, dtype=np.float64,
                                   require_ctf=False)
    N0, p0 = images.shape[-1], float(table["pixel_size"].iloc[0])
    box = N0 if box is None else int(box)
    if not 8 <= box <= N0:
        raise InputError(f"box must be in [8, {N0}] (the particles' box), got {box}")
    origin_x = np.zeros(len(table)) if ignore_origins else table["shift_x"].to_numpy(np.float64)
    origin_y = np.zeros(len(table)) if ignore_origins else table["shift_y"].to_numpy(np.float64)
    images, table = preprocess(images, table, box=box, invert=invert, fix_edges=fix_edges,
                               center_shifts=not ignore_origins)
    volume, voxel = read_mrc(map_path)
    if voxel <= 0:
        raise InputError(f"{map_path}: the map header has no voxel size")
    check_map_matches_particles(volume.shape, voxel, N0, p0)
    if volume.shape[0] < box:
        raise InputError(f"the map has {volume.shape[0]} voxels per side, fewer than the "
                         f"box {box} the particles are aligned at; lower --box")
    if volume.shape[0] > box:
        volume = downsample_volume(volume, box)
    try:
        grid = PolarGrid(K=float(K))
        grid.check_box(box)
    except ValueError as exc:
        raise InputError(f"K: {exc}") from None
    rotations = shell_directions(grid.K).rotations()
    templates = to_fb(project_fourier(volume, rotations, grid))
    if no_ctf:
        labels, rings, counts = np.zeros(len(table), np.int64), np.ones((1, grid.R)), None
    else:
        groups = ctf_groups(table, grid, box, ctf_tolerance)
        labels, rings, counts = groups.labels, groups.rings, groups.counts
    return ParticleProblem(images, table, volume, grid, rotations, templates, labels, rings,
                           counts, float(table["pixel_size"].iloc[0]), origin_x, origin_y)


def align_particles(star, map_path, K: float = 48.0, rank=6, method: str = "radial-svd",
                    max_shift_A: float = 0.0, shift_step_A: float | None = None,
                    box: int | None = None, n: int | None = None, data_dir=None,
                    refine: bool = False, invert="auto", ignore_origins: bool = False,
                    no_ctf: bool = False, voltage=None, cs=None, amplitude_contrast=None,
                    ctf_tolerance: float = 0.05, sigma_A: float | None = None,
                    precision: str = "auto", progress: bool = False,
                    fix_edges: bool = True, refine_levels: int = 2,
                    refine_candidates: int = 2, likelihoods: bool = False,
                    noise_sigma: float | None = None) -> ParticlePoses:
    """Poses of the particles of ``star`` against the map at ``map_path`` (module doc).

    ``rank``: H or None/"full"; ``max_shift_A``/``shift_step_A``: the shift disc in Å (step
    default: one pixel of the preprocessed images); ``sigma_A``: σ_δ of gaussian-shift-svd
    (default max_shift/2).  ``refine``: local refinement of the viewing direction, in-plane
    angle and shift around the best ``refine_candidates`` templates, ``refine_levels`` tilt
    steps (:mod:`radsvd.images.refine`).  ``invert``: "auto" (default) inverts the contrast
    if a subsample matches the map better inverted; True/False force it, with a warning if
    the evidence disagrees (:mod:`radsvd.images.contrast`; the scores go into ``info``).
    ``likelihoods``: also the maximum and integrated log-likelihoods of every particle and
    template (:mod:`radsvd.images.likelihood`; ``noise_sigma``: the per-pixel noise of the
    preprocessed images, default each particle's background).
    Origins already in the STAR centre the images first (unless
    ``ignore_origins``) and are added to the shifts found.  Other options: see
    :func:`prepare_particles`.
    """
    from radsvd.images.methods import canonical_method

    method = canonical_method(method)
    if not (np.isfinite(max_shift_A) and max_shift_A >= 0):
        raise InputError(f"max_shift must be a finite number >= 0 (Å), got {max_shift_A!r}")
    if invert not in ("auto", True, False):
        raise InputError(f"invert must be 'auto', True or False, got {invert!r}")
    prob = prepare_particles(star, map_path, K, box, n, data_dir, False, ignore_origins,
                             no_ctf, voltage, cs, amplitude_contrast, ctf_tolerance, fix_edges)
    from radsvd.images.contrast import choose_contrast
    from radsvd.images.shifts import check_shift_options

    p = prob.pixel_size
    max_px, step_px = check_shift_options(max_shift_A / p, (shift_step_A or p) / p, prob.box)
    inverted, evidence = choose_contrast(prob, invert, rank=rank, max_shift_px=max_px,
                                         step_px=step_px)
    res = search_poses(prob, rank, method, max_shift_A, shift_step_A, refine, sigma_A,
                       precision, progress, refine_levels, refine_candidates)
    res.info.update(invert=inverted, contrast_given=evidence.given,
                    contrast_inverted=evidence.inverted, contrast_sample=evidence.n)
    if likelihoods:
        from radsvd.images.likelihood import particle_likelihoods

        res.likelihoods = particle_likelihoods(prob, rank, method, max_px, step_px,
                                               noise_sigma, sigma_shift_px=None
                                               if sigma_A is None else sigma_A / p)
    return res


def search_poses(prob: ParticleProblem, rank=6, method: str = "radial-svd",
                 max_shift_A: float = 0.0, shift_step_A: float | None = None,
                 refine: bool = False, sigma_A: float | None = None, precision: str = "auto",
                 progress: bool = False, refine_levels: int = 2,
                 refine_candidates: int = 2) -> ParticlePoses:
    """The rotation × shift search of a prepared :class:`ParticleProblem`, one pooled basis
    over its CTF groups; RELION poses by :func:`radsvd.data.poses.compose_poses`."""
    from radsvd.data.poses import compose_poses
    from radsvd.images.align import align_images
    from radsvd.images.methods import canonical_method, make_basis
    from radsvd.images.polar import images_to_fb
    from radsvd.images.shifts import check_shift_options, map_shells, shift_grid

    method = canonical_method(method)
    grid, p, box = prob.grid, prob.pixel_size, prob.box
    step_A = p if shift_step_A is None else float(shift_step_A)
    max_px, step_px = check_shift_options(max_shift_A / p, step_A / p, box)
    H = None if rank in (None, "full") else int(rank)
    basis = None
    if H is not None:
        sigma_px = max_px / 2 if sigma_A is None else float(sigma_A) / p
        basis = make_basis(method, grid, prob.templates,
                           ctf_rings=None if prob.counts is None else prob.rings,
                           group_sizes=prob.counts, shifts=shift_grid(max_px, step_px, box),
                           box=box, sigma=sigma_px,
                           shells=map_shells(prob.volume, grid)
                           if method == "gaussian-shift-svd" else None)
    n_img = len(prob.table)
    best_target = np.empty(n_img, np.int64)
    angle, score = np.empty(n_img), np.empty(n_img)
    shift = np.zeros((n_img, 2))
    if refine:   # candidates for the local refinement: the best templates of every particle
        n_cand = min(int(refine_candidates), len(prob.rotations))
        cand_t, cand_g = np.empty((n_img, n_cand), np.int64), np.empty((n_img, n_cand))
        cand_d = np.zeros((n_img, n_cand, 2))
    for g in range(len(prob.rings)):
        sel = np.flatnonzero(prob.labels == g)
        if sel.size == 0:
            continue
        # with --refine: per-pair results in chunks (their memory is chunk × templates)
        for part in np.array_split(sel, -(-sel.size // _CANDIDATE_CHUNK)) if refine else [sel]:
            res = align_images(images_to_fb(prob.images[part], grid), prob.targets(g), grid,
                               basis=basis, rank=H, all_pairs=refine, precision=precision,
                               max_shift=max_px, shift_step=step_px, box=box,
                               progress=progress)
            best_target[part], angle[part], score[part] = res.best_target, res.angle, res.score
            if res.shift is not None:
                shift[part] = res.shift
            if refine:
                top = np.argsort(-res.scores, axis=1, kind="stable")[:, :n_cand]
                cand_t[part], cand_g[part] = top, np.take_along_axis(res.angles, top, 1)
                if res.shifts is not None:
                    cand_d[part] = np.take_along_axis(res.shifts, top[..., None], 1)
    rotations = prob.rotations
    if refine:
        from radsvd.images.refine import refine_problem

        bar = None
        if progress:
            from tqdm import tqdm

            from radsvd.images.refine import BLOCK

            bar = tqdm(total=-(-n_img // BLOCK), desc="refine", unit="block", leave=False)
        local = refine_problem(prob, cand_t, cand_g, cand_d, step_px if max_px > 0 else 0.0,
                               refine_levels, progress=bar)
        if bar is not None:
            bar.close()
        best_target = cand_t[np.arange(n_img), local.candidate]
        rotations, angle, shift, score = local.rotation, local.angle, local.shift, local.score
    poses = compose_poses(rotations, np.arange(n_img) if refine else best_target, angle, shift,
                          p, prob.origin_x, prob.origin_y)
    info = dict(K=grid.K, R=grid.R, Q=grid.Q, rank=grid.R if H is None else H,
                method="full" if H is None else method, box=box, pixel_size=p,
                max_shift_px=max_px, shift_step_px=step_px, n_templates=len(prob.rotations),
                n_ctf_groups=len(prob.rings), refine=refine,
                refine_levels=int(refine_levels) if refine else 0)
    return ParticlePoses(poses, score, best_target, angle, shift, prob.labels, prob.rotations,
                         info)
