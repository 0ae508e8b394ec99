"""``radsvd align-particles``: RELION poses for a particle STAR file against a map."""

from __future__ import annotations

import argparse
import sys

from radsvd._options import rank_option

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
    p.add_argument("--rank", default="6", type=rank_option, help="compression rank H or 'full' (default 6)")
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
                   help="Fourier-crop particles and map to this box in pixels first "
                        "(default: none)")
    p.add_argument("--n", type=int, default=None, help="only the first n particles")
    p.add_argument("--data-dir", default=None,
                   help="directory the STAR's image paths are relative to (default: its own)")
    p.add_argument("--refine", action="store_true",
                   help="local refinement off every grid around the best templates: viewing "
                        "direction, in-plane angle and shift on the full landscape, per "
                        "chunk (docs/poses.md)")
    p.add_argument("--refine-levels", type=int, default=2,
                   help="tilt steps of --refine, halving from 180°/(3+K) (3.5°, 1.75°, ... at "
                        "K = 48), each ending with a parabola vertex (default 2)")
    p.add_argument("--refine-candidates", type=int, default=2,
                   help="best templates per particle that --refine starts from (default 2)")
    p.add_argument("--invert", nargs="?", const="yes", default="auto",
                   choices=("auto", "yes", "no"),
                   help="invert the particles' contrast: auto (default) tests 32 particles "
                        "spread over the whole STAR both ways and takes the better, logging "
                        "both scores; --invert forces it (a warning if the particles disagree)")
    p.add_argument("--no-invert", dest="invert", action="store_const", const="no",
                   help="never invert (a warning if the particles match better inverted)")
    p.add_argument("--ignore-origins", action="store_true",
                   help="do not centre the particles on the STAR's origins first")
    p.add_argument("--likelihoods", default=None, metavar="FILE.npz",
                   help="also write the maximum and integrated log-likelihoods (white-noise "
                        "model, paper §2.6-2.7) of every particle x template, arrays "
                        "(N_particles, N_templates) streamed chunk by chunk, at --rank; with "
                        "--shard, each shard writes the rows of its own slice")
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
    g = p.add_argument_group(
        "large sets", "Particles stream through memory in chunks; peak memory ≈ 0.45 GiB +\n"
        "templates and map + chunk × per-particle bytes (docs/cluster.md).  Each finished\n"
        "chunk is checkpointed in OUT.star.checkpoint/ beside --out: rerunning the same\n"
        "command after a crash or a time limit resumes there; the folder is removed at the\n"
        "end.")
    g.add_argument("--memory", type=float, default=None, metavar="GiB",
                   help="memory budget; sets the chunk size (default 2)")
    g.add_argument("--chunk", type=int, default=None, metavar="N",
                   help="particles per chunk (overrides --memory)")
    g.add_argument("--shard", default=None, metavar="I/N",
                   help="align only the I-th of N contiguous slices of the particles "
                        "(1-based); join the shards with radsvd merge-poses")
    g.add_argument("--restart", action="store_true",
                   help="discard a checkpoint left by an earlier run and start over")
    g.add_argument("--strict", action="store_true",
                   help="a blank or non-finite particle is an error (default: skipped with "
                        "a warning, counted in the summary)")
    p.set_defaults(func=_align_particles)

    m = sub.add_parser(
        "merge-poses", help="join the STAR files of align-particles --shard I/N runs",
        description="Join the outputs of the N shard runs of align-particles --shard I/N "
                    "(each STAR with its .npz beside) into the STAR and .npz the unsharded "
                    "run writes (the same bytes).  Refuses missing, repeated or overlapping "
                    "shards and shards made from other inputs or options.")
    m.add_argument("shards", nargs="+", help="the shards' STAR files")
    m.add_argument("--out", required=True, help="output STAR file (an .npz is written beside)")
    m.add_argument("--particles", default=None,
                   help="the particle STAR the shards were made from (default: the path "
                        "they record)")
    m.set_defaults(func=_merge_poses)


def checkpoint_folder(out):
    """The checkpoint folder of a run writing ``out``, beside it: poses.star →
    poses.star.checkpoint."""
    from pathlib import Path

    out = Path(out)
    return out.with_name(out.name + ".checkpoint")


