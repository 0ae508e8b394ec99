"""The workflow's conda environment (workflow/envs/radsvd.yaml) pins every dependency."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

REPO = Path(__file__).resolve().parents[2]


def _key(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def _env():
    env = yaml.safe_load((REPO / "workflow" / "envs" / "radsvd.yaml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    return conda, pip


def test_every_direct_dependency_is_pinned_within_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    direct = [Requirement(r) for r in
              project["dependencies"] + project["optional-dependencies"]["workflow"]]
    conda, pip = _env()
    assert any(re.fullmatch(r"python =3\.\d+", d) for d in conda), conda
    assert "-e ../..[workflow]" in pip
    pins = {}
    for line in pip:
        if line.startswith("-e "):
            continue
        req = Requirement(line)
        spec = list(req.specifier)
        assert len(spec) == 1 and spec[0].operator == "==", f"not an exact pin: {line}"
        pins[_key(req.name)] = Version(spec[0].version)
    for req in direct:
        assert _key(req.name) in pins, f"{req.name} is not pinned in workflow/envs/radsvd.yaml"
        assert pins[_key(req.name)] in req.specifier, \
            f"{req.name}=={pins[_key(req.name)]} does not satisfy pyproject's {req}"
