"""``radsvd bench``: the performance benchmark (headline table, optional JSON, regression check)."""

from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser(
        "bench", help="run the performance benchmark; ends with a headline table (what was "
                      "measured, the ratio, the goal)",
        description="Measure, in one run, the 2D (and, when present, 3D) engines against the "
                    "baselines kept in radsvd.bench; print a table and optionally write a JSON "
                    "document keyed by record name.  With --compare OLD.json, re-measure (same "
                    "--quick and areas as OLD unless given) and flag every record slower than "
                    "OLD by more than the tolerance; the exit code is 1 if any record regressed.")
    p.add_argument("--quick", action="store_true", default=None,
                   help="small sizes (seconds, for smoke tests); with --compare the default is "
                        "OLD's setting")
    p.add_argument("--json", metavar="FILE", default=None,
                   help="write the (new) records as JSON (atomically)")
    p.add_argument("--only", choices=("images", "volumes", "e2e", "particles", "startup"), default=None,
                   help="run one area only (with --compare: default, OLD's areas); startup: "
                        "every command's first run (empty numba cache) and later runs")
    p.add_argument("--e2e", action="store_true",
                   help="also time the whole commands as users run them (align-images, "
                        "align-volumes from MRC files to the result file, with the split into "
                        "start-up, reading, transform, precomputation, alignment, writing)")
    p.add_argument("--e2e-baseline", metavar="SRC", default=None,
                   help="with --e2e: also run the commands of another radsvd source tree "
                        "(e.g. a git worktree of an older commit), interleaved, and give "
                        "speedup_vs_baseline")
    g = p.add_argument_group("regression check")
    g.add_argument("--compare", metavar="OLD.json", default=None,
                   help="compare against an earlier --json document; exit 1 on a regression")
    g.add_argument("--tolerance", type=float, default=None, metavar="FRACTION",
                   help="allowed slowdown new/old - 1 before a record is a regression "
                        "(default 0.2 = 20%%)")
    g.add_argument("--min-delta", type=float, default=0.0, metavar="SECONDS",
                   help="also require new - old > SECONDS to flag a regression (noise floor "
                        "for very short records; default 0)")
    g.add_argument("--ignore", action="append", default=None, metavar="GLOB",
                   help="record names not judged (repeatable; default '*.setup', the data "
                        "preparation timed for information)")
    g.add_argument("--retries", type=int, default=2, metavar="N",
                   help="when records regressed, re-measure up to N more times and keep each "
                        "record's fastest run (shared machines are noisy; default 2)")
    g.add_argument("--new", metavar="NEW.json", default=None,
                   help="compare OLD against this document instead of re-measuring")
    p.set_defaults(func=_bench)


def _log(msg):
    print(msg, file=sys.stderr)


def _bench(args) -> int:
    from radsvd._validate import InputError

    if args.compare is None:
        if args.retries != 2:
            raise InputError("--retries needs --compare OLD.json")
        for opt in ("tolerance", "new", "ignore"):
            if getattr(args, opt) is not None:
                raise InputError(f"--{opt} needs --compare OLD.json")
        if args.min_delta:
            raise InputError("--min-delta needs --compare OLD.json")
        return _measure(args)
    return _compare(args)


def _machine_line(doc) -> str:
    m = doc.get("machine") or {}
    return (f"(machine: {m.get('cpu', '?')}, {m.get('threads', '?')} threads; "
            f"shared machines give noisy numbers)")


def _options(args) -> dict:
    import os

    from radsvd._validate import InputError

    base = args.e2e_baseline
    if base is not None:
        if not (args.e2e or args.only == "e2e" or args.compare):
            raise InputError("--e2e-baseline needs --e2e (or --only e2e)")
        if not os.path.isfile(os.path.join(base, "radsvd", "__init__.py")):
            raise InputError(f"--e2e-baseline: {base} is not a radsvd source tree "
                             f"(no radsvd/__init__.py in it)")
    return {"e2e": dict(baseline=base, log=_log), "startup": dict(log=_log)}


