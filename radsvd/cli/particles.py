"""``radsvd align-particles``: RELION poses for a particle STAR file against a map."""

from __future__ import annotations

import argparse
import sys

POSE_CONVENTION = """\
Poses: template t is the map's projection at RELION pose (rot_t, tilt_t, 0) on the reference
shell directions at K; the engine finds image ~ T_shift R_angle(template) (rotated
counter-clockwise by `angle`, then moved by +shift pixels, x = column, y = row), which is the
projection at R_t Rz(-angle): (rot, tilt, psi) = (rot_t, tilt_t, -angle), and
rlnOriginX/YAngst = (origin already in the STAR) - shift * pixel size.  See docs/poses.md."""


def register(sub) -> None:
    p = sub.add_parser(
        "align-particles",
        help="RELION poses (rotation and origin) of particles against a map",
        description="Assign every particle of a STAR file (RELION 1, 3.0 or 3.1) a pose: "
                    "templates from MAP on the reference shell directions, one set per CTF "
                    "group, the rotation x shift search of align-images, and a RELION 3.1 "
                    "STAR with rlnAngleRot/Tilt/Psi, rlnOriginXAngst/YAngst and rlnRadsvdScore "
                    "(the input rows otherwise unchanged), plus an .npz beside it.\n\n"
                    + POSE_CONVENTION,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("particles", help="particle STAR file")
    p.add_argument("map", help="reference map (MRC) covering the particles' box")
    p.add_argument("--rank", default="6", help="compression rank H or 'full' (default 6)")
    p.add_argument("--K", type=float, default=48.0,
                   help="maximum frequency in box units of the aligned images (default 48)")
    p.add_argument("--method", default="radial-svd",
                   help="radial basis for --rank H: radial-svd (default), shift-svd, "
                        "gaussian-shift-svd, frequency-marching, energy-pca")
    p.add_argument("--max-shift", type=float, default=0.0,
                   help="radius of the shift search in Å (default 0: rotations only)")
    p.add_argument("--shift-step", type=float, default=None,
                   help="shift grid spacing in Å (default: one pixel of the aligned images)")
    p.add_argument("--sigma", type=float, default=None,
                   help="σ of the Gaussian shifts of gaussian-shift-svd, Å (default max-shift/2)")
    p.add_argument("--box", type=int, default=None,
                   help="Fourier-crop particles and map to this box first (default: none)")
    p.add_argument("--n", type=int, default=None, help="only the first n particles")
    p.add_argument("--data-dir", default=None,
                   help="directory the STAR's image paths are relative to (default: its own)")
    p.add_argument("--refine", action="store_true",
                   help="local refinement off every grid around the best templates: viewing "
                        "direction, in-plane angle and shift on the full landscape "
                        "(docs/poses.md)")
    p.add_argument("--refine-levels", type=int, default=2,
                   help="tilt steps of --refine, halving from 180°/(3+K) (3.5°, 1.75°, ... at "
                        "K = 48), each ending with a parabola vertex (default 2)")
    p.add_argument("--refine-candidates", type=int, default=2,
                   help="best templates per particle that --refine starts from (default 2)")
    p.add_argument("--invert", nargs="?", const="yes", default="auto",
                   choices=("auto", "yes", "no"),
                   help="invert the particles' contrast: auto (default) tests a subsample both "
                        "ways and takes the better, logging both scores; --invert forces it "
                        "(a warning if the particles disagree)")
    p.add_argument("--no-invert", dest="invert", action="store_const", const="no",
                   help="never invert (a warning if the particles match better inverted)")
    p.add_argument("--ignore-origins", action="store_true",
                   help="do not centre the particles on the STAR's origins first")
    p.add_argument("--likelihoods", default=None, metavar="FILE.npz",
                   help="also write the maximum and integrated log-likelihoods (white-noise "
                        "model, paper §2.6-2.7) of every particle x template, arrays "
                        "(N_particles, N_templates), at --rank")
    p.add_argument("--noise-sigma", type=float, default=None,
                   help="per-pixel noise std of the preprocessed (normalised) images for "
                        "--likelihoods (default: each particle's background)")
    p.add_argument("--no-ctf", action="store_true", help="align without CTF")
    p.add_argument("--no-fix-edges", action="store_true",
                   help="keep edge strips and outlier pixels (noise-free images)")
    p.add_argument("--voltage", type=float, default=None, help="kV, if the STAR lacks it")
    p.add_argument("--cs", type=float, default=None, help="mm, if the STAR lacks it")
    p.add_argument("--amplitude-contrast", type=float, default=None,
                   help="fraction, if the STAR lacks it")
    p.add_argument("--ctf-tolerance", type=float, default=0.05,
                   help="relative L2 tolerance of the CTF grouping (default 0.05)")
    p.add_argument("--precision", default="auto", choices=("auto", "single", "double"))
    p.add_argument("--out", required=True, help="output STAR file (an .npz is written beside)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=_align_particles)


def _align_particles(args) -> int:
    from pathlib import Path

    from radsvd._validate import InputError
    from radsvd.data.poses import write_poses_star
    from radsvd.images.particles import align_particles

    out = Path(args.out)
    if out.suffix != ".star":
        raise InputError(f"--out must end in .star, got {args.out}")
    if args.likelihoods is not None:
        from radsvd._files import check_output_file

        if not args.likelihoods.endswith(".npz"):
            raise InputError(f"--likelihoods must end in .npz, got {args.likelihoods}")
        check_output_file(args.likelihoods, "--likelihoods")
        if Path(args.likelihoods).resolve() == out.with_suffix(".npz").resolve():
            raise InputError(f"--likelihoods {args.likelihoods} is the .npz written beside "
                             "--out; name another file")
    if args.noise_sigma is not None and not args.noise_sigma > 0:
        raise InputError(f"--noise-sigma must be > 0, got {args.noise_sigma}")
    rank = None
    if args.rank != "full":
        try:
            rank = int(args.rank)
        except ValueError:
            raise InputError(f"--rank must be an integer or 'full', got {args.rank!r}") from None
        if rank < 1:
            raise InputError(f"--rank H = {rank} is out of range: need H >= 1")
    for name in ("refine_levels", "refine_candidates"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    res = align_particles(args.particles, args.map, K=args.K, rank=rank, method=args.method,
                          max_shift_A=args.max_shift, shift_step_A=args.shift_step,
                          box=args.box, n=args.n, data_dir=args.data_dir, refine=args.refine,
                          invert={"auto": "auto", "yes": True, "no": False}[args.invert],
                          ignore_origins=args.ignore_origins,
                          no_ctf=args.no_ctf, voltage=args.voltage, cs=args.cs,
                          amplitude_contrast=args.amplitude_contrast,
                          ctf_tolerance=args.ctf_tolerance, sigma_A=args.sigma,
                          precision=args.precision, progress=not args.no_progress,
                          fix_edges=not args.no_fix_edges, refine_levels=args.refine_levels,
                          refine_candidates=args.refine_candidates,
                          likelihoods=args.likelihoods is not None,
                          noise_sigma=args.noise_sigma)
    print(f"contrast: {'inverted' if res.info['invert'] else 'as given'} (mean best score of "
          f"{res.info['contrast_sample']} particles: {res.info['contrast_given']:.4g} as given, "
          f"{res.info['contrast_inverted']:.4g} inverted)", file=sys.stderr)
    res.info["convention"] = POSE_CONVENTION
    res.info["particles"] = args.particles
    res.info["map"] = args.map
    npz = out.with_suffix(".npz")
    res.save_npz(npz)
    write_poses_star(out, args.particles, res.poses, res.score, n=len(res.score))
    if res.likelihoods is not None:
        from radsvd._files import save_npz

        save_npz(args.likelihoods, maximum=res.likelihoods.maximum,
                 integrated=res.likelihoods.integrated, sigma=res.likelihoods.sigma,
                 template_rotations=res.template_rotations,
                 info_rank=res.info["rank"], info_method=res.info["method"],
                 info_model="white noise (paper eq. 55), amplitude profiled; integrated = "
                            "log mean over the Q angles x the shift disc")
        print(f"log-likelihoods {res.likelihoods.maximum.shape} -> {args.likelihoods}",
              file=sys.stderr)
    print(f"posed {len(res.score)} particles against {res.info['n_templates']} templates "
          f"({res.info['n_ctf_groups']} CTF group(s), rank {res.info['rank']}, "
          f"{res.info['method']}, {res.info['max_shift_px']:g} px shifts) -> {out}, {npz}",
          file=sys.stderr)
    return 0
