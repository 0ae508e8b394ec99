"""Option types shared by the commands (argparse ``type=`` callables, no heavy imports: the
command line parses its arguments before numpy loads)."""

from __future__ import annotations

import argparse


def rank_option(text: str) -> int | None:
    """The ``--rank`` option of every command: ``full`` gives None, otherwise an integer
    H ≥ 1 (each command checks its own upper bound with :func:`radsvd._validate.rank`)."""
    if text.strip().lower() == "full":
        return None
    try:
        H = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer H >= 1 or 'full', got "
                                         f"{text!r}") from None
    if H < 1:
        raise argparse.ArgumentTypeError(f"H = {H} is out of range: need an integer H >= 1 "
                                         "or 'full'")
    return H


def rank_or_auto_option(text: str):
    """``--rank`` of ``align-volumes``: ``auto`` (the rank chosen from the target's spectra)
    or what :func:`rank_option` accepts."""
    return "auto" if text.strip().lower() == "auto" else rank_option(text)
