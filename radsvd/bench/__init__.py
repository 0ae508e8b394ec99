"""Benchmark runner (``radsvd bench``).

Protocol: every module ``radsvd.bench.<area>`` exposes ``measure(quick: bool = False) ->
list[dict]``; each record has a stable unique ``name`` (e.g. ``images.full``), a numeric
``seconds``, further numeric fields (``pairs_per_s``, ``ratio``, ...) and a ``params`` dict.
The runner collects the records of every area present into one JSON document:

    {"schema": 1, "created": ISO-8601 UTC, "quick": bool, "machine": {...},
     "records": [{"name": ..., "seconds": ..., ..., "params": {...}}, ...]}

Records are keyed by ``name``, so two documents can be compared record by record
(same name, same params → comparable numbers): ``radsvd bench --compare OLD.json``
(:mod:`radsvd.bench.compare`) flags records whose ``seconds`` grew beyond a tolerance.
Conventions the comparison relies on: the name starts with the area (``images.``,
``volumes.``, ``e2e.``); ``seconds`` = 0 marks a record that is not a timing (memory, say);
``<area>.setup`` times data preparation and is shown but not judged.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import time

from radsvd._files import atomic_path

AREAS = ("images", "volumes", "e2e", "particles", "startup")
DEFAULT_AREAS = ("images", "volumes")     # e2e (whole commands) with ``radsvd bench --e2e``,
#                                           startup (cold and warm) with ``--only startup``
SCHEMA = 1


def machine_info() -> dict:
    import numba
    import numpy as np

    info = dict(platform=platform.platform(), python=platform.python_version(),
                numpy=np.__version__, numba=numba.__version__, cpus=os.cpu_count(),
                threads=int(numba.get_num_threads()))
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = sorted(
            f"{d.get('internal_api')} {d.get('version')} {d.get('architecture')}"
            for d in threadpool_info() if d.get("user_api") == "blas")
    except Exception:
        pass
    return info


def run(quick: bool = False, areas=DEFAULT_AREAS, log=None, options=None) -> dict:
    """Run every available area's ``measure(quick)``; returns the JSON document (a dict).
    ``options``: {area: extra keyword arguments of its ``measure``}."""
    records = []
    for area in areas:
        try:
            mod = importlib.import_module(f"radsvd.bench.{area}")
        except ModuleNotFoundError as exc:
            if exc.name == f"radsvd.bench.{area}":
                continue
            raise
        if log:
            log(f"bench: {area} ...")
        t0 = time.perf_counter()
        recs = mod.measure(quick=quick, **(options or {}).get(area, {}))
        for r in recs:
            if not isinstance(r.get("name"), str) or "seconds" not in r:
                raise ValueError(f"bench record without name/seconds from {area}: {r}")
        records.extend(recs)
        if log:
            log(f"bench: {area} done in {time.perf_counter() - t0:.1f} s")
    names = [r["name"] for r in records]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"duplicate benchmark record names: {sorted(dup)}")
    return dict(schema=SCHEMA, created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                quick=bool(quick), machine=machine_info(), records=records)


def write_json(doc: dict, path: str) -> None:
    """Write the benchmark document atomically."""
    with atomic_path(path, ".json") as tmp, open(tmp, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=False)
        f.write("\n")


def format_table(doc: dict) -> str:
    """The headline table: one line per record."""
    lines = [f"{'benchmark':34s} {'seconds':>9s} {'pairs/s':>10s}  other"]
    for r in doc["records"]:
        other = ", ".join(f"{k}={_fmt(v)}" for k, v in r.items()
                          if k not in ("name", "seconds", "pairs_per_s", "params"))
        pps = r.get("pairs_per_s")
        lines.append(f"{r['name']:34s} {r['seconds']:9.4g} "
                     f"{'' if pps is None else format(pps, '10.3g'):>10s}  {other}")
    return "\n".join(lines)


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
