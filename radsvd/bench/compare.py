"""Compare two benchmark documents record by record (``radsvd bench --compare OLD.json``).

Records are matched by ``name``; a pair is comparable when their ``params`` are equal and
both have a positive ``seconds``.  The verdict of a comparable pair follows the ratio
new/old of ``seconds``:

* ``REGRESSION``: ratio > 1 + tolerance (and new - old > ``min_delta`` seconds);
* ``faster``:     ratio < 1 / (1 + tolerance);
* ``ok``:         otherwise.

Other rows are reported but never fail: ``params differ`` (the benchmark changed its
definition), ``untimed`` (``seconds`` = 0, e.g. memory records), ``ignored`` (names matching
an ignore pattern; by default ``*.setup``, the data preparation that the areas time for
information only), ``only in old`` / ``only in new``.
"""

from __future__ import annotations

import fnmatch
import json
import math
from dataclasses import dataclass

from radsvd._validate import InputError

DEFAULT_TOLERANCE = 0.2
DEFAULT_IGNORE = ("*.setup",)

REGRESSION, FASTER, OK = "REGRESSION", "faster", "ok"
PARAMS_DIFFER, UNTIMED, IGNORED = "params differ", "untimed", "ignored"
ONLY_OLD, ONLY_NEW = "only in old", "only in new"


