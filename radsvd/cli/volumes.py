"""``radsvd align-volumes``: fit each VOLUME onto the TARGET — rotation, translation and hand,
any box and voxel size (paper §4; radsvd.volumes.fit)."""

from __future__ import annotations

import argparse
import sys

from radsvd._options import rank_or_auto_option

CONVENTION = """\
The VOLUME is moved onto the TARGET.  Coordinates are Å, (x, y, z) with x the MRC fast
axis (the last array axis).  Output (.npz, written atomically; info_convention holds this
text), per VOLUME in command-line order:
  euler_relion (n, 3)  RELION ZYZ angles (rot, tilt, psi) in degrees of the rotation R
                 applied to the VOLUME: R = Rz(rot) Ry(tilt) Rz(psi) (active, the density
                 moves: V_rot(x) = V(R^-1 x)); tilt in [0, 180];
  matrix (n, 3, 3) that R;
  mirrored (n,)  true if the VOLUME has the other hand: it is inverted through its centre
                 (x -> -x) before R, and the transform's 3x3 part is -R;
  shift  (n, 3)  t (Å) of y = M x + t, x relative to the VOLUME's centre voxel N//2, y to
                 the TARGET's (M = R, or -R when mirrored);
  transform (n, 4, 4) the same in ChimeraX scene coordinates (voxel i at origin + i * voxel
                 size, origins from the MRC headers): the VOLUME's model placement that
                 superimposes it on the TARGET opened unmoved.  Its first 3 rows, row by
                 row, are the 12 numbers of ChimeraX "view matrix models #VOLUME,...";
  score  (n,)    normalised correlation <V^, T^>/(|V^| |T^|) of the two maps on the shell
                 grid at the optimum (full landscape whatever --rank: comparable between
                 ranks and maps); info_score_mirrored / info_score_unmirrored per hand;
  candidates (n, c, 8) rot, tilt, psi (deg), shift x, y, z (Å), mirrored, score of every
                 candidate examined (best first; NaN rows unused);
  euler  (n, 3)  radians, (psi, tilt, rot) = (gamma, beta, alpha) of R = Rz(alpha) Ry(beta)
                 Rz(gamma); tau (n, 3) the paper's landscape maximiser (eq. 98) of the
                 centred maps, R = R_tau^-1.
--out-map writes the VOLUME moved by that transform and sampled on the TARGET's box and
voxel size (cubic splines, zero outside the VOLUME's box), with the TARGET's origin.
"""


