"""Data commands: ``radsvd simulate``, ``radsvd fetch``, ``radsvd info``."""

from __future__ import annotations

import json
import sys


def register(sub) -> None:
    p = sub.add_parser("simulate", help="simulate particle images of a synthetic molecule "
                       "(MRC stack + RELION 3.1 STAR with true poses and CTFs + map)")
    p.add_argument("--molecule", default="trpv1-like",
                   help="synthetic preset (trpv1-like, ribosome-like, proteasome-like, "
                        "nanodisc-like, nucleosome-like, tmem16-like, ribosome50s-like)")
    p.add_argument("--n", type=int, default=1024, help="number of particles (default 1024)")
    p.add_argument("--box", type=int, default=128, help="image box in pixels (default 128)")
    p.add_argument("--pixel-size", type=float, default=2.4, help="Å per pixel (default 2.4)")
    p.add_argument("--snr", type=float, default=0.1,
                   help="signal-to-noise variance ratio; 0 or inf for no noise (default 0.1)")
    p.add_argument("--max-shift", type=float, default=0.0, help="max shift in Å (default 0)")
    p.add_argument("--defocus", type=float, nargs=2, default=(8000.0, 25000.0),
                   metavar=("MIN", "MAX"), help="defocus range in Å")
    p.add_argument("--astigmatism", type=float, default=400.0, help="std of DU-DV in Å")
    p.add_argument("--per-micrograph", type=int, default=60,
                   help="particles per micrograph (one CTF each, default 60)")
    p.add_argument("--n-micrographs", type=int, default=None,
                   help="number of micrographs (overrides --per-micrograph)")
    p.add_argument("--no-ctf", action="store_true", help="do not apply a CTF")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--style", choices=("1", "3.0", "3.1"), default="3.1",
                   help="RELION STAR style to write (default 3.1)")
    p.add_argument("--out", required=True, help="output directory (created if missing; its "
                   "parent must exist; new or empty unless --force)")
    p.set_defaults(func=_simulate)

    p = sub.add_parser("fetch", help="download a dataset of data_manifest.yaml (verified, "
                       "resumable; only the first particles)")
    p.add_argument("dataset", nargs="?", help="dataset key or alias (e.g. trpv1, EMPIAR-10005, "
                   "EMD-5778); omit with --list")
    p.add_argument("--dest", default=None, help="destination directory, created with its parents if missing; "
                   "an interrupted fetch resumes into it (default data/<key>)")
    p.add_argument("--what", choices=("all", "map", "particles"), default="all")
    p.add_argument("--n", type=int, default=None,
                   help="particles to fetch, >= 1 (default: the manifest's subset)")
    p.add_argument("--base-url", default=None,
                   help="replace the EBI base URL (mirror; also RADSVD_BASE_URL)")
    p.add_argument("--star-url", default=None, help="address of the particle STAR file")
    p.add_argument("--manifest", default=None,
                   help="manifest file (default: the packaged one, or RADSVD_MANIFEST)")
    p.add_argument("--retries", type=int, default=3,
                   help="retries per request on connection errors and HTTP 5xx (default 3)")
    p.add_argument("--timeout", type=float, default=30.0,
                   help="seconds to wait for any data before a read fails (default 30)")
    p.add_argument("--deadline", type=float, default=3600.0,
                   help="seconds allowed for each file, all retries included (default 3600)")
    p.add_argument("--accept-changed", action="store_true",
                   help="accept files whose sha256 differs from the manifest's or the first "
                        "download's (a re-issued EMDB map); both hashes go in fetched.json")
    p.add_argument("--list", action="store_true", help="list the datasets and exit")
    p.set_defaults(func=_fetch)

    p = sub.add_parser("info", help="summary of an MRC map/stack, a STAR file or a result .npz")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_info)


def _simulate(args) -> int:
    import math

    from radsvd._files import check_output_folder
    from radsvd.data.molecules import synthetic_molecule
    from radsvd.data.simulate import Microscope, simulate_particles, write_particles

    check_output_folder(args.out, "--out")   # before the work, not after it
    _refuse_non_empty(args.out, args.force)
    mol = synthetic_molecule(args.molecule)
    snr = None if (args.snr == 0 or math.isinf(args.snr)) else args.snr
    scope = Microscope(defocus_range=tuple(args.defocus), astigmatism=args.astigmatism,
                       particles_per_micrograph=args.per_micrograph,
                       n_micrographs=args.n_micrographs)
    images, table = simulate_particles(mol, args.n, args.box, args.pixel_size, snr=snr,
                                       seed=args.seed, max_shift=args.max_shift,
                                       microscope=scope, ctf=not args.no_ctf)
    paths = write_particles(args.out, images, table, style=args.style,
                            volume=mol.volume(args.box))
    for k, v in paths.items():
        print(f"{k}: {v}")
    return 0


def _refuse_non_empty(folder, force: bool) -> None:
    """A folder that holds files is another run's output (or the user's): refused unless
    ``--force``, so that a simulation never silently replaces another."""
    from pathlib import Path

    from radsvd._files import TMP_TAG
    from radsvd._validate import InputError

    folder = Path(folder)
    held = sorted(p.name for p in folder.iterdir() if TMP_TAG not in p.name) \
        if folder.is_dir() else []
    if held and not force:
        raise InputError(f"--out {folder} already holds {len(held)} file(s) ("
                         f"{', '.join(held[:3])}{' …' if len(held) > 3 else ''}): choose a new "
                         "folder, or give --force to replace a previous simulation there")


def _fetch(args) -> int:
    """Bad arguments raise InputError (exit 2, from radsvd.cli.main) before any download;
    a failed download exits 1 with the fetcher's message."""
    from pathlib import Path

    from radsvd._validate import InputError
    from radsvd.data.fetch import (
        FetchError,
        Limits,
        fetch_dataset,
        load_manifest,
        mirrors,
        resolve_dataset,
    )

    manifest = load_manifest(args.manifest)
    if args.list or not args.dataset:
        for key, ds in manifest["datasets"].items():
            print(f"{key:12s} {', '.join(ds.get('aliases', []))}: {ds['title']}")
        for key in manifest.get("synthetic", {}) or {}:
            print(f"{key:12s} (synthetic, `radsvd simulate --molecule {key}`)")
        return 0
    key, _ = resolve_dataset(manifest, args.dataset)
    if args.n is not None and args.n < 1:
        raise InputError(f"--n must be >= 1 (the number of particles), got {args.n}")
    limits = Limits(read_timeout=args.timeout, deadline=args.deadline, retries=args.retries)
    mirrors(manifest, args.base_url)  # a malformed --base-url fails here
    dest = Path(args.dest) if args.dest else Path("data") / key
    if dest.exists() and not dest.is_dir():
        raise InputError(f"--dest {dest} exists and is not a directory")
    what = ("map", "particles") if args.what == "all" else (args.what,)
    try:
        record = fetch_dataset(key, dest, manifest=manifest, n_particles=args.n,
                               base_url=args.base_url, what=what, star_url=args.star_url,
                               limits=limits, accept_changed=args.accept_changed)
    except (FetchError, OSError) as exc:
        print(f"radsvd fetch: error: {exc}", file=sys.stderr)
        return 1
    print(f"fetched {key} into {dest} (record: {dest / 'fetched.json'})")
    for name, f in record["files"].items():
        print(f"  {name}: {f['path']}")
    return 0


def _info(args) -> int:
    from radsvd.data.info import describe

    summary = describe(args.file)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        for k, v in summary.items():
            print(f"{k}: {v}")
    return 0
