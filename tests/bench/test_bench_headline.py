"""The headline table of ``radsvd bench`` and docs/bench.md, which documents every field of
the JSON document: checked on real records of every area (quick and tiny runs)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from radsvd.bench import headline, startup

DOC = (Path(__file__).resolve().parents[2] / "docs" / "bench.md").read_text(encoding="utf-8")
DOCUMENTED = set(re.findall(r"`([A-Za-z_][\w.]*)`", DOC))


def _undocumented(doc: dict) -> set:
    keys = {f"machine.{k}" for k in doc.get("machine", {})} | set(doc) - {"machine", "records"}
    for r in doc["records"]:
        keys |= set(r) - {"name", "seconds", "params"} | set(r.get("params", {}))
    # a field counts as documented when its name (or machine.<name>, or any of a group
    # written `a`, `b`) appears in docs/bench.md as code
    flat = DOCUMENTED | {k.split(".")[-1] for k in DOCUMENTED}
    return {k for k in keys if k not in flat and k.split(".")[-1] not in flat}


@pytest.fixture(scope="module")
def startup_records(tmp_path_factory):
    """Two commands cold and warm (the area runs every command; that takes minutes)."""
    keep = ("simulate", "info")
    orig = startup._commands
    startup._commands = lambda d: {k: v for k, v in orig(d).items() if k in keep}
    try:
        return startup.measure(quick=True)
    finally:
        startup._commands = orig


def test_startup_records(startup_records):
    by = {r["name"]: r for r in startup_records}
    assert set(by) == {"startup.simulate", "startup.info"}
    for r in by.values():
        assert r["cold_seconds"] > 0 and r["seconds"] > 0
        assert r["compile_seconds"] == pytest.approx(r["cold_seconds"] - r["seconds"])
        assert r["params"]["command"].startswith("radsvd ")
    rows = headline.rows({"records": startup_records})
    assert len(rows) == 2 and "first run of `radsvd info`" in rows[1][0]


def test_startup_fields_documented(startup_records):
    assert not _undocumented({"records": startup_records})


def test_quick_document_fields_documented_and_headline(quick_doc):
    _, doc = quick_doc
    assert not _undocumented(doc)
    text = headline.format_headline(doc)
    assert text.startswith("HEADLINE (--quick sizes")
    for claim in ("2D: full path against a plain numpy", "2D: radial-SVD H = ",
                  "3D: radial/degree-SVD H = ", "ideal R/H", "ideal K/H"):
        assert claim in text
    assert headline.format_headline({"records": []}).startswith("headline: no headline")


def test_report_merges_a_startup_document(startup_records, quick_doc):
    from radsvd._validate import InputError
    from radsvd.bench.report import merge, render

    _, doc = quick_doc
    other = {"schema": 1, "created": "2026-12-08T00:00:00Z", "quick": True,
             "machine": doc["machine"], "records": startup_records}
    page = render(merge([doc, other]))
    assert "## First run and later runs" in page and "- Merged: the startup records" in page
    assert "`radsvd info …/sim/particles.star`" in page
    assert "`startup.info`" not in page            # shown in its table, not under "Other"
    with pytest.raises(InputError, match="share record names"):
        merge([doc, doc])
