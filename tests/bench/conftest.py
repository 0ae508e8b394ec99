"""Shared fixtures of the benchmark tests."""

from __future__ import annotations

import json

import pytest

from radsvd.cli import main


@pytest.fixture(scope="session")
def quick_doc(tmp_path_factory):
    """One real quick run of both areas, written with --json (shared: it takes 15-50 s)."""
    path = tmp_path_factory.mktemp("bench") / "quick.json"
    assert main(["bench", "--quick", "--json", str(path)]) == 0
    return path, json.loads(path.read_text())
