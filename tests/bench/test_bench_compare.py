"""``radsvd bench``: the quick JSON document and ``--compare`` (passing, failing, bad input).

The end-to-end checks re-measure at quick sizes (a few seconds each); the verdict logic is
also checked on crafted documents through ``--new`` (no measurement)."""

from __future__ import annotations

import copy
import json
import math

import pytest

from radsvd.bench import compare as cmp
from radsvd.bench import write_json
from radsvd.cli import main


def scaled(doc, factor):
    d = copy.deepcopy(doc)
    for r in d["records"]:
        r["seconds"] *= factor
    return d


def test_quick_json_document(quick_doc):
    path, doc = quick_doc
    assert doc["schema"] == 1 and doc["quick"] is True
    assert {"cpus", "threads", "numpy", "numba"} <= set(doc["machine"])
    names = [r["name"] for r in doc["records"]]
    assert len(names) == len(set(names))
    assert {"images", "volumes"} == {n.split(".")[0] for n in names}
    assert {"images.full", "images.numpy_baseline", "volumes.full"} <= set(names)
    for r in doc["records"]:
        assert isinstance(r["seconds"], float) and math.isfinite(r["seconds"])
        assert r["seconds"] >= 0 and isinstance(r["params"], dict)
    timed = [r for r in doc["records"] if r["seconds"] > 0]
    assert len(timed) >= 10
    assert [p.name for p in path.parent.iterdir()] == [path.name]   # no temporary file left
    assert cmp.check_document(doc) is doc


def test_compare_fails_on_regression(quick_doc, tmp_path, capsys):
    """OLD with every time divided by 1e6: every judged record is a regression → exit 1.
    Re-measures both areas (OLD's areas and quick setting are the default)."""
    _, doc = quick_doc
    old = tmp_path / "old_tiny.json"
    write_json(scaled(doc, 1e-6), str(old))
    new = tmp_path / "new.json"
    rc = main(["bench", "--compare", str(old), "--json", str(new), "--retries", "0"])
    out = capsys.readouterr().out
    assert rc == 1, out
    assert "REGRESSION" in out and "FAIL:" in out
    assert "images.full " in out and "volumes.full " in out
    assert "ignored" in out                                # *.setup shown, not judged
    written = json.loads(new.read_text())                 # the new measurement, for later use
    assert written["quick"] is True
    rows = cmp.compare(scaled(doc, 1e-6), written)
    judged = [r for r in rows if r.verdict in (cmp.OK, cmp.FASTER, cmp.REGRESSION)]
    assert judged and all(r.verdict == cmp.REGRESSION for r in judged)


def test_compare_retries_keep_the_fastest_run(quick_doc, tmp_path, capsys):
    """A regression triggers a re-measurement (--retries 1); it stays a regression and the
    report says that the new times are the fastest of 2 runs."""
    _, doc = quick_doc
    old = tmp_path / "old_tiny.json"
    write_json(scaled(doc, 1e-6), str(old))
    new = tmp_path / "new.json"
    rc = main(["bench", "--compare", str(old), "--only", "volumes", "--retries", "1",
               "--json", str(new)])
    out = capsys.readouterr().out
    assert rc == 1 and "fastest of 2 runs" in out, out
    assert json.loads(new.read_text())["runs"] == 2


def test_fastest_of():
    p = {"N": 1}
    a = _doc(("images.a", 2.0, p), ("images.b", 1.0, p), ("images.c", 1.0, p),
             ("images.m", 0.0, p))
    b = _doc(("images.a", 1.5, p), ("images.b", 3.0, p), ("images.c", 0.5, {"N": 2}),
             ("images.m", 0.0, p), ("images.x", 1.0, p))
    m = cmp.fastest_of(a, b)
    got = {r["name"]: (r["seconds"], r["params"]) for r in m["records"]}
    assert got == {"images.a": (1.5, p), "images.b": (1.0, p),     # the faster run each
                   "images.c": (1.0, p),                            # other params: first kept
                   "images.m": (0.0, p), "images.x": (1.0, p)}
    assert m["runs"] == 2 and cmp.fastest_of(m, b)["runs"] == 3