def _measure(args) -> int:
    from radsvd.bench import DEFAULT_AREAS, format_table, run, write_json
    from radsvd.bench.headline import format_headline

    options = _options(args)
    areas = DEFAULT_AREAS + (("e2e",) if args.e2e else ())
    if args.only is not None:
        areas = (args.only,)
    doc = run(quick=bool(args.quick), areas=areas, log=_log, options=options)
    print("all records (fields: docs/bench.md):")
    print(format_table(doc))
    print()
    print(format_headline(doc))
    print(_machine_line(doc))
    if args.json:
        write_json(doc, args.json)
        _log(f"wrote {args.json}")
    return 0


def _compare(args) -> int:
    from radsvd._validate import InputError
    from radsvd.bench import AREAS, run, write_json
    from radsvd.bench import compare as cmp

    options = _options(args)
    tol = cmp.DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance
    ignore = cmp.DEFAULT_IGNORE if args.ignore is None else tuple(args.ignore)
    if args.retries < 0:
        raise InputError(f"--retries must be >= 0, got {args.retries}")
    old = cmp.load(args.compare)
    if not old["records"]:
        raise InputError(f"{args.compare}: the document has no records to compare against")
    if args.new is not None:
        if args.quick is not None or args.only is not None or args.json is not None:
            raise InputError("--new compares two existing documents: --quick, --only and "
                             "--json do not apply")
        args.retries = 0
        new = cmp.load(args.new)
    else:
        quick = bool(old.get("quick", False)) if args.quick is None else True
        if args.only is not None:
            areas = (args.only,)
        else:
            areas = tuple(a for a in cmp.areas_of(old) if a in AREAS)
            if not areas:
                raise InputError(f"{args.compare}: no record belongs to a known area "
                                 f"({', '.join(AREAS)}); record names start with the area")
        _log(f"bench --compare: re-measuring {', '.join(areas)} "
             f"({'quick' if quick else 'full'} sizes, as in {args.compare})")
        if args.only is not None:   # judge only the re-measured area
            old = dict(old, records=[r for r in old["records"]
                                     if r["name"].split(".", 1)[0] == args.only])
        new = run(quick=quick, areas=areas, log=_log, options=options)
        for i in range(args.retries):
            bad = cmp.regressions(cmp.compare(old, new, tolerance=tol, min_delta=args.min_delta,
                                              ignore=ignore))
            if not bad:
                break
            _log(f"bench --compare: {len(bad)} record(s) slower than allowed; re-measuring "
                 f"(retry {i + 1} of {args.retries}), keeping each record's fastest run")
            new = cmp.fastest_of(new, run(quick=quick, areas=areas, log=_log,
                                          options=options))
        if args.json:
            write_json(new, args.json)
            _log(f"wrote {args.json}")
    rows = cmp.compare(old, new, tolerance=tol, min_delta=args.min_delta, ignore=ignore)
    runs = int(new.get("runs", 1))
    print(f"old: {args.compare} ({old.get('created', '?')}); "
          f"new: {args.new or 'this run'} ({new.get('created', '?')}"
          f"{f', fastest of {runs} runs' if runs > 1 else ''})")
    for diff in cmp.machine_differences(old, new):
        print(f"note: machine differs, {diff}")
    if old.get("quick") != new.get("quick"):
        print(f"note: old quick={old.get('quick')}, new quick={new.get('quick')}: "
              f"records measured at other sizes are not comparable")
    print(cmp.format_comparison(rows, tol))
    for r in rows:
        if r.verdict == cmp.PARAMS_DIFFER:
            print(f"note: {r.name}: params differ ({cmp.params_diff(old, new, r.name)})")
    print(_machine_line(new))
    bad = cmp.regressions(rows)
    judged = [r for r in rows if r.verdict in (cmp.REGRESSION, cmp.FASTER, cmp.OK)]
    if not judged:
        raise InputError(f"nothing to compare: no record of {args.compare} matches the new "
                         f"measurement by name, params and a positive 'seconds'")
    if bad:
        print(f"FAIL: {len(bad)} record(s) slower than {args.compare} by more than "
              f"{100 * tol:g}%: {', '.join(r.name for r in bad)}")
        return 1
    print(f"OK: no record slower than {args.compare} by more than {100 * tol:g}%")
    return 0
