"""Pose assignment for a particle STAR file and a map: templates, CTF groups, rotation × shift
search, RELION poses (the library side of ``radsvd align-particles``).

Two stages, so that a particle set of any size streams through a fixed amount of memory:

1. :func:`plan_particles` (metadata only, once per run): read the STAR (RELION 1 / 3.0 /
   3.1), check every stack header (existence, index range, one square box), crop the map to
   ``box``, make the templates on the reference shell directions at K and group the
   particles by ring CTF over the WHOLE selected table; :func:`plan_search`: the shift grid
   and the one radial basis pooled over the CTF groups
   (:func:`radsvd.images.methods.make_basis`).
2. Per chunk of contiguous STAR rows (:func:`align_particles`): ranged reads of the stacks
   (memory maps, stored dtype), the workflow's preprocessing (edge artefacts with a noise
   stream seeded by the particle's row, centring on the STAR's origins unless
   ``ignore_origins``, Fourier cropping to ``box``, normalisation, optional contrast
   inversion), each CTF group of the chunk aligned to the templates times its ring CTF
   (:func:`align_chunk`), RELION poses (:func:`radsvd.data.poses.compose_poses`).

Every per-particle step depends on that particle alone, so the poses are the same for any
chunk size, shard and thread count.  Peak memory ≈ fixed + chunk × per-particle bytes
(:func:`memory_model`, docs/cluster.md).  Checkpoints, shards and the merge:
:mod:`radsvd.images.particle_runs`.
"""

from __future__ import annotations

import sys
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from radsvd._validate import InputError, InputWarning
from radsvd.data.stacks import load_particle_table  # noqa: F401  (validated STAR table)
from radsvd.images.particle_runs import RESULT_KEYS, ParticlePoses

__all__ = ["ParticlePoses", "ParticleProblem", "ParticleSearch", "align_chunk",
           "align_particles", "check_contrast", "chunk_likelihoods", "chunk_size_for",
           "load_particle_table", "memory_model", "plan_particles", "plan_search",
           "prepare_particles", "read_particles", "refine_chunk", "search_poses"]

@dataclass
class ParticleProblem:
    """Everything the search needs, images aside: the selected STAR table, each row's stack
    path, the stacks' headers, the map at the box, the grid, template poses and FB templates,
    CTF groups (labels, ring CTFs, sizes: None without CTF), the stacks' box N0, the pixel
    size p (Å) of the preprocessed images, the origins they are centred by and the
    preprocessing options.  ``images``: preprocessed images of the rows ``rows`` when held in
    memory (:func:`prepare_particles`), None when streamed (:func:`align_particles`)."""

    table: pd.DataFrame
    stacks: np.ndarray
    headers: dict
    volume: np.ndarray
    grid: object
    rotations: np.ndarray
    templates: np.ndarray
    labels: np.ndarray
    rings: np.ndarray
    counts: np.ndarray | None
    source_box: int
    pixel_size: float
    origin_x: np.ndarray
    origin_y: np.ndarray
    box_: int
    invert: bool = False
    ignore_origins: bool = False
    fix_edges: bool = True
    images: np.ndarray | None = None
    rows: np.ndarray | None = None
    skipped: list = field(default_factory=list)
    members: np.ndarray | None = None   # index of each particle within its CTF group

    @property
    def box(self) -> int:
        return self.box_

    def member_index(self) -> np.ndarray:
        """Index of every particle among the particles of its CTF group, in STAR order (the
        fixed batch slots of :func:`align_chunk` and of the likelihoods)."""
        if self.members is None:
            self.members = _members(self.labels)
        return self.members

    def targets(self, g: int) -> np.ndarray:
        """Targets of CTF group g: templates × ring CTF, each scaled to unit norm (so the
        score ranks templates by correlation rather than by their energy)."""
        from radsvd.images._radial import q_multiplicity
        from radsvd.images.methods import group_targets

        t = group_targets(self.templates, self.rings[g])
        norm2 = np.einsum("nrq,r,q->n", np.abs(t) ** 2, self.grid.w,
                          q_multiplicity(self.grid.Q, True))
        return t / np.sqrt(norm2)[:, None, None]