def _align_particles(args) -> int:
    import math
    from pathlib import Path

    import numpy as np

    from radsvd._files import check_output_file, refuse_input_as_output
    from radsvd._validate import InputError
    from radsvd.data.stacks import particle_inputs
    from radsvd.images.particle_runs import parse_shard, write_outputs
    from radsvd.images.particles import align_particles

    out = Path(args.out)
    if out.suffix != ".star":
        raise InputError(f"--out must end in .star, got {args.out}")
    for option, value, zero_ok in (("--max-shift", args.max_shift, True),
                                   ("--shift-step", args.shift_step, False),
                                   ("--sigma", args.sigma, True)):   # Å options, echoed in Å
        if value is not None and not (math.isfinite(value) and (value > 0 or zero_ok
                                                                 and value == 0)):
            raise InputError(f"{option} must be a finite number {'>=' if zero_ok else '>'} 0 "
                             f"(Å), got {value:g}")
    outputs = [("--out", out), ("--out", out.with_suffix(".npz"))]
    if args.likelihoods is not None:
        if not args.likelihoods.endswith(".npz"):
            raise InputError(f"--likelihoods must end in .npz, got {args.likelihoods}")
        check_output_file(args.likelihoods, "--likelihoods")
        if Path(args.likelihoods).resolve() == out.with_suffix(".npz").resolve():
            raise InputError(f"--likelihoods {args.likelihoods} is the .npz written beside "
                             "--out; name another file")
        outputs.append(("--likelihoods", Path(args.likelihoods)))
    if args.noise_sigma is not None and not (math.isfinite(args.noise_sigma)
                                             and args.noise_sigma > 0):
        raise InputError(f"--noise-sigma must be > 0, got {args.noise_sigma:g}")
    for name in ("refine_levels", "refine_candidates"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be >= 1, got "
                             f"{getattr(args, name)}")
    refuse_input_as_output(outputs, particle_inputs(args.particles, args.map, args.data_dir))
    check_output_file(out, "--out")
    check_output_file(out.with_suffix(".npz"), "--out (its .npz)")
    if args.memory is not None and not (np.isfinite(args.memory) and args.memory > 0):
        raise InputError(f"--memory must be a positive number of GiB, got {args.memory}")
    if args.chunk is not None and args.chunk < 1:
        raise InputError(f"--chunk must be >= 1 particles, got {args.chunk}")
    shard = None if args.shard is None else parse_shard(args.shard)
    res = align_particles(args.particles, args.map, K=args.K, rank=args.rank, method=args.method,
                          max_shift_A=args.max_shift, shift_step_A=args.shift_step,
                          box=args.box, n=args.n, data_dir=args.data_dir, refine=args.refine,
                          invert={"auto": "auto", "yes": True, "no": False}[args.invert],
                          ignore_origins=args.ignore_origins,
                          no_ctf=args.no_ctf, voltage=args.voltage, cs=args.cs,
                          amplitude_contrast=args.amplitude_contrast,
                          ctf_tolerance=args.ctf_tolerance, sigma_A=args.sigma,
                          precision=args.precision, progress=not args.no_progress,
                          fix_edges=not args.no_fix_edges, chunk=args.chunk,
                          memory_gib=args.memory, shard=shard,
                          checkpoint=checkpoint_folder(out), restart=args.restart,
                          strict=args.strict, refine_levels=args.refine_levels,
                          refine_candidates=args.refine_candidates,
                          likelihoods=args.likelihoods, noise_sigma=args.noise_sigma)
    info = res.info
    print(f"contrast: {'inverted' if info['invert'] else 'as given'} (mean best score of "
          f"{info['contrast_sample']} particles: {info['contrast_given']:.4g} as given, "
          f"{info['contrast_inverted']:.4g} inverted)", file=sys.stderr)
    res.info["convention"] = POSE_CONVENTION
    res.info["particles"] = args.particles
    res.info["map"] = args.map
    star, npz = write_outputs(res, out, args.particles)
    res.run["checkpoint"].remove()
    if args.likelihoods is not None:
        print(f"log-likelihoods {res.run['likelihoods']} -> {args.likelihoods}",
              file=sys.stderr)
    _summary(res, star, npz)
    return 0


def _summary(res, star, npz) -> None:
    run, info = res.run, res.info
    skipped = f", {run['skipped']} skipped" if run.get("skipped") else ""
    resumed = f", {run['resumed_at']} from the checkpoint" if run.get("resumed_at") else ""
    rate = run["aligned"] / run["seconds"] if run["seconds"] > 0 else float("inf")
    print(f"posed {len(res.score)} particles against {info['n_templates']} templates "
          f"({info['n_ctf_groups']} CTF group(s), rank {info['rank']}, {info['method']}, "
          f"{info['max_shift_px']:g} px shifts) -> {star}, {npz}", file=sys.stderr)
    print(f"align-particles: {run['aligned']} particles in {run['seconds']:.1f} s, "
          f"{rate:.2f} particles/s (chunks of {run['chunk']}{resumed}{skipped})",
          file=sys.stderr)


def _merge_poses(args) -> int:
    from pathlib import Path

    from radsvd._files import check_output_file, refuse_input_as_output
    from radsvd._validate import InputError
    from radsvd.images.particle_runs import merge_poses, write_outputs

    out = Path(args.out)
    if out.suffix != ".star":
        raise InputError(f"--out must end in .star, got {args.out}")
    check_output_file(out, "--out")
    outputs = [("--out", out), ("--out", out.with_suffix(".npz"))]
    shards = [("shard", Path(s)) for s in args.shards]
    refuse_input_as_output(outputs, shards + [("shard", p.with_suffix(".npz")) for _, p in shards])
    res, star = merge_poses(args.shards, args.particles)
    refuse_input_as_output(outputs, [("particle STAR", star)])
    star_out, npz = write_outputs(res, out, star)
    print(f"merged {len(args.shards)} shard(s): {len(res.score)} particles"
          f"{f', {len(res.skipped)} skipped' if res.skipped else ''} -> {star_out}, {npz}",
          file=sys.stderr)
    return 0