def register(sub) -> None:
    p = sub.add_parser(
        "align-volumes",
        help="fit maps onto a target map: rotation, translation, hand (any box/voxel size)",
        description="Fit VOLUME maps onto a TARGET map: rotation (the SO(3) landscape of "
                    "paper §4, optionally compressed with the radial- and degree-SVD), "
                    "translation (up to --max-shift Å) and hand (--mirror), for maps of "
                    "any box and voxel size (sampled at the TARGET's physical frequencies).",
        epilog=CONVENTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", metavar="TARGET.mrc", help="target map (cubic)")
    p.add_argument("volumes", metavar="VOLUME.mrc", nargs="+",
                   help="maps to fit (cubic; any box and voxel size)")
    p.add_argument("--rank", default="full", type=rank_or_auto_option,
                   help="rotation search: 'full', 'auto' (from the target's radial/degree "
                        "spectra) or H (H_C = H_D = H; falls back to full when H keeps too "
                        "little of the spectra, reported); default full")
    p.add_argument("--K", type=float, default=None,
                   help="maximum frequency in the TARGET's box units (Nyquist = pi N / 2); "
                        "default min(48, half the smallest Nyquist frequency of the maps)")
    p.add_argument("--max-shift", type=float, default=None, metavar="Å",
                   help="largest translation searched, in Å (default a tenth of the "
                        "TARGET's box; 0: rotation about the box centres only)")
    p.add_argument("--mirror", default="auto", choices=("auto", "no", "yes"),
                   help="hand: auto tries both and keeps the better (both scores "
                        "reported; default), no keeps the hand, yes mirrors")
    p.add_argument("--voxel-size", default=None, metavar="Å[,Å...]",
                   help="voxel size(s) in Å overriding the headers: one value for every "
                        "map, or TARGET,VOLUME1,... (required when a header has none)")
    p.add_argument("--lowpass", type=float, default=None, metavar="Å",
                   help="Gaussian low-pass, half amplitude at this resolution (noisy maps)")
    p.add_argument("--mask-radius", type=float, default=None, metavar="Å",
                   help="soft spherical mask of this radius about each map's centre of mass")
    p.add_argument("--mask", default=None, metavar="MASK.mrc",
                   help="mask on the TARGET's box, multiplying the TARGET")
    p.add_argument("--candidates", type=int, default=4,
                   help="rotation peaks examined per hand (default 4); those scoring within "
                        "5%% of the best are refined and printed")
    p.add_argument("--no-refine", dest="refine", action="store_false",
                   help="skip the joint off-grid refinement of rotation and translation")
    p.add_argument("--refine", dest="refine", action="store_true",
                   help="joint off-grid refinement (the default)")
    p.add_argument("--precision", default="auto", choices=("auto", "single", "double"),
                   help="landscape precision (auto: double for full, single for compressed)")
    p.add_argument("--eps", type=float, default=None,
                   help="NUFFT tolerance (default 1e-6 in single precision: MRC maps hold "
                        "at most single precision; below 1e-6 runs in double)")
    p.add_argument("--out", default=None, metavar="RESULT.npz", help="result file")
    p.add_argument("--out-map", default=None, metavar="ALIGNED.mrc",
                   help="the VOLUME moved onto the TARGET, on the TARGET's box and voxel "
                        "size; with several VOLUMEs the name must hold {name} (the "
                        "VOLUME's file name without extension)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run, refine=True)


def _voxel_sizes(option: str | None, header_sizes: list, paths: list):
    """Per map voxel sizes (Å): --voxel-size (one value, or one per map) over the headers;
    a header without one (0) is an error naming the option."""
    from radsvd._validate import InputError

    sizes = list(header_sizes)
    if option is not None:
        try:
            given = [float(x) for x in option.split(",")]
        except ValueError:
            raise InputError(f"--voxel-size must be Å values separated by commas, got "
                             f"{option!r}") from None
        if len(given) not in (1, len(paths)):
            raise InputError(f"--voxel-size: give one value or {len(paths)} (TARGET, then "
                             f"each VOLUME), got {len(given)}")
        sizes = given * len(paths) if len(given) == 1 else given
        for s in sizes:
            if not (s > 0 and s < float("inf")):
                raise InputError(f"--voxel-size: {s:g} is not a positive size in Å")
    for path, s in zip(paths, sizes):
        if not s > 0:
            raise InputError(f"{path}: the header has no voxel size; give it with "
                             "--voxel-size Å")
    return sizes


def _origin(path):
    """ChimeraX's position (x, y, z Å) of voxel 0: the header origin if set, else
    n*start × voxel size; zeros if the header cannot be read that way."""
    import numpy as np

    try:
        import mrcfile

        with mrcfile.open(str(path), header_only=True, permissive=True) as m:
            h = m.header
            o = np.array([float(h.origin.x), float(h.origin.y), float(h.origin.z)])
            if np.any(o != 0) and np.all(np.isfinite(o)):
                return o
            step = np.array([float(m.voxel_size.x), float(m.voxel_size.y),
                             float(m.voxel_size.z)])
            start = np.array([float(h.nxstart), float(h.nystart), float(h.nzstart)])
            o = start * step
            return o if np.all(np.isfinite(o)) else np.zeros(3)
    except Exception:                  # noqa: BLE001 - origin is cosmetic, the map was read
        return np.zeros(3)


def _write_map(path, data, voxel_size: float, origin) -> None:
    """An MRC map written atomically with the voxel size and origin given."""
    import mrcfile
    import numpy as np

    from radsvd._files import atomic_path

    with atomic_path(path) as tmp:
        with mrcfile.new(str(tmp), overwrite=True,
                         compression="gzip" if str(path).endswith(".gz") else None) as m:
            m.set_data(np.ascontiguousarray(data, dtype=np.float32))
            m.set_volume()
            m.voxel_size = float(voxel_size)
            m.header.origin = tuple(float(x) for x in origin)


def _format_matrix(M) -> str:
    return "\n".join("    [" + ", ".join(f"{v:+.6f}" for v in row) + "]" for row in M)


def run(args) -> int:
    import os

    import numpy as np

    from radsvd._files import check_output_file
    from radsvd._jit import prepare_compiler
    from radsvd._profile import mark
    from radsvd._validate import InputError
    from radsvd.data.mrc import read_mrc
    from radsvd.volumes.align import align_volume_maps
    from radsvd.volumes import fit

    mark("startup")
    rank = "full" if args.rank is None else args.rank
    if args.out is None and args.out_map is None:
        raise InputError("give --out RESULT.npz and/or --out-map ALIGNED.mrc")
    if args.out is not None:
        check_output_file(args.out, "--out")      # before the work, not after it
    names = [os.path.basename(p).split(".")[0] for p in args.volumes]
    map_outs = []
    if args.out_map is not None:
        if len(args.volumes) > 1 and "{name}" not in args.out_map:
            raise InputError("--out-map: with several VOLUMEs the name must hold {name}")
        map_outs = [args.out_map.replace("{name}", nm) for nm in names]
        if len(set(map_outs)) != len(map_outs):
            raise InputError("--out-map: two VOLUMEs have the same file name; rename one")
        for m in map_outs:
            check_output_file(m, "--out-map")
    if args.max_shift is not None and not (args.max_shift >= 0):
        raise InputError(f"--max-shift must be Å >= 0, got {args.max_shift:g}")
    paths = [args.target, *args.volumes]
    maps, header_sizes = [], []
    for path in paths:
        v, size = read_mrc(path, dtype=None, expect="map")   # the file's precision
        if len(set(v.shape)) != 1:
            raise InputError(f"{path}: the map must be cubic, got {v.shape[::-1]} (x, y, z) "
                             "voxels; pad or crop it to a cube")
        maps.append(v)
        header_sizes.append(size)
    sizes = _voxel_sizes(args.voxel_size, header_sizes, paths)
    mask = None
    if args.mask is not None:
        mask, _ = read_mrc(args.mask, dtype=np.float32, expect="map")
        if mask.shape != maps[0].shape:
            raise InputError(f"--mask: {args.mask} has box {mask.shape}, the TARGET "
                             f"{maps[0].shape}")
    if args.K is not None:
        from radsvd._validate import frequency_for_box

        frequency_for_box(args.K, maps[0].shape[0], "--K", "voxel")
        for path, v, size in zip(paths[1:], maps[1:], sizes[1:]):
            nyquist = np.pi * maps[0].shape[0] * sizes[0] / (2.0 * size)   # TARGET's units
            if args.K > nyquist * (1 + 1e-12):
                raise InputError(f"--K = {args.K:g} is beyond the Nyquist frequency "
                                 f"{nyquist:.4g} of {path} ({size:g} Å voxels) in the "
                                 "TARGET's box units; lower --K")
    origins = [_origin(p) for p in paths]
    mark("reading")
    prepare_compiler()
    mark("startup")          # numba's set-up, paid by the first kernel whatever the rank
    res = align_volume_maps(
        maps[1:], maps[0], K=args.K, rank=rank, voxel_sizes=(sizes[0], sizes[1:]),
        refine=args.refine, progress=not args.no_progress, eps=args.eps,
        precision=args.precision, max_shift=args.max_shift, mirror=args.mirror,
        lowpass=args.lowpass, mask_radius=args.mask_radius, target_mask=mask,
        n_candidates=args.candidates, origins=(origins[0], origins[1:]), names=args.volumes)
    mark("alignment")
    relion = np.degrees(res.euler[:, ::-1])                  # (rot, tilt, psi)
    if args.out is not None:
        res.info.update(target=args.target, convention=CONVENTION)
        res.info["volumes"] = np.array(args.volumes)
        res.info["voxel_sizes"] = np.array(sizes[1:])
        res.save(args.out, euler_relion=relion)
    for v, (path, out_map) in enumerate(zip(args.volumes, map_outs or [None] * len(paths))):
        M = res.transform[v]
        hand = "mirrored, then " if res.mirrored[v] else ""
        other = res.info["score_mirrored" if not res.mirrored[v] else "score_unmirrored"][v]
        print(f"{path} onto {args.target}: {hand}rotate by RELION ZYZ rot, tilt, psi = "
              f"{relion[v, 0]:.3f}, {relion[v, 1]:.3f}, {relion[v, 2]:.3f} deg, shift "
              f"{res.shift[v, 0]:+.3f}, {res.shift[v, 1]:+.3f}, {res.shift[v, 2]:+.3f} Å; "
              f"correlation {res.score[v]:.4f}" + (
                  f" (other hand {other:.4f})" if np.isfinite(other) else ""))
        print("  R =\n" + _format_matrix(res.matrix[v]))
        print("  ChimeraX (TARGET unmoved): view matrix models #2," +
              ",".join(f"{x:.6g}" for x in M[:3].ravel()))
        c = res.candidates[v]
        c = c[np.isfinite(c[:, 7])]
        near = c[1:][c[1:, 7] >= c[0, 7] - 0.05 * abs(c[0, 7])]
        for row in near:
            print(f"  near-equal candidate: rot, tilt, psi = {row[0]:.2f}, {row[1]:.2f}, "
                  f"{row[2]:.2f} deg, shift {row[3]:+.2f}, {row[4]:+.2f}, {row[5]:+.2f} Å"
                  f"{', mirrored' if row[6] else ''}; correlation {row[7]:.4f}")
        if out_map is not None:
            Rm = M[:3, :3]
            aligned = fit.resample_map(maps[v + 1], sizes[v + 1], maps[0].shape[0], sizes[0],
                                       Rm, res.shift[v])
            _write_map(out_map, aligned, sizes[0], origins[0])
    what = res.info["rank_used"]
    outs = " and ".join(x for x in (args.out, ", ".join(map_outs)) if x)
    print(f"aligned {len(args.volumes)} volumes to {args.target} (K={res.info['K']:g}, "
          f"R={res.info['R']}, L={res.info['L']}, rank {what}: {res.info['rank_reason']}; "
          f"{res.info['precision']}) -> {outs}", file=sys.stderr)
    mark("writing")
    return 0