def _check_stacks(table: pd.DataFrame, star, data_dir) -> tuple[np.ndarray, dict, int]:
    """Resolve every row's stack and read each header once; refuse, before any work, missing
    stacks (the first and the count), image indices past a stack's end, non-square or 3D
    images and boxes that differ between stacks or optics groups.  Returns (path per row,
    {path: header}, box N0)."""
    from pathlib import Path

    from radsvd.data.mrc import mrc_header
    from radsvd.data.stacks import check_write_ids

    if "image_path" not in table.columns:
        raise InputError(f"{star}: no image references (rlnImageName)")
    base = Path(data_dir) if data_dir is not None else Path(star).parent
    names = table["image_path"].to_numpy()
    uniq, inverse = np.unique(names, return_inverse=True)
    resolved = np.array([str(Path(p) if Path(p).is_absolute() else base / p) for p in uniq],
                        dtype=object)
    missing = [p for p in resolved if not Path(p).is_file()]
    if missing:
        raise InputError(f"{star}: {len(missing)} of {len(uniq)} image stack(s) are missing "
                         f"under {base}, the first {missing[0]}; pass the folder holding them "
                         "with --data-dir, or fetch them")
    paths = resolved[inverse.ravel()]
    check_write_ids(table, pd.Series(paths, index=table.index))
    index = table["image_index"].to_numpy(np.int64)
    last = np.full(len(uniq), -1, np.int64)
    np.maximum.at(last, inverse.ravel(), index)
    headers, boxes = {}, {}
    for u, path in enumerate(resolved):
        h = mrc_header(path)
        headers[path] = h
        if h.nx != h.ny:
            raise InputError(f"{path}: images are {h.nx}×{h.ny}, not square")
        if not h.is_stack and h.nz > 1 and h.nx == h.nz:
            raise InputError(f"{path}: a 3D map of {h.nx}³ voxels, not an image stack")
        if last[u] >= h.nz:
            row = int(np.flatnonzero((inverse.ravel() == u) & (index >= h.nz))[0])
            raise InputError(f"{star}: particle row {row + 1} ({table['image_name'].iloc[row]}) "
                             f"asks for image {index[row] + 1} of {path}, which holds "
                             f"{h.nz} image(s)")
        boxes[path] = h.nx
    box_of_row = np.array([boxes[p] for p in resolved])[inverse.ravel()]
    if np.unique(box_of_row).size > 1:
        by_group = pd.Series(box_of_row).groupby(table["optics_group"].to_numpy()).unique()
        desc = "; ".join(f"optics group {g}: {', '.join(map(str, sorted(b)))} px"
                         for g, b in by_group.items())
        raise InputError(f"{star}: the particles' boxes differ ({desc}); align each box "
                         "separately (one STAR per box)")
    N0 = int(box_of_row[0])
    if "image_size" in table.columns:
        sizes = pd.to_numeric(table["image_size"], errors="coerce").to_numpy()
        bad = np.flatnonzero(np.isfinite(sizes) & (sizes != N0))
        if bad.size:
            raise InputError(f"{star}: rlnImageSize {sizes[bad[0]]:g} of optics group "
                             f"{table['optics_group'].iloc[bad[0]]} differs from the "
                             f"{N0}-pixel box of its stack {paths[bad[0]]}")
    return paths, headers, N0


def plan_particles(star, map_path, K: float = 48.0, box: int | None = None,
                   n: int | None = None, data_dir=None, invert: bool = False,
                   ignore_origins: bool = False, no_ctf: bool = False, voltage=None,
                   cs=None, amplitude_contrast=None, ctf_tolerance: float = 0.05,
                   fix_edges: bool = True, before_templates=None) -> ParticleProblem:
    """Stage 1 (module doc): everything but the images, from the STAR's metadata, the stack
    headers and the map; all input checks happen here, before any particle is read.
    ``fix_edges``: replace padding strips and outlier pixels (off for noise-free images,
    whose particle pixels are outliers to a noise-free background).
    ``before_templates(table, stack_paths)``: the caller's own checks, run after the input
    checks and before the first costly step (the templates)."""
    from radsvd.data.mrc import read_mrc
    from radsvd.data.stacks import check_map_matches_particles
    from radsvd.data.preprocess import downsample_volume
    from radsvd.data.templates import project_fourier
    from radsvd.data.viewing import shell_directions
    from radsvd.grids import PolarGrid

    table = load_particle_table(star, n, no_ctf, voltage, cs, amplitude_contrast)
    if len(table) == 0:
        raise InputError(f"{star}: the STAR file holds no particles")
    paths, headers, N0 = _check_stacks(table, star, data_dir)
    if "pixel_size" not in table.columns or table["pixel_size"].isna().any():
        vs = headers[paths[0]].voxel_size
        if vs <= 0:
            raise InputError(f"{star}: no pixel size in the STAR file nor in the header of "
                             f"{paths[0]}")
        filled = table.get("pixel_size", pd.Series(np.nan, index=table.index)).fillna(vs)
        table = table.assign(pixel_size=filled)
    p0 = float(table["pixel_size"].iloc[0])
    box = N0 if box is None else int(box)
    if not 8 <= box <= N0:
        raise InputError(f"box must be in [8, {N0}] (the particles' box), got {box}")
    origin_x = np.zeros(len(table)) if ignore_origins else table["shift_x"].to_numpy(np.float64)
    origin_y = np.zeros(len(table)) if ignore_origins else table["shift_y"].to_numpy(np.float64)
    volume, voxel = read_mrc(map_path, expect="map")
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
    if before_templates is not None:
        before_templates(table, paths)
    rotations = shell_directions(grid.K).rotations()
    templates = _templates(volume, rotations, grid, project_fourier)
    p = p0 * N0 / box
    if no_ctf:
        labels, rings, counts = np.zeros(len(table), np.int64), np.ones((1, grid.R)), None
    else:
        labels, rings, counts = _ctf_groups(table.assign(pixel_size=table["pixel_size"]
                                                         * N0 / box), grid, box, ctf_tolerance)
    return ParticleProblem(table, paths, headers, volume, grid, rotations, templates, labels,
                           rings, counts, N0, p, origin_x, origin_y, box, invert,
                           ignore_origins, fix_edges)


CTF_KEYS = ("defocus_u", "defocus_v", "defocus_angle", "voltage", "cs", "amplitude_contrast",
            "phase_shift", "bfactor", "pixel_size")