def test_compare_passes_when_old_was_slower(quick_doc, tmp_path, capsys):
    _, doc = quick_doc
    old = tmp_path / "old_huge.json"
    write_json(scaled(doc, 1e6), str(old))
    rc = main(["bench", "--compare", str(old), "--only", "volumes", "--tolerance", "0.5"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "REGRESSION" not in out and "OK: no record slower" in out
    assert "faster" in out and "images." not in out       # --only: the other area not judged


def _doc(*records, quick=True):
    return dict(schema=1, created="2026-01-01T00:00:00Z", quick=quick, machine={"threads": 2},
                records=[dict(name=n, seconds=s, params=p) for n, s, p in records])


def test_verdicts_on_crafted_documents(tmp_path, capsys):
    p = {"N_A": 8}
    old = _doc(("images.a", 1.0, p), ("images.b", 1.0, p), ("images.c", 1.0, p),
               ("images.d", 1.0, p), ("images.mem", 0.0, p), ("images.setup", 1.0, p),
               ("images.gone", 1.0, p), ("images.e", 1.0, p))
    new = _doc(("images.a", 1.19, p), ("images.b", 1.21, p), ("images.c", 0.5, p),
               ("images.d", 9.0, {"N_A": 16}), ("images.mem", 0.0, p), ("images.setup", 9.0, p),
               ("images.e", 1.3, p), ("images.added", 1.0, p))
    rows = {r.name: r for r in cmp.compare(old, new, tolerance=0.2)}
    assert rows["images.a"].verdict == cmp.OK                 # 19% slower: within 20%
    assert rows["images.b"].verdict == cmp.REGRESSION         # 21% slower
    assert rows["images.b"].ratio == pytest.approx(1.21)
    assert rows["images.c"].verdict == cmp.FASTER
    assert rows["images.d"].verdict == cmp.PARAMS_DIFFER
    assert rows["images.mem"].verdict == cmp.UNTIMED
    assert rows["images.setup"].verdict == cmp.IGNORED
    assert rows["images.gone"].verdict == cmp.ONLY_OLD
    assert rows["images.added"].verdict == cmp.ONLY_NEW
    # noise floor: 0.3 s slower is not flagged with --min-delta 0.5
    rows = {r.name: r for r in cmp.compare(old, new, tolerance=0.2, min_delta=0.5)}
    assert rows["images.e"].verdict == cmp.OK
    # through the CLI with --new (no measurement): exit 1, the params change explained
    (tmp_path / "o.json").write_text(json.dumps(old))
    (tmp_path / "n.json").write_text(json.dumps(new))
    rc = main(["bench", "--compare", str(tmp_path / "o.json"), "--new", str(tmp_path / "n.json")])
    out = capsys.readouterr().out
    assert rc == 1 and "images.b, images.e" in out and "N_A: 8 -> 16" in out
    rc = main(["bench", "--compare", str(tmp_path / "o.json"), "--new", str(tmp_path / "n.json"),
               "--tolerance", "0.35", "--ignore", "images.setup"])
    assert rc == 0, capsys.readouterr().out


@pytest.mark.parametrize("content, match", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "not a radsvd benchmark document"),
    ('{"schema": 99, "records": []}', "unsupported benchmark schema 99"),
    ('{"schema": 1, "records": {}}', "'records' must be a list"),
    ('{"schema": 1, "records": [{"seconds": 1}]}', "no string 'name'"),
    ('{"schema": 1, "records": [{"name": "images.x"}]}', "no valid 'seconds'"),
    ('{"schema": 1, "records": [{"name": "images.x", "seconds": -1}]}', "no valid 'seconds'"),
    ('{"schema": 1, "records": [{"name": "images.x", "seconds": "1"}]}', "no valid 'seconds'"),
    ('{"schema": 1, "records": [{"name": "a.x", "seconds": 1}, {"name": "a.x", "seconds": 1}]}',
     "duplicate record name"),
    ('{"schema": 1, "records": []}', "no records"),
    ('{"schema": 1, "records": [{"name": "other.x", "seconds": 1}]}', "no record belongs"),
])
def test_unreadable_or_mismatched_json(tmp_path, capsys, content, match):
    bad = tmp_path / "old.json"
    bad.write_text(content)
    assert main(["bench", "--compare", str(bad)]) == 2
    assert match in capsys.readouterr().err


def test_bad_options_and_missing_files(tmp_path, capsys):
    assert main(["bench", "--compare", str(tmp_path / "missing.json")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["bench", "--tolerance", "0.1"]) == 2
    assert "--tolerance needs --compare" in capsys.readouterr().err
    assert main(["bench", "--retries", "5"]) == 2
    assert "--retries needs --compare" in capsys.readouterr().err
    doc = _doc(("images.a", 1.0, {}))
    (tmp_path / "o.json").write_text(json.dumps(doc))
    assert main(["bench", "--compare", str(tmp_path / "o.json"), "--new",
                 str(tmp_path / "o.json"), "--tolerance", "-1"]) == 2
    assert "tolerance must be" in capsys.readouterr().err
    assert main(["bench", "--compare", str(tmp_path / "o.json"), "--retries", "-1"]) == 2
    assert "--retries must be >= 0" in capsys.readouterr().err
    # nothing comparable (every record changed its params): an error, not a silent pass
    other = _doc(("images.a", 1.0, {"N_A": 3}))
    (tmp_path / "n.json").write_text(json.dumps(other))
    assert main(["bench", "--compare", str(tmp_path / "o.json"), "--new",
                 str(tmp_path / "n.json")]) == 2
    assert "nothing to compare" in capsys.readouterr().err


def test_write_json_is_atomic(tmp_path):
    path = tmp_path / "b.json"
    write_json(_doc(("images.a", 1.0, {})), str(path))
    before = path.read_text()
    with pytest.raises(TypeError):                       # not JSON-serialisable: old file kept
        write_json(_doc(("images.a", 1.0, {"x": object()})), str(path))
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["b.json"]
