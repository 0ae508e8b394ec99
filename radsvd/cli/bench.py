"""``radsvd bench``: the performance benchmark (headline table, optional JSON)."""

from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser("bench", help="run the performance benchmark and print the headline table",
                       description="Measure, in one run, the 2D (and, when present, 3D) engines "
                                   "against the baselines kept in radsvd.bench; print a table "
                                   "and optionally write a JSON document keyed by record name.")
    p.add_argument("--quick", action="store_true", help="small sizes (seconds, for smoke tests)")
    p.add_argument("--json", metavar="FILE", default=None, help="write the records as JSON")
    p.add_argument("--only", choices=("images", "volumes"), default=None,
                   help="run one area only")
    p.set_defaults(func=_bench)


def _bench(args) -> int:
    from radsvd.bench import AREAS, format_table, run, write_json

    areas = AREAS if args.only is None else (args.only,)
    doc = run(quick=args.quick, areas=areas, log=lambda m: print(m, file=sys.stderr))
    print(format_table(doc))
    print(f"(machine: {doc['machine'].get('cpu', '?')}, {doc['machine']['threads']} threads; "
          f"shared machines give noisy numbers)")
    if args.json:
        write_json(doc, args.json)
        print(f"wrote {args.json}", file=sys.stderr)
    return 0