def _ctf_groups(table: pd.DataFrame, grid, box: int, tolerance: float, block: int = 4096):
    """:func:`radsvd.images.methods.ctf_groups` of a table of any length in O(distinct CTFs)
    memory: ring CTFs of the distinct parameter rows (in order of first occurrence, a block at
    a time), the greedy clustering on them (a repeated CTF joins its first occurrence's group,
    as in the clustering of all rows), group means weighted by the repeats.  Returns (labels,
    rings, counts)."""
    from radsvd.data.ctf import cluster_ctf

    cols = [k for k in CTF_KEYS if k in table.columns]
    _, first, inverse = np.unique(table[cols].to_numpy(np.float64), axis=0, return_index=True,
                                  return_inverse=True)
    order = np.argsort(first)                      # distinct rows by first occurrence
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    distinct = table.iloc[first[order]]
    rings = np.concatenate([_ring_ctfs(distinct.iloc[b:b + block], grid, box)
                            for b in range(0, len(distinct), block)])
    groups = cluster_ctf(rings, weights=grid.w, tolerance=tolerance)
    which = rank[inverse.ravel()]
    labels = groups.labels[which]
    repeats = np.bincount(which, minlength=len(distinct)).astype(np.float64)
    counts = np.bincount(labels, minlength=groups.n_groups)
    sums = np.zeros((groups.n_groups, rings.shape[1]))
    np.add.at(sums, groups.labels, rings * repeats[:, None])
    return labels, sums / counts[:, None], counts


def _ring_ctfs(table: pd.DataFrame, grid, box: int) -> np.ndarray:
    from radsvd.data.ctf import ctf_polar_stack
    from radsvd.data.stacks import ctf_params

    return ctf_polar_stack(ctf_params(table), grid, int(box),
                           table["pixel_size"].to_numpy(np.float64), ring=True)


def _templates(volume, rotations, grid, project_fourier):
    from radsvd.images.polar import to_fb

    return to_fb(project_fourier(volume, rotations, grid))


def read_particles(prob: ParticleProblem, rows, strict: bool = False):
    """The raw images of STAR rows ``rows`` (stored dtype, float32 for float32 stacks) by
    ranged reads of the stacks, and the rows that cannot be aligned.

    Returns (images (m, N0, N0) of the good rows, good rows, skipped [(row, image name,
    reason)]).  A blank (constant) or non-finite image is skipped with a warning, or is an
    error with ``strict``."""
    from radsvd.data.mrc import mrc_data

    rows = np.asarray(rows, np.int64)
    stacks = prob.stacks[rows]
    index = prob.table["image_index"].to_numpy(np.int64)[rows]
    N0 = prob.source_box
    first = prob.headers[stacks[0]] if len(rows) else None
    dtype = np.float32 if first is None or first.dtype.itemsize <= 4 else np.float64
    out = np.empty((len(rows), N0, N0), dtype=dtype)
    for path in pd.unique(stacks):
        sel = np.flatnonzero(stacks == path)
        h = prob.headers[path]
        data = mrc_data(path, h)
        out[sel] = data[index[sel]]
        del data
    flat = out.reshape(len(rows), -1)
    finite = np.isfinite(flat).all(axis=1)
    blank = finite & (flat.max(axis=1) == flat.min(axis=1))
    skipped = []
    for i in np.flatnonzero(~finite | blank):
        r = int(rows[i])
        name = prob.table["image_name"].iloc[r]
        what = "NaN or inf pixels" if not finite[i] else "a blank (constant) image"
        msg = f"particle row {r + 1} ({name}) has {what}"
        if strict:
            raise InputError(f"{prob.table.attrs.get('path', 'STAR file')}: {msg} (--strict)")
        warnings.warn(f"{msg}: skipped", InputWarning, stacklevel=2)
        skipped.append((r, name, what))
    good = finite & ~blank
    return out[good], rows[good], skipped


def preprocess_particles(prob: ParticleProblem, raw: np.ndarray, rows) -> np.ndarray:
    """The workflow's preprocessing (:func:`radsvd.data.preprocess.preprocess`: edges, centre,
    Fourier crop, normalise, invert) of raw images of STAR rows ``rows``, each image exactly
    as if it were alone: edge artefacts are replaced with noise seeded by the particle's row,
    and the normalisation's sums run on one image at a time (a batched row sum depends on the
    row's memory alignment in its last bit).  Returns (m, box, box) float64."""
    from radsvd.data.preprocess import downsample, normalize, replace_edge_artifacts, \
        shift_images

    rows = np.asarray(rows, np.int64)
    if not len(rows):
        return np.zeros((0, prob.box, prob.box))
    imgs = raw
    if prob.fix_edges:
        imgs, counts = replace_edge_artifacts(raw)
        for i in np.flatnonzero(counts):   # draws from the particle's own noise stream
            imgs[i] = replace_edge_artifacts(raw[i:i + 1], seed=int(rows[i]))[0][0]
    if not prob.ignore_origins:
        p = prob.table["pixel_size"].to_numpy(np.float64)[rows]
        sx, sy = prob.origin_x[rows] / p, prob.origin_y[rows] / p
        if np.any(sx != 0) or np.any(sy != 0):
            imgs = shift_images(imgs, sx, sy)
    if prob.box != prob.source_box:
        imgs = downsample(imgs, prob.box)
    out = np.empty((len(rows), prob.box, prob.box))
    for i in range(len(rows)):
        out[i] = normalize(imgs[i])
    return -out if prob.invert else out


