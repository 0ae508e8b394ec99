"""``radsvd reconstruct`` (a map from posed particles) and ``radsvd fsc`` (Fourier shell
correlation of two maps): judging poses in the field's own measure."""

from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser(
        "reconstruct", help="a map from particles with poses (direct Fourier inversion)",
        description="Reconstruct a map from a STAR file with poses (rlnAngleRot/Tilt/Psi, "
                    "rlnOriginX/YAngst, CTF), e.g. align-particles' output: direct Fourier "
                    "inversion with CTF weighting and Wiener regularisation (finufft type 1), "
                    "streamed over particles (radsvd.images.reconstruct, radsvd.volumes.inversion).")
    p.add_argument("poses", help="STAR file with poses")
    p.add_argument("--out", required=True, help="output map (.mrc)")
    p.add_argument("--wiener", type=float, default=1e-3,
                   help="Wiener constant λ as a fraction of the mean CTF² weight (~1/SNR; "
                        "default 1e-3)")
    p.add_argument("--n", type=int, default=None, help="only the first n particles")
    p.add_argument("--data-dir", default=None,
                   help="directory the STAR's image paths are relative to (default: its own)")
    p.add_argument("--no-ctf", action="store_true", help="ignore the CTF (none was applied)")
    p.add_argument("--no-progress", action="store_true", help="no progress on stderr")
    p.set_defaults(func=_reconstruct)

    f = sub.add_parser(
        "fsc", help="Fourier shell correlation of two maps, resolutions at 0.5 and 0.143",
        description="FSC curve of two maps of one box (unmasked), the resolutions where it "
                    "drops below 0.5 and 0.143 (radsvd.volumes.fsc), optionally a plot and "
                    "a CSV.")
    f.add_argument("map_a")
    f.add_argument("map_b")
    f.add_argument("--plot", default=None, help="write the curve as an image (.png, .pdf)")
    f.add_argument("--csv", default=None, help="write the curve as CSV")
    f.set_defaults(func=_fsc)


def _reconstruct(args) -> int:
    from pathlib import Path

    from radsvd._files import check_output_file
    from radsvd._validate import InputError
    from radsvd.data.mrc import write_mrc
    from radsvd.images.reconstruct import reconstruct_star

    out = check_output_file(args.out, "--out")
    if not out.name.endswith((".mrc", ".map", ".mrc.gz")):
        raise InputError(f"--out must be an .mrc file, got {args.out}")
    if args.n is not None and args.n < 1:
        raise InputError(f"--n must be >= 1, got {args.n}")

    def progress(done, total):
        if not args.no_progress:
            print(f"reconstruct: {done}/{total} particles", file=sys.stderr)

    vol, p = reconstruct_star(Path(args.poses), data_dir=args.data_dir, wiener=args.wiener,
                              no_ctf=args.no_ctf, n=args.n, progress=progress)
    write_mrc(out, vol.astype("float32"), voxel_size=p)
    print(f"reconstructed {vol.shape[0]}³ map at {p:g} Å/voxel -> {out}", file=sys.stderr)
    return 0


def _fsc(args) -> int:
    from pathlib import Path

    import numpy as np

    from radsvd._files import atomic_path, check_output_file
    from radsvd._validate import InputError
    from radsvd.data.mrc import read_mrc
    from radsvd.volumes.fsc import THRESHOLDS, fsc

    for opt in ("plot", "csv"):
        if getattr(args, opt) is not None:
            check_output_file(getattr(args, opt), f"--{opt}")
    a, pa = read_mrc(args.map_a)
    b, pb = read_mrc(args.map_b)
    if a.shape != b.shape:
        raise InputError(f"{args.map_b}: shape {b.shape} differs from {args.map_a}'s {a.shape}")
    if pa > 0 and pb > 0 and not np.isclose(pa, pb, rtol=1e-3):
        raise InputError(f"voxel sizes differ: {pa:g} Å ({args.map_a}) and {pb:g} Å "
                         f"({args.map_b})")
    p = pa if pa > 0 else (pb if pb > 0 else 1.0)
    curve = fsc(a, b, p)
    res = {t: curve.resolution(t) for t in THRESHOLDS}
    for t in THRESHOLDS:
        print(f"FSC {t:g}: {res[t]:.2f} Å")
    print(f"Nyquist: {2 * p:.2f} Å")
    if args.csv is not None:
        with atomic_path(args.csv) as tmp:
            with open(tmp, "w") as fh:
                fh.write("frequency_per_A,resolution_A,fsc,voxels\n")
                for s, v, c in zip(curve.frequency, curve.fsc, curve.counts):
                    fh.write(f"{s:.6g},{1 / s:.4f},{v:.6f},{int(c)}\n")
    if args.plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(4.5, 3))
        ax.plot(curve.frequency, curve.fsc, "k-", lw=1.2)
        for t, style in zip(THRESHOLDS, ("--", ":")):
            ax.axhline(t, color="gray", ls=style, lw=0.8,
                       label=f"{t:g}: {res[t]:.2f} Å")
        ax.set_xlabel("spatial frequency (1/Å)")
        ax.set_ylabel("FSC")
        ax.set_ylim(min(-0.05, float(curve.fsc.min()) - 0.05), 1.05)
        ax.set_title(f"{Path(args.map_a).name} vs {Path(args.map_b).name}", fontsize=8)
        ax.legend(fontsize=7)
        fig.tight_layout()
        with atomic_path(args.plot) as tmp:
            fig.savefig(tmp, format=args.plot.rsplit(".", 1)[-1] if "." in args.plot else "png")
        plt.close(fig)
    return 0

