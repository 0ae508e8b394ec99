"""``radsvd align-volumes``: rotate each VOLUME onto the TARGET (paper §4)."""

from __future__ import annotations

import argparse
import sys

CONVENTION = """\
Output (.npz, written atomically; info_convention holds this text), per VOLUME in
command-line order:
  euler  (n, 3)  ZYZ Euler angles (gamma, beta, alpha) in radians of the rotation R that,
                 applied to the VOLUME, best superimposes it on the TARGET;
                 R = Rz(alpha) Ry(beta) Rz(gamma): extrinsic (rotate by gamma about z, then
                 beta about the fixed y, then alpha about the fixed z; equivalently intrinsic
                 z-y'-z'' with alpha first), active (the density moves:
                 V_rot(x) = V(R^-1 x)), beta in [0, pi];
  matrix (n, 3, 3) that R, acting on (x, y, z) = (last, middle, first) array axis
                 (MRC fast axis is x);
  score  (n,)    the landscape value <V^, R_tau T^> at the optimum (Fourier inner product);
  tau    (n, 3)  the paper's landscape maximiser tau = (gamma, beta, alpha) of
                 X(tau) = <V^, R_tau T^> (eq. 98), i.e. the rotation of the TARGET onto the
                 volume; R = R_tau^-1.
The rotation is about the box centre, voxel index N//2 on every axis.
"""


def register(sub) -> None:
    p = sub.add_parser(
        "align-volumes",
        help="best rotation of each volume onto a target (SO(3) landscapes, radial/degree-SVD)",
        description="Align VOLUME maps onto a TARGET map by maximising the rotational "
                    "landscape over an (alpha, beta, gamma) grid (paper §4), optionally "
                    "compressed with the radial- and degree-SVD at rank H.",
        epilog=CONVENTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", metavar="TARGET.mrc", help="target map (cubic)")
    p.add_argument("volumes", metavar="VOLUME.mrc", nargs="+", help="maps to align (same box "
                   "and voxel size as the target)")
    p.add_argument("--rank", default="full",
                   help="'full' or H: radial and degree ranks H_C = H_D = H (default full)")
    p.add_argument("--K", type=float, default=48.0,
                   help="maximum frequency in box units (Nyquist = pi N / 2; default 48)")
    p.add_argument("--refine", action="store_true",
                   help="polish each grid optimum off-grid on the full landscape")
    p.add_argument("--precision", default="auto", choices=("auto", "single", "double"),
                   help="landscape precision (auto: double for full, single for compressed)")
    p.add_argument("--eps", type=float, default=None,
                   help="NUFFT tolerance (default 1e-6 in single precision: MRC maps hold "
                        "at most single precision; below 1e-6 runs in double)")
    p.add_argument("--out", required=True, metavar="RESULT.npz", help="output file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    import numpy as np

    from radsvd._files import check_output_file
    from radsvd._jit import prepare_compiler
    from radsvd._validate import InputError, frequency_for_box, rank as check_rank
    from radsvd.data.mrc import read_mrc
    from radsvd.volumes.align import align_volumes
    from radsvd.volumes.basis import volume_svd
    from radsvd.volumes.shells import ShellGrid, ShellTransform
    from radsvd._pool import pool_map
    from radsvd._profile import mark

    mark("startup")

    rank = args.rank
    if rank != "full":
        try:
            rank = int(rank)
        except ValueError:
            raise InputError(f"--rank must be 'full' or an integer, got {args.rank!r}") from None
    check_output_file(args.out, "--out")      # before the work, not after it
    target, t_size = read_mrc(args.target, dtype=None, expect="map")   # the file's precision
    mark("reading")
    grid = ShellGrid(K=frequency_for_box(args.K, target.shape[-1], "--K", "voxel"))
    # one NUFFT plan for every map, at the maps' precision (or --eps)
    transform = ShellTransform(grid, target.shape[-1], target.dtype, eps=args.eps)
    cb = transform(target)                 # checks cubic, finite, K vs Nyquist
    mark("transform")
    if rank != "full":
        rank = check_rank(rank, min(grid.R, grid.L + 1), "--rank")
    # one map per worker in memory at a time: keep only its shell coefficients; the maps
    # are read and transformed on the project's threads (finufft and BLAS release the GIL)
    ca = np.empty((len(args.volumes), grid.R, grid.n_lm), dtype=np.complex128)

    def shells_of(item):
        i, path = item
        v, size = read_mrc(path, dtype=None, expect="map")
        if v.shape != target.shape:
            raise InputError(f"{path}: box {v.shape} differs from the target's {target.shape}; "
                             f"resample to a common box first")
        if t_size > 0 and size > 0 and not np.isclose(size, t_size, rtol=1e-4):
            raise InputError(f"{path}: voxel size {size:g} Å differs from the target's "
                             f"{t_size:g} Å; resample to a common pixel size first")
        ca[i] = transform(v)[0]

    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=len(args.volumes), unit="map", desc="shells")
    try:
        pool_map(shells_of, enumerate(args.volumes), progress=bar)
    finally:
        if bar is not None:
            bar.close()
    mark("transform")        # the maps' reading included: it overlaps their transforms
    prepare_compiler()
    mark("startup")          # numba's set-up, paid by the first kernel whatever the rank
    if rank == "full":
        basis, ranks = None, None
    else:
        basis, ranks = volume_svd(cb, grid, H_C=rank), (rank, rank)
    mark("precomputation")
    res = align_volumes(ca, cb[0], grid, basis, ranks, refine=args.refine,
                        progress=not args.no_progress, precision=args.precision)
    mark("alignment")
    res.info.update(target=args.target, voxel_size=t_size, convention=CONVENTION)
    res.info["volumes"] = np.array(args.volumes)
    res.save(args.out)
    for path, e, s in zip(args.volumes, res.euler, res.score):
        print(f"{path}\teuler(gamma,beta,alpha)={e[0]:+.6f},{e[1]:+.6f},{e[2]:+.6f}\t"
              f"score={s:.6g}")
    what = "full" if rank == "full" else f"rank {rank}"
    print(f"aligned {len(args.volumes)} volumes to {args.target} (K={grid.K:g}, R={grid.R}, "
          f"L={grid.L}, {what}, {res.info['precision']}) -> {args.out}", file=sys.stderr)
    mark("writing")
    return 0
