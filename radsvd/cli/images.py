"""``radsvd align-images``: best in-plane rotation and target for every image of an MRC stack."""

from __future__ import annotations

import argparse
import sys

from radsvd._options import rank_option

ANGLE_CONVENTION = """\
Angle convention: `angle` (radians, in [0, 2*pi)) is the rotation gamma that, applied to the
TARGET, best matches the image: image ~ R_gamma(target), where R_gamma rotates
counter-clockwise by gamma about pixel (N//2, N//2) in the (x, y) plane with x = column index
(MRC fast axis, increasing to the right) and y = row index (increasing with the row number).
In an image viewer that draws row 0 at the top this appears clockwise.  `score` is the inner
product <A, R_gamma B> of the Fourier images on the polar grid (paper eq. 35)."""

SHIFT_CONVENTION = """\
Shift convention: `shift` = (sx, sy) pixels, x the column index (last array axis), y the row
index.  The image is the target rotated by `angle`, then translated by +shift (its density
moves by +shift): image ~ T_shift R_angle(target), and `score` = <A, T_shift R_angle B>.  As a
RELION origin (rlnOriginX/Y, which centres a particle by moving it by +origin) this is
origin = -shift."""


def register(sub) -> None:
    p = sub.add_parser(
        "align-images",
        help="align every image of a stack to a set of targets (full or radial-SVD)",
        description="For every image, find the best target and in-plane rotation by maximising "
                    "the rotational landscape X(gamma) over gamma_j = 2*pi*j/Q (optionally refined "
                    "off-grid), over all targets. Writes an .npz with best_target, angle, score "
                    "(and with --all-pairs the (N_A, N_B) arrays angles and scores). With "
                    "--max-shift-px it also searches a disc of shifts and adds shift (n, 2) "
                    "(and shifts (N_A, N_B, 2)).\n\n" + ANGLE_CONVENTION + "\n\n"
                    + SHIFT_CONVENTION,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", help="MRC stack of images (n, N, N)")
    p.add_argument("targets", help="MRC stack of targets (m, N, N), same N")
    p.add_argument("--rank", default="full", type=rank_option,
                   help="compression rank H (1 <= H <= R) or 'full' (default: full)")
    p.add_argument("--K", type=float, default=48.0,
                   help="maximum frequency in box units (Nyquist = pi*N/2; default 48)")
    p.add_argument("--method", default="radial-svd",
                   help="radial basis for --rank H, built from the targets: radial-svd "
                        "(default), shift-svd (eq. 118 over the shift disc), "
                        "frequency-marching or energy-pca")
    p.add_argument("--max-shift-px", type=float, default=0.0, metavar="PIXELS",
                   help="also search translations in a disc of this radius, in pixels (MRC "
                        "stacks carry no trusted pixel size here; default 0)")
    p.add_argument("--shift-step-px", type=float, default=1.0, metavar="PIXELS",
                   help="spacing of the shift grid, in pixels (default 1)")
    for old in ("--max-shift", "--shift-step"):   # Å in align-particles: refused, not guessed
        p.add_argument(old, dest=f"refused_{old[2:].replace('-', '_')}", default=None,
                       help=argparse.SUPPRESS)
    p.add_argument("--normalize-targets", action="store_true",
                   help="scale every target to unit norm on the polar grid, so that the best "
                        "target is the best correlated one rather than the one with the most "
                        "energy (use it with the projections of `radsvd templates`)")
    p.add_argument("--all-pairs", action="store_true",
                   help="also store angles and scores for every (image, target) pair")
    p.add_argument("--refine", action="store_true",
                   help="refine the best angle off the grid (eq. 23: parabola + Newton)")
    p.add_argument("--precision", default="auto", choices=("auto", "single", "double"),
                   help="GEMM precision (auto: double for full, single for compressed)")
    p.add_argument("--eps", type=float, default=None,
                   help="NUFFT tolerance (default: 1e-6 in single precision for float32 "
                        "stacks, 1e-12 in double for float64; below 1e-6 runs in double)")
    p.add_argument("--out", required=True, help="output .npz (written atomically)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=_align_images)


def _read_stack(path: str, name: str):
    """(closer, images): the stack memory-mapped (plain) or streamed (gzip) by the MRC policy of
    :func:`radsvd.data.mrc.parse_mrc_header`, which also refuses complex and corrupt files."""
    import contextlib
    import os

    from radsvd.data.mrc import mrc_data, mrc_header

    if not os.path.exists(path):
        raise FileNotFoundError(f"{name}: no such file: {path}")
    return contextlib.ExitStack(), mrc_data(path, mrc_header(path))


def _align_images(args) -> int:
    from radsvd._files import check_output_file
    from radsvd._jit import prepare_compiler
    from radsvd._validate import InputError, frequency_for_box, rank as check_rank
    from radsvd.grids import PolarGrid
    from radsvd.images import FBSource, align_images
    from radsvd.images.methods import canonical_method, make_basis, unit_norm_targets
    from radsvd.images.shifts import check_shift_options, shift_grid
    from radsvd._profile import mark

    mark("startup")

    for old in ("max_shift", "shift_step"):
        if getattr(args, f"refused_{old}") is not None:
            flag = old.replace("_", "-")
            raise InputError(f"--{flag} is ambiguous here (Å in align-particles and simulate); "
                             f"align-images works in pixels: use --{flag}-px")
    if not args.out.endswith(".npz"):
        raise InputError(f"--out must end in .npz, got {args.out}")
    check_output_file(args.out, "--out")      # before the work, not after it
    mrc_a, imgs = _read_stack(args.images, "images")
    mrc_b, tgts = _read_stack(args.targets, "targets")
    grid = PolarGrid(K=frequency_for_box(args.K, imgs.shape[-1], "--K"))  # K first: no hang
    try:
        for name, d in (("images", imgs), ("targets", tgts)):
            if d.shape[0] == 0:
                raise InputError(f"{name}: the stack is empty")
        if imgs.shape[1] != imgs.shape[2] or tgts.shape[1] != tgts.shape[2]:
            raise InputError(f"images must be square: images {imgs.shape[1:]}, "
                             f"targets {tgts.shape[1:]}")
        if imgs.shape[1:] != tgts.shape[1:]:
            raise InputError(f"image size {imgs.shape[1:]} differs from target size "
                             f"{tgts.shape[1:]}")
        method = canonical_method(args.method)
        if method == "gaussian-shift-svd":
            raise InputError("--method gaussian-shift-svd needs a map: use align-particles")
        N = int(imgs.shape[-1])
        check_shift_options(args.max_shift_px, args.shift_step_px, N)
        rank = None if args.rank is None else check_rank(args.rank, grid.R, "--rank")
        mark("reading")
        fb_a = FBSource(imgs, grid, eps=args.eps, name="images")
        fb_b = FBSource(tgts, grid, eps=args.eps, name="targets").all()
        if args.normalize_targets:
            fb_b = unit_norm_targets(fb_b, grid)
        mark("transform")
        prepare_compiler()
        mark("startup")     # numba's set-up, paid by the first kernel whatever the rank
        basis = None
        if rank is not None:
            shifts = shift_grid(args.max_shift_px, args.shift_step_px, N)
            basis = make_basis(method, grid, fb_b, shifts=shifts, box=N)
        mark("precomputation")
        res = align_images(fb_a, fb_b, grid, basis=basis, rank=rank, refine=args.refine,
                           all_pairs=args.all_pairs, precision=args.precision,
                           progress=not args.no_progress, max_shift=args.max_shift_px,
                           shift_step=args.shift_step_px, box=N)
        mark("alignment")       # with the images' transforms, streamed tile by tile
    finally:
        mrc_a.close()
        mrc_b.close()
    res.info["convention"] = ANGLE_CONVENTION + ("\n" + SHIFT_CONVENTION
                                                 if res.shift is not None else "")
    res.info["normalized_targets"] = bool(args.normalize_targets)
    res.info["images"] = args.images
    res.info["targets"] = args.targets
    res.save(args.out)
    print(f"aligned {len(res.best_target)} images to {tgts.shape[0]} targets "
          f"(rank {res.info['rank']} of R={grid.R}, {res.info['method']}, "
          f"{res.info['precision']}) -> {args.out}", file=sys.stderr)
    mark("writing")
    return 0