def prepare_particles(star, map_path, K: float = 48.0, box: int | None = None,
                      n: int | None = None, data_dir=None, invert: bool = False,
                      ignore_origins: bool = False, no_ctf: bool = False, voltage=None,
                      cs=None, amplitude_contrast=None, ctf_tolerance: float = 0.05,
                      fix_edges: bool = True, strict: bool = False) -> ParticleProblem:
    """:func:`plan_particles` with every particle read and preprocessed into memory (the
    in-memory path for small sets; :func:`align_particles` streams)."""
    prob = plan_particles(star, map_path, K, box, n, data_dir, invert, ignore_origins, no_ctf,
                          voltage, cs, amplitude_contrast, ctf_tolerance, fix_edges)
    raw, rows, skipped = read_particles(prob, np.arange(len(prob.table)), strict)
    prob.images = preprocess_particles(prob, raw, rows)
    prob.rows, prob.skipped = rows, skipped
    return prob


@dataclass
class ParticleSearch:
    """The search of a run, fixed before the first chunk: grid, radial basis (None: full
    path), rank H (None: full), method, shift disc (pixels of the aligned images), σ of
    gaussian-shift-svd, off-grid refinement and GEMM precision."""

    grid: object
    basis: object
    rank: int | None
    method: str
    max_shift_px: float
    shift_step_px: float
    sigma_px: float | None
    refine: bool
    precision: str
    refine_levels: int = 2
    refine_candidates: int = 2

    def info(self, prob: ParticleProblem) -> dict:
        grid = self.grid
        return dict(K=grid.K, R=grid.R, Q=grid.Q,
                    rank=grid.R if self.rank is None else self.rank,
                    method="full" if self.rank is None else self.method, box=prob.box,
                    pixel_size=prob.pixel_size, max_shift_px=self.max_shift_px,
                    shift_step_px=self.shift_step_px, n_templates=len(prob.rotations),
                    n_ctf_groups=len(prob.rings), refine=self.refine,
                    refine_levels=self.refine_levels if self.refine else 0)


def plan_search(prob: ParticleProblem, rank=6, method: str = "radial-svd",
                max_shift_A: float = 0.0, shift_step_A: float | None = None,
                refine: bool = False, sigma_A: float | None = None,
                precision: str = "auto", refine_levels: int = 2,
                refine_candidates: int = 2) -> ParticleSearch:
    """The shift grid and the one radial basis of the run, pooled over all CTF groups of the
    whole table (so a chunk or a shard uses the basis of the whole run).  ``refine``: local
    refinement around the best ``refine_candidates`` templates, ``refine_levels`` tilt steps
    (:mod:`radsvd.images.refine`)."""
    from radsvd.images.methods import canonical_method, make_basis
    from radsvd.images.shifts import check_shift_options, shift_grid
    from radsvd.volumes.shells import map_shells

    method = canonical_method(method)
    if not (np.isfinite(max_shift_A) and max_shift_A >= 0):
        raise InputError(f"max_shift must be a finite number >= 0 (Å), got {max_shift_A!r}")
    if precision not in ("auto", "single", "double"):
        raise InputError(f"precision must be 'auto', 'single' or 'double', got {precision!r}")
    for name, value in (("refine_levels", refine_levels),
                        ("refine_candidates", refine_candidates)):
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise InputError(f"{name} must be an integer >= 1, got {value!r}")
    grid, p, box = prob.grid, prob.pixel_size, prob.box
    step_A = p if shift_step_A is None else float(shift_step_A)
    max_px, step_px = check_shift_options(max_shift_A / p, step_A / p, box)
    H = None if rank in (None, "full") else int(rank)
    basis, sigma_px = None, None
    if H is not None:
        sigma_px = max_px / 2 if sigma_A is None else float(sigma_A) / p
        basis = make_basis(method, grid, prob.templates,
                           ctf_rings=None if prob.counts is None else prob.rings,
                           group_sizes=prob.counts, shifts=shift_grid(max_px, step_px, box),
                           box=box, sigma=sigma_px,
                           shells=map_shells(prob.volume, grid)
                           if method == "gaussian-shift-svd" else None)
    return ParticleSearch(grid, basis, H, method, max_px, step_px, sigma_px, bool(refine),
                          precision, int(refine_levels),
                          min(int(refine_candidates), len(prob.rotations)))