def load(path: str) -> dict:
    """Read and check a benchmark document written by ``radsvd bench --json``."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"benchmark file {path!r}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"benchmark file {path!r} is not readable: {exc}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"benchmark file {path!r} is not valid JSON ({exc})") from None
    return check_document(doc, path)


def check_document(doc, where: str = "document") -> dict:
    """Validate the structure of a benchmark document; returns it unchanged."""
    from radsvd.bench import SCHEMA

    if not isinstance(doc, dict) or "records" not in doc:
        raise InputError(f"{where} is not a radsvd benchmark document "
                         f"(a JSON object with 'schema' and 'records' is expected)")
    schema = doc.get("schema")
    if not isinstance(schema, int) or isinstance(schema, bool) or not 1 <= schema <= SCHEMA:
        raise InputError(f"{where}: unsupported benchmark schema {schema!r} "
                         f"(this radsvd reads schema 1..{SCHEMA})")
    recs = doc["records"]
    if not isinstance(recs, list):
        raise InputError(f"{where}: 'records' must be a list, got {type(recs).__name__}")
    seen = set()
    for i, r in enumerate(recs):
        if not isinstance(r, dict) or not isinstance(r.get("name"), str):
            raise InputError(f"{where}: record {i} has no string 'name'")
        s = r.get("seconds")
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s) \
                or s < 0:
            raise InputError(f"{where}: record {r['name']!r} has no valid 'seconds' "
                             f"(a finite number >= 0 is required, got {s!r})")
        if r["name"] in seen:
            raise InputError(f"{where}: duplicate record name {r['name']!r}")
        seen.add(r["name"])
        if not isinstance(r.get("params", {}), dict):
            raise InputError(f"{where}: record {r['name']!r}: 'params' must be an object")
    if "quick" in doc and not isinstance(doc["quick"], bool):
        raise InputError(f"{where}: 'quick' must be true or false")
    return doc


def areas_of(doc: dict) -> tuple[str, ...]:
    """The areas whose records a document holds (the prefix of each record name)."""
    out = []
    for r in doc["records"]:
        a = r["name"].split(".", 1)[0]
        if a not in out:
            out.append(a)
    return tuple(out)


@dataclass
class Row:
    name: str
    old: float | None
    new: float | None
    verdict: str

    @property
    def ratio(self) -> float | None:
        if self.old and self.new is not None and self.old > 0:
            return self.new / self.old
        return None


def _canonical(params) -> str:
    return json.dumps(params or {}, sort_keys=True, default=str)


def compare(old: dict, new: dict, tolerance: float = DEFAULT_TOLERANCE,
            min_delta: float = 0.0, ignore=DEFAULT_IGNORE) -> list[Row]:
    """One :class:`Row` per record name (order: OLD's records, then those only in NEW)."""
    if not (isinstance(tolerance, (int, float)) and math.isfinite(tolerance) and tolerance >= 0):
        raise InputError(f"tolerance must be a finite number >= 0, got {tolerance!r}")
    if not (isinstance(min_delta, (int, float)) and math.isfinite(min_delta) and min_delta >= 0):
        raise InputError(f"min_delta must be a finite number >= 0 seconds, got {min_delta!r}")
    new_by = {r["name"]: r for r in new["records"]}
    old_names = {r["name"] for r in old["records"]}
    rows = []
    for o in old["records"]:
        name = o["name"]
        n = new_by.get(name)
        if n is None:
            rows.append(Row(name, float(o["seconds"]), None, ONLY_OLD))
            continue
        so, sn = float(o["seconds"]), float(n["seconds"])
        if any(fnmatch.fnmatchcase(name, p) for p in ignore):
            verdict = IGNORED
        elif _canonical(o.get("params")) != _canonical(n.get("params")):
            verdict = PARAMS_DIFFER
        elif so <= 0 or sn <= 0:
            verdict = UNTIMED
        elif sn > so * (1 + tolerance) and sn - so > min_delta:
            verdict = REGRESSION
        elif sn * (1 + tolerance) < so:
            verdict = FASTER
        else:
            verdict = OK
        rows.append(Row(name, so, sn, verdict))
    for r in new["records"]:
        if r["name"] not in old_names:
            rows.append(Row(r["name"], None, float(r["seconds"]), ONLY_NEW))
    return rows


def fastest_of(first: dict, second: dict) -> dict:
    """Merge two measurements of the same benchmark: per record name, the record of the run
    with the smaller ``seconds`` (on a shared machine other load only adds time, so the
    minimum is the better estimate).  Records of one run only are kept; ``runs`` counts the
    measurements merged."""
    by = {r["name"]: r for r in second["records"]}
    recs = []
    for r in first["records"]:
        o = by.pop(r["name"], None)
        same = o is not None and _canonical(o.get("params")) == _canonical(r.get("params"))
        recs.append(o if same and 0 < o["seconds"] < r["seconds"] else r)
    recs.extend(by.values())
    return dict(first, records=recs,
                runs=int(first.get("runs", 1)) + int(second.get("runs", 1)))


def params_diff(old: dict, new: dict, name: str) -> str:
    """A short description of how the params of record ``name`` differ."""
    po = next(r for r in old["records"] if r["name"] == name).get("params") or {}
    pn = next(r for r in new["records"] if r["name"] == name).get("params") or {}
    keys = sorted(set(po) | set(pn))
    return ", ".join(f"{k}: {po.get(k, '-')} -> {pn.get(k, '-')}" for k in keys
                     if _canonical(po.get(k)) != _canonical(pn.get(k)))


def regressions(rows) -> list[Row]:
    return [r for r in rows if r.verdict == REGRESSION]


def format_comparison(rows, tolerance: float = DEFAULT_TOLERANCE) -> str:
    """The comparison table (old, new, ratio, verdict) and a one-line summary."""
    w = max([34] + [len(r.name) for r in rows])
    lines = [f"{'benchmark':{w}s} {'old s':>10s} {'new s':>10s} {'new/old':>8s}  verdict"]

    def num(x):
        return "-" if x is None else f"{x:.4g}"

    for r in rows:
        ratio = r.ratio
        verdict = r.verdict
        if verdict == REGRESSION:
            verdict = f"REGRESSION (> {1 + tolerance:.3g}x)"
        lines.append(f"{r.name:{w}s} {num(r.old):>10s} {num(r.new):>10s} "
                     f"{'-' if ratio is None else format(ratio, '.3f'):>8s}  {verdict}")
    count = {}
    for r in rows:
        count[r.verdict] = count.get(r.verdict, 0) + 1
    judged = sum(count.get(v, 0) for v in (REGRESSION, FASTER, OK))
    summary = (f"{judged} compared at tolerance {100 * tolerance:g}%: "
               f"{count.get(REGRESSION, 0)} regression(s), {count.get(FASTER, 0)} faster, "
               f"{count.get(OK, 0)} ok")
    others = [f"{count[v]} {v}" for v in (PARAMS_DIFFER, UNTIMED, IGNORED, ONLY_OLD, ONLY_NEW)
              if count.get(v)]
    if others:
        summary += "; not judged: " + ", ".join(others)
    lines.append(summary)
    return "\n".join(lines)


def machine_differences(old: dict, new: dict) -> list[str]:
    """Machine fields that differ between two documents (cpu, threads, versions)."""
    mo, mn = old.get("machine") or {}, new.get("machine") or {}
    out = []
    for k in ("cpu", "cpus", "threads", "python", "numpy", "numba", "blas"):
        a, b = mo.get(k), mn.get(k)
        if isinstance(a, list) and isinstance(b, list):
            a, b = sorted(map(str, a)), sorted(map(str, b))
        if k in mo and k in mn and a != b:
            out.append(f"{k}: {mo[k]} -> {mn[k]}")
    return out
