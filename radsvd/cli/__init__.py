"""The ``radsvd`` command line.

Each module of this package defines one group of subcommands through
``register(subparsers)``; the parser sets ``func`` on its namespace, which receives the parsed
arguments and returns an exit code.  Heavy imports happen inside ``func`` (numpy included:
nothing here imports it before the arguments are parsed), so ``radsvd --help`` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from radsvd import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="radsvd",
        description="Fast rigid rotational alignment of cryo-EM images and volumes "
                    "with the radial- and degree-SVD (Rangan 2022).")
    parser.add_argument("--version", action="version", version=f"radsvd {__version__}")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for numba, BLAS and FFT (default: all)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        module.register(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from radsvd._validate import InputError

    if args.threads is not None:
        from radsvd._jit import set_threads

        set_threads(args.threads)
    try:
        return int(args.func(args) or 0)
    except (InputError, FileNotFoundError) as exc:
        print(f"radsvd {args.command}: error: {exc}", file=sys.stderr)
        return 2


def entry(argv=None) -> int:
    """The ``radsvd`` command (console script and ``python -m radsvd``): :func:`main`, then
    ``gc.freeze()`` before the interpreter exits.  Tearing down numba's and pandas' objects
    at exit took 0.9–1.2 s of every command on 2 cores; frozen objects are left to the
    operating system (0.1–0.2 s).  Not for in-process callers: use :func:`main`."""
    rc = main(argv)
    import gc

    gc.freeze()
    return rc


if __name__ == "__main__":  # pragma: no cover
    sys.exit(entry())
