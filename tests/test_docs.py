"""Every ``bash`` and ``python`` code block of README.md and docs/*.md runs, so the docs stay true.

Convention (stated in README.md): a block whose first line is ``# not run in tests: REASON``
is skipped, visibly in the doc, for a reason given there (internet, minutes); every other
block runs.  The blocks of one file run in order in one temporary folder (a walkthrough's
later commands read what earlier ones wrote), in which upper-case names stand for the user's
files and exist, small: IMAGES.mrcs, TARGETS.mrcs, PARTICLES.star (+ its stack), MAP.mrc,
TARGET.mrc, V1.mrc, V2.mrc.  Shell blocks run under ``bash -euo pipefail`` with ``radsvd``
this tree's command; Python blocks run in a fresh interpreter, or through doctest when they
hold ``>>>`` prompts.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.M | re.S)
SKIP = re.compile(r"^#\s*not run in tests:\s*(\S.*)$")
LANGS = {"bash": "bash", "sh": "bash", "shell": "bash", "console": "bash", "python": "python",
         "py": "python", "pycon": "python"}


def blocks(path: Path) -> list[tuple[int, str, str]]:
    """(line, language, code) of the fenced blocks of a Markdown file."""
    text = path.read_text(encoding="utf-8")
    return [(text[:m.start()].count("\n") + 1, m.group(1), m.group(2))
            for m in FENCE.finditer(text)]


def test_every_block_is_tagged_and_every_skip_says_why():
    for path in DOCS:
        for line, lang, code in blocks(path):
            where = f"{path.relative_to(ROOT)}:{line}"
            assert lang, f"{where}: untagged code block (```bash, ```python, ```text ...)"
            first = code.splitlines()[0] if code.strip() else ""
            if first.startswith("#") and "not run" in first:
                assert SKIP.match(first), f"{where}: write '# not run in tests: REASON'"


def _placeholders(d: Path) -> None:
    from radsvd.data import write_mrc
    from radsvd.data.molecules import synthetic_molecule
    from radsvd.data.rotations import random_rotations
    from radsvd.data.simulate import simulate_particles, write_particles

    mol = synthetic_molecule("ribosome-like")
    images, table = simulate_particles(mol, 8, 32, 6.0, snr=1.0, seed=1)
    write_particles(d, images, table, name="PARTICLES")
    write_mrc(d / "IMAGES.mrcs", images, 6.0)
    targets, _ = simulate_particles(mol, 6, 32, 6.0, snr=None, ctf=False, seed=2)
    write_mrc(d / "TARGETS.mrcs", targets, 6.0)
    write_mrc(d / "MAP.mrc", mol.volume(32), 6.0)
    write_mrc(d / "TARGET.mrc", mol.volume(65), 3.0)
    for i, R in enumerate(random_rotations(2, rng=3), 1):
        write_mrc(d / f"V{i}.mrc", mol.rotated(R).volume(65).astype(np.float32), 3.0)


def _run(lang: str, code: str, cwd: Path, where: str) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]), MPLBACKEND="Agg")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    if lang == "bash":
        script = (f'radsvd() {{ "{sys.executable}" -m radsvd "$@"; }}\n'
                  f'python() {{ "{sys.executable}" "$@"; }}\n' + code)
        argv = ["bash", "-euo", "pipefail", "-c", script]
    elif ">>>" in code:
        argv = [sys.executable, "-c", "import doctest, sys; t = doctest.DocTestParser()"
                ".get_doctest(sys.stdin.read(), {}, 'snippet', None, 0); "
                "r = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS); r.run(t); "
                "sys.exit(1 if r.failures else 0)"]
    else:
        argv = [sys.executable, "-c", code]
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                          input=code if ">>>" in code else None, timeout=600)
    assert proc.returncode == 0, (f"{where} ({lang}) failed, exit {proc.returncode}:\n"
                                  f"{code}\n--- stdout\n{proc.stdout[-3000:]}\n"
                                  f"--- stderr\n{proc.stderr[-3000:]}")


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_doc_snippets_run(path, tmp_path):
    runnable = [(line, LANGS[lang], code) for line, lang, code in blocks(path)
                if lang in LANGS and not SKIP.match((code.splitlines() or [""])[0])]
    if not runnable:
        return
    _placeholders(tmp_path)
    for line, lang, code in runnable:
        _run(lang, code, tmp_path, f"{path.relative_to(ROOT)}:{line}")