def _engine_batch(search: ParticleSearch, box: int) -> int:
    """Images per task of :func:`radsvd.images.align.align_images`: its image tiles of 64
    without shifts, ⌊4·64 / n_shifts⌋ images with shifts (the engine's layout)."""
    from radsvd.images.shifts import shift_grid

    if not search.max_shift_px:
        return 64
    return max(1, 256 // len(shift_grid(search.max_shift_px, search.shift_step_px, box)))


def _members(labels: np.ndarray) -> np.ndarray:
    """Index of every particle among the particles of its CTF group (in STAR order)."""
    order = np.argsort(labels, kind="stable")
    first = np.searchsorted(labels[order], labels[order], side="left")
    out = np.empty(len(labels), np.int64)
    out[order] = np.arange(len(labels)) - first
    return out


def align_chunk(prob: ParticleProblem, search: ParticleSearch, images: np.ndarray, rows,
                progress=None) -> dict:
    """Best template, angle, score and shift of preprocessed ``images`` of STAR rows ``rows``:
    each CTF group present is aligned to its targets (:meth:`ParticleProblem.targets`).

    Single-precision BLAS gives a row of a product a last bit that depends on the row's
    position in the matrix, so each particle is given a fixed place in the engine's
    batches: the j-th particle of CTF group g sits in slot j mod S of a batch of S (S =
    images per engine task), the other slots filled with copies.  The poses are then the
    same bits for any chunk or shard; at most 2(S − 1) copies per group and chunk are wasted.
    ``progress``: advanced by the number of particles of each group done.  Returns
    {best_target, angle, score, shift (m, 2) px, ctf_group}; with ``search.refine`` also
    the candidates of the local refinement, the best ``search.refine_candidates`` templates
    of each particle: cand_target (m, k), cand_angle (m, k), cand_shift (m, k, 2) px."""
    from radsvd.images.align import align_images
    from radsvd.images.polar import images_to_fb

    rows = np.asarray(rows, np.int64)
    m = len(rows)
    labels = prob.labels[rows]
    out = dict(best_target=np.empty(m, np.int64), angle=np.empty(m), score=np.empty(m),
               shift=np.zeros((m, 2)), ctf_group=labels.astype(np.int64))
    if search.refine:
        k = search.refine_candidates
        out.update(cand_target=np.empty((m, k), np.int64), cand_angle=np.empty((m, k)),
                   cand_shift=np.zeros((m, k, 2)))
    S = _engine_batch(search, prob.box)
    for g in np.unique(labels):
        sel = np.flatnonzero(labels == g)
        fb = images_to_fb(images[sel], search.grid)
        j = prob.member_index()[rows[sel]]
        lo = j[0] // S * S
        slots = j - lo
        batch = np.empty((-(-(j[-1] + 1 - lo) // S) * S,) + fb.shape[1:], fb.dtype)
        batch[:] = fb[0]
        batch[slots] = fb
        del fb
        res = align_images(batch, prob.targets(int(g)), search.grid, basis=search.basis,
                           rank=search.rank, all_pairs=search.refine, precision=search.precision,
                           max_shift=search.max_shift_px, shift_step=search.shift_step_px,
                           box=prob.box, progress=False)
        out["best_target"][sel], out["angle"][sel], out["score"][sel] = \
            res.best_target[slots], res.angle[slots], res.score[slots]
        if res.shift is not None:
            out["shift"][sel] = res.shift[slots]
        if search.refine:
            top = np.argsort(-res.scores[slots], axis=1, kind="stable")[:, :k]
            out["cand_target"][sel] = top
            out["cand_angle"][sel] = np.take_along_axis(res.angles[slots], top, 1)
            if res.shifts is not None:
                out["cand_shift"][sel] = np.take_along_axis(res.shifts[slots], top[..., None], 1)
        del res
        if progress is not None:
            progress.update(len(sel))
    return out


def _poses(prob: ParticleProblem, search: ParticleSearch, rows, results: dict, skipped,
           extra: dict | None = None) -> ParticlePoses:
    from radsvd.data.poses import compose_poses

    rows = np.asarray(rows, np.int64)
    extra = dict(extra or {})
    if "refined_rotation" in extra:     # local refinement: each particle's own slice pose
        rotations, which = extra["refined_rotation"], np.arange(len(rows))
    else:
        rotations, which = prob.rotations, results["best_target"]
    poses = compose_poses(rotations, which, results["angle"], results["shift"],
                          prob.pixel_size, prob.origin_x[rows], prob.origin_y[rows])
    return ParticlePoses(poses, results["score"], results["best_target"], results["angle"],
                         results["shift"], results["ctf_group"], prob.rotations,
                         search.info(prob), rows, list(skipped), extra)


def refine_chunk(prob: ParticleProblem, search: ParticleSearch, images: np.ndarray, rows,
                 results: dict) -> dict:
    """Local refinement (:func:`radsvd.images.refine.refine_rows`) of one aligned chunk
    around its candidates (popped from ``results``, :func:`align_chunk`): ``results``'
    best_target, angle, shift and score become the refined ones (best_target: the template
    the refinement started from).  Returns the per-particle extra arrays refined_rotation
    (m, 3, 3), the pose's slice rotation, and global_score (m,), the grid search's score."""
    from radsvd.images.refine import refine_rows

    cand_t, cand_g, cand_d = (results.pop(k) for k in ("cand_target", "cand_angle",
                                                        "cand_shift"))
    if not len(rows):
        return dict(refined_rotation=np.zeros((0, 3, 3)), global_score=np.zeros(0))
    step = search.shift_step_px if search.max_shift_px > 0 else 0.0
    local = refine_rows(prob, images, rows, cand_t, cand_g, cand_d, step,
                        levels=search.refine_levels)
    extra = dict(refined_rotation=local.rotation, global_score=results["score"].copy())
    results["best_target"] = cand_t[np.arange(len(rows)), local.candidate]
    results["angle"], results["shift"], results["score"] = local.angle, local.shift, local.score
    return extra


def check_contrast(prob: ParticleProblem, search: ParticleSearch, invert="auto"):
    """The contrast check of a streamed run (:mod:`radsvd.images.contrast`), before its
    first chunk: :func:`~radsvd.images.contrast.sample_rows` of the WHOLE selected table
    (every shard checks the same particles) read, preprocessed as given and aligned both
    ways with the run's basis and shifts.  Returns (inverted, evidence)."""
    from radsvd.images.contrast import contrast_evidence, decide_contrast, sample_rows

    rows = sample_rows(len(prob.table))
    with warnings.catch_warnings():      # a bad particle is reported by its own chunk
        warnings.simplefilter("ignore", InputWarning)
        raw, good, _ = read_particles(prob, rows)
    as_given = prob.invert
    prob.invert = False
    try:
        images = preprocess_particles(prob, raw, good)
    finally:
        prob.invert = as_given
    del raw
    ev = contrast_evidence(prob, search.rank, search.max_shift_px, search.shift_step_px,
                           images=images, rows=good, basis=search.basis)
    return decide_contrast(invert, ev), ev


def chunk_likelihoods(prob: ParticleProblem, search: ParticleSearch, images: np.ndarray,
                      rows, noise_sigma=None):
    """Maximum and integrated log-likelihoods (:mod:`radsvd.images.likelihood`) of one
    chunk against every template, at the run's rank, basis and shift disc."""
    from radsvd.images.likelihood import group_likelihoods
    from radsvd.images.shifts import shift_grid

    shifts = (shift_grid(search.max_shift_px, search.shift_step_px, prob.box)
              if search.max_shift_px > 0 else None)
    return group_likelihoods(prob, images, rows, shifts, search.basis, search.rank,
                             noise_sigma)


def search_poses(prob: ParticleProblem, rank=6, method: str = "radial-svd",
                 max_shift_A: float = 0.0, shift_step_A: float | None = None,
                 refine: bool = False, sigma_A: float | None = None, precision: str = "auto",
                 progress: bool = False, refine_levels: int = 2,
                 refine_candidates: int = 2) -> ParticlePoses:
    """The rotation × shift search of a :class:`ParticleProblem` whose images are in memory
    (:func:`prepare_particles`); RELION poses by :func:`radsvd.data.poses.compose_poses`."""
    if prob.images is None:
        raise InputError("search_poses needs a problem with images (prepare_particles); "
                         "align_particles streams them")
    search = plan_search(prob, rank, method, max_shift_A, shift_step_A, refine, sigma_A,
                         precision, refine_levels, refine_candidates)
    rows = np.arange(len(prob.images)) if prob.rows is None else prob.rows
    with Progress(len(rows), enabled=progress) as bar:
        res = align_chunk(prob, search, prob.images, rows, bar)
    extra = refine_chunk(prob, search, prob.images, rows, res) if refine else {}
    return _poses(prob, search, rows, res, prob.skipped, extra)


# ---------------------------------------------------------------------------- memory model
def memory_model(prob: ParticleProblem, search: ParticleSearch | None = None,
                 refine: bool = False, likelihoods: bool = False) -> tuple:
    """(fixed, per_particle) bytes of the streamed run: peak RSS ≈ base + fixed + chunk ×
    per_particle, base ≈ 0.45 GiB (interpreter, numba, numpy, pandas; measured).

    fixed = map (box³·8) + templates and one group's targets, coefficients and engine
    copies (≈ 6 × n_templates·R·(Q/2+1)·16) + the table (≈ 1 KiB per STAR row);
    per_particle = raw image (N0²·itemsize) + preprocessing copies (≈ 4 × N0²·8) + FB
    coefficients (≈ 3 × R·(Q/2+1)·16); with ``refine`` + every pair's score, angle, shift
    and their sort (≈ n_templates·40) and the refinement's copies (≈ 2 × N0²·8); with
    ``likelihoods`` + the chunk's two (n_templates) rows (16·n_templates).
    docs/cluster.md gives the numbers."""
    grid = prob.grid
    nf = grid.Q // 2 + 1
    fb = grid.R * nf * 16
    fixed = prob.box ** 3 * 8 + 6 * len(prob.rotations) * fb + 1024 * len(prob.table)
    per = prob.source_box ** 2 * (4 + 4 * 8) + 3 * fb
    n_t = len(prob.rotations)
    if refine or (search is not None and search.refine):
        per += 40 * n_t + 2 * prob.box ** 2 * 8
    if likelihoods:
        per += 16 * n_t
    return int(fixed), int(per)


BASE_BYTES = int(0.45 * 2 ** 30)


def chunk_size_for(prob: ParticleProblem, memory_gib: float, refine: bool = False,
                   likelihoods: bool = False) -> int:
    """The largest chunk whose peak memory (:func:`memory_model`) fits ``memory_gib``."""
    if not (np.isfinite(memory_gib) and memory_gib > 0):
        raise InputError(f"--memory must be a positive number of GiB, got {memory_gib!r}")
    fixed, per = memory_model(prob, refine=refine, likelihoods=likelihoods)
    room = memory_gib * 2 ** 30 - BASE_BYTES - fixed
    if room < 64 * per:
        need = (BASE_BYTES + fixed + 64 * per) / 2 ** 30
        raise InputError(f"--memory {memory_gib:g} GiB is too little for this run: the "
                         f"templates, map and a chunk of 64 particles need {need:.2f} GiB "
                         "(lower --K or --box, or give more)")
    return int(room // per)


# ---------------------------------------------------------------------------- progress
class Progress:
    """One progress report over all particles: a tqdm bar with rate and ETA on a terminal,
    plain lines every ``interval`` seconds otherwise (batch logs), and a summary line."""

    def __init__(self, total: int, initial: int = 0, enabled: bool = True,
                 interval: float = 30.0, label: str = "align-particles"):
        self.total, self.done, self.enabled = int(total), int(initial), enabled
        self.initial, self.interval, self.label = int(initial), interval, label
        self.t0 = self.last = time.perf_counter()
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="particle", desc=label,
                            dynamic_ncols=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()

    def update(self, k: int) -> None:
        self.done += int(k)
        if self.bar is not None:
            self.bar.update(int(k))
            return
        now = time.perf_counter()
        if self.enabled and now - self.last >= self.interval:
            self.last = now
            rate = (self.done - self.initial) / max(now - self.t0, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            print(f"{self.label}: {self.done}/{self.total} particles "
                  f"({100 * self.done / max(self.total, 1):.0f}%), {rate:.1f} particles/s, "
                  f"ETA {_duration(eta)}", file=sys.stderr, flush=True)

    def seconds(self) -> float:
        return time.perf_counter() - self.t0


def _duration(s: float) -> str:
    if not np.isfinite(s):
        return "?"
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


# ---------------------------------------------------------------------------- the driver
def align_particles(star, map_path, K: float = 48.0, rank=6, method: str = "radial-svd",
                    max_shift_A: float = 0.0, shift_step_A: float | None = None,
                    box: int | None = None, n: int | None = None, data_dir=None,
                    refine: bool = False, invert="auto", ignore_origins: bool = False,
                    no_ctf: bool = False, voltage=None, cs=None, amplitude_contrast=None,
                    ctf_tolerance: float = 0.05, sigma_A: float | None = None,
                    precision: str = "auto", progress: bool = False,
                    fix_edges: bool = True, refine_levels: int = 2,
                    refine_candidates: int = 2, likelihoods=None,
                    noise_sigma: float | None = None, chunk: int | None = None,
                    memory_gib: float | None = None, shard: tuple | None = None,
                    checkpoint=None, restart: bool = False, strict: bool = False,
                    post_chunk=None, fingerprint: dict | None = None) -> ParticlePoses:
    """Poses of the particles of ``star`` against the map at ``map_path``, streamed in chunks
    of contiguous STAR rows (module doc).

    ``rank``: H or None/"full"; ``max_shift_A``/``shift_step_A``: the shift disc in Å (step
    default: one pixel of the preprocessed images); ``sigma_A``: σ_δ of gaussian-shift-svd
    (default max_shift/2).  Origins already in the STAR centre the images first (unless
    ``ignore_origins``) and are added to the shifts found.  Other options: see
    :func:`plan_particles`.

    ``refine``: local refinement of the viewing direction, in-plane angle and shift around
    the best ``refine_candidates`` templates, ``refine_levels`` tilt steps, per chunk
    (:func:`refine_chunk`; the slice rotations go to ``extra["refined_rotation"]``).
    ``invert``: "auto" (default) inverts the contrast if a subsample of the whole table
    matches the map better inverted; True/False force it, with a warning if the evidence
    disagrees (:func:`check_contrast`; the choice and both scores go into ``info``, and into
    the checkpoint, which a resumed run follows).  ``likelihoods``: a path: the maximum and
    integrated log-likelihoods of every particle and template are written there (.npz,
    :func:`radsvd.images.particle_runs.write_likelihoods`), computed per chunk and kept with
    the chunk's checkpoint; ``noise_sigma``: the per-pixel noise of the preprocessed images
    (default each particle's background).

    Streaming: ``chunk`` particles at a time, or the largest chunk that fits ``memory_gib``
    (:func:`chunk_size_for`; default 2 GiB).  ``shard`` (I, N): only the I-th of N contiguous
    slices of the rows (1-based).  ``checkpoint``: a folder where each finished chunk is
    saved atomically; a rerun resumes from it (``restart``: discard it), it is removed at the
    end (:class:`radsvd.images.particle_runs.Checkpoint`; ``fingerprint``: the inputs and
    options it must have been made with, default :func:`~radsvd.images.particle_runs.
    run_fingerprint`).  ``strict``: a blank or non-finite particle is an error instead of
    being skipped with a warning.

    ``post_chunk(prob, search, rows, images, results)``: called after each chunk with the
    preprocessed images of its aligned rows and their results dict; may return a dict of
    per-particle arrays (first axis = len(rows)), checkpointed with the chunk and returned in
    :attr:`ParticlePoses.extra` (e.g. local refinement or likelihoods).
    """
    from radsvd.images import particle_runs as runs

    if chunk is not None and int(chunk) < 1:
        raise InputError(f"chunk must be >= 1 particles, got {chunk}")
    if memory_gib is not None and not (np.isfinite(memory_gib) and memory_gib > 0):
        raise InputError(f"memory must be a positive number of GiB, got {memory_gib!r}")
    if isinstance(invert, str) and invert != "auto" or invert not in ("auto", True, False):
        raise InputError(f"invert must be 'auto', True or False, got {invert!r}")
    if noise_sigma is not None and not (np.isfinite(noise_sigma) and noise_sigma > 0):
        raise InputError(f"noise sigma must be > 0, got {noise_sigma!r}")
    run = {}

    def checks(table, paths):
        """Shard range and checkpoint before any costly step."""
        nonlocal fingerprint
        run["lo"], run["hi"] = runs.shard_range(len(table), shard)
        run["ckpt"] = None
        if checkpoint is not None:
            if fingerprint is None:
                fingerprint = runs.run_fingerprint(star, map_path, paths, dict(
                    K=K, rank="full" if rank in (None, "full") else int(rank), method=method,
                    max_shift_A=max_shift_A, shift_step_A=shift_step_A, box=box, n=n,
                    refine=refine, invert=invert, ignore_origins=ignore_origins,
                    no_ctf=no_ctf, voltage=voltage, cs=cs,
                    amplitude_contrast=amplitude_contrast, ctf_tolerance=ctf_tolerance,
                    sigma_A=sigma_A, precision=precision, no_fix_edges=not fix_edges,
                    strict=strict, shard=shard,
                    refine_levels=int(refine_levels) if refine else None,
                    refine_candidates=int(refine_candidates) if refine else None,
                    likelihoods=likelihoods is not None,
                    noise_sigma=noise_sigma if likelihoods is not None else None))
            run["ckpt"] = runs.Checkpoint(checkpoint, fingerprint, run["lo"], run["hi"],
                                          restart=restart)

    prob = plan_particles(star, map_path, K, box, n, data_dir, False, ignore_origins, no_ctf,
                          voltage, cs, amplitude_contrast, ctf_tolerance, fix_edges, checks)
    lo, hi, ckpt = run["lo"], run["hi"], run["ckpt"]
    done = ckpt.load() if ckpt is not None else []
    scratch = None     # where the chunks' likelihoods wait for the end of the run
    if likelihoods is not None:
        if ckpt is not None:
            folder = ckpt.folder
            done = runs.likelihood_parts(folder, done)
        else:
            import tempfile
            from pathlib import Path

            Path(likelihoods).parent.mkdir(parents=True, exist_ok=True)
            scratch = tempfile.TemporaryDirectory(prefix=".radsvd-likelihoods-",
                                                  dir=Path(likelihoods).parent)
            folder = scratch.name
    try:
        if chunk is not None:
            size = int(chunk)
        else:
            size = chunk_size_for(prob, 2.0 if memory_gib is None else float(memory_gib),
                                  refine=refine, likelihoods=likelihoods is not None)
        size = max(1, min(size, hi - lo))
        search = plan_search(prob, rank, method, max_shift_A, shift_step_A, refine, sigma_A,
                             precision, refine_levels, refine_candidates)
        contrast = ckpt.recorded("contrast") if ckpt is not None and done else None
        if contrast is None:
            inverted, ev = check_contrast(prob, search, invert)
            contrast = dict(invert=bool(inverted), given=ev.given, inverted=ev.inverted,
                            n=ev.n)
            if ckpt is not None:
                ckpt.record("contrast", contrast)
        prob.invert = bool(contrast["invert"])
    except BaseException:
        if ckpt is not None and not done:   # nothing finished: leave no checkpoint behind
            ckpt.remove()
        if scratch is not None:
            scratch.cleanup()
        raise
    start = done[-1]["stop"] if done else lo
    if start > lo:
        print(f"align-particles: resuming from the checkpoint in {ckpt.folder}: "
              f"{start - lo} of {hi - lo} particles done", file=sys.stderr)
    parts = list(done)
    with Progress(hi - lo, start - lo, enabled=progress) as bar:
        for c0 in range(start, hi, size):
            rows = np.arange(c0, min(hi, c0 + size))
            raw, good, skipped = read_particles(prob, rows, strict)
            images = preprocess_particles(prob, raw, good)
            del raw
            bar.update(len(rows) - len(good))
            res = align_chunk(prob, search, images, good, bar)
            extra = refine_chunk(prob, search, images, good, res) if search.refine else {}
            if post_chunk is not None:
                extra.update(post_chunk(prob, search, good, images, res) or {})
            part = dict(start=int(rows[0]), stop=int(rows[-1]) + 1, rows=good,
                        skipped=skipped, results=res, extra=extra)
            if likelihoods is not None:   # written before the chunk that vouches for it
                from radsvd._files import save_npz

                lik = chunk_likelihoods(prob, search, images, good, noise_sigma)
                path = runs.likelihood_chunk(folder, part["start"], part["stop"])
                path.unlink(missing_ok=True)    # left by a run stopped before its chunk file
                save_npz(path, maximum=lik.maximum, integrated=lik.integrated,
                         sigma=lik.sigma)
                del lik
            del images
            if ckpt is not None:
                ckpt.save(part)
            parts.append(part)
        seconds = bar.seconds()
    rows = np.concatenate([p["rows"] for p in parts]) if parts else np.zeros(0, np.int64)
    results = {k: np.concatenate([p["results"][k] for p in parts]) for k in RESULT_KEYS}
    keys = parts[0]["extra"].keys() if parts else ()
    extra = {k: np.concatenate([p["extra"][k] for p in parts]) for k in keys}
    skipped = [s for p in parts for s in p["skipped"]]
    out = _poses(prob, search, rows, results, skipped, extra)
    out.info.update(n_selected=len(prob.table), row_start=lo, row_stop=hi,
                    invert=bool(contrast["invert"]), contrast_given=float(contrast["given"]),
                    contrast_inverted=float(contrast["inverted"]),
                    contrast_sample=int(contrast["n"]))
    if likelihoods is not None:
        try:
            out.run["likelihoods"] = runs.write_likelihoods(
                likelihoods, folder, parts, rank=out.info["rank"], method=out.info["method"],
                n_templates=len(prob.rotations),
                model="white noise (paper eq. 55), amplitude profiled; integrated = log mean "
                      "over the Q angles x the shift disc")
        finally:
            if scratch is not None:
                scratch.cleanup()
    if shard is not None:
        out.info.update(shard_index=int(shard[0]), shard_count=int(shard[1]))
    if fingerprint is not None:
        out.info["fingerprint"] = runs.fingerprint_json(fingerprint, without=("--shard",))
    out.run.update(seconds=seconds, aligned=hi - start, chunk=size, skipped=len(skipped),
                   resumed_at=start - lo, checkpoint=ckpt)
    return out
