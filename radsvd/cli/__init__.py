"""The ``radsvd`` command line.

Each module of this package defines one group of subcommands through
``register(subparsers)``; the parser sets ``func`` on its namespace, which receives the parsed
arguments and returns an exit code.  Every command that writes files gets ``--force`` here
(:data:`NO_OUTPUT` lists the others) and runs under :func:`radsvd._files.output_policy`:
an existing output is refused without ``--force``, a missing parent folder is an error.  Heavy imports happen inside ``func`` (numpy included:
nothing here imports it before the arguments are parsed), so ``radsvd --help`` is fast.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import pkgutil
import sys
import warnings

from radsvd import __version__


NO_OUTPUT = ("info", "warmup", "fetch")   # fetch resumes into --dest by design (its --help)
FORCE_HELP = "overwrite existing output files (default: refuse them)"


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
    for name, command in sub.choices.items():
        if name not in NO_OUTPUT:
            command.add_argument("--force", action="store_true", help=FORCE_HELP)
    return parser


def main(argv=None) -> int:
    """Run one command; errors end as one line ``radsvd CMD: error: …``, never a traceback.

    Exit codes: 0 success; 2 bad input (InputError, missing or misplaced files); 1 a failure
    of the environment (disk full, out of memory); 130 interrupted; 141 when the reader of
    the output went away (``radsvd info … | head``).  ``RADSVD_TRACEBACK=1`` re-raises instead,
    for debugging.  Warnings print as one line ``radsvd CMD: warning: …``.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:    # --help, --version (0) or an option argparse refused (2)
        return int(exc.code or 0)
    prefix = f"radsvd {args.command}"
    with warnings.catch_warnings():
        warnings.showwarning = lambda message, *_, **__: print(
            f"{prefix}: warning: {message}", file=sys.stderr)
        try:
            if args.threads is not None:
                from radsvd._jit import set_threads

                set_threads(args.threads)
            if hasattr(args, "force"):
                from radsvd._files import output_policy

                with output_policy(force=args.force):
                    code = int(args.func(args) or 0)
            else:
                code = int(args.func(args) or 0)
            sys.stdout.flush()   # a closed pipe surfaces here, inside the handler below
            return code
        except BrokenPipeError:
            # the output's reader exited early: not an error; silence the final flush too
            with contextlib.suppress(OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 141
        except Exception as exc:
            if os.environ.get("RADSVD_TRACEBACK", "0") not in ("", "0"):
                raise
            code = _exit_code(exc)
            if code is None:
                raise
            print(f"{prefix}: error: {_describe(exc)}", file=sys.stderr)
            return code
        except KeyboardInterrupt:
            print(f"{prefix}: interrupted", file=sys.stderr)
            return 130


def _exit_code(exc: BaseException) -> int | None:
    """2 for bad input and misplaced files, 1 for the environment, None for a bug."""
    from radsvd._validate import InputError

    if isinstance(exc, (InputError, FileNotFoundError, FileExistsError, IsADirectoryError,
                        NotADirectoryError, PermissionError)):
        return 2
    if isinstance(exc, (OSError, MemoryError)):
        return 1
    return None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, MemoryError):
        return "out of memory: use fewer or smaller inputs (--n, a lower --K) or more memory"
    return str(exc) or type(exc).__name__


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
