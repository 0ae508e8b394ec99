"""The headline table ``radsvd bench`` ends with: what was measured, the ratio, the goal.

One row per claim the benchmark checks, built from the records present (a row whose record
is absent is left out).  ``goal`` is what the ratio is compared with: the paper's ideal
speedup (R/H rings in 2D, K/H in 3D), Amdahl's bound for whole commands, or "> 1".  The
fields behind each row are documented in docs/bench.md.
"""

from __future__ import annotations


def _pct(x) -> str:
    return f"{100 * x:.0f}%"


def rows(doc: dict) -> list[tuple[str, str, str, str, str]]:
    """(what was measured, seconds, ratio, goal, note) for each headline present."""
    by = {r["name"]: r for r in doc.get("records", [])}
    out = []

    def ranked(prefix: str) -> list[str]:
        import re

        pat = re.compile(rf"{re.escape(prefix)}rank(\d+)$")
        return sorted((n for n in by if pat.match(n)), key=lambda n: int(pat.match(n)[1]))

    r = by.get("images.full")
    if r and "ratio_vs_numpy" in r:
        out.append(("2D: full path against a plain numpy implementation", f"{r['seconds']:.3g}",
                    f"{r['ratio_vs_numpy']:.2f}×", "> 1×",
                    f"same best target {_pct(r.get('agree_best_target_vs_numpy', 0))}"))
    for name in ranked("images."):
        r = by[name]
        p = r.get("params", {})
        out.append((f"2D: radial-SVD H = {p.get('H', '?')} against the full path "
                    f"(R = {p.get('R', '?')} rings)", f"{r['seconds']:.3g}",
                    f"{r['speedup_vs_full']:.2f}×",
                    f"ideal R/H = {r.get('ideal_speedup', float('nan')):.2f}×",
                    f"same best target as full for {_pct(r['agree_best_target_vs_full'])} "
                    "of the images"))
    for name in ranked("images.shifts."):
        r = by[name]
        p = r.get("params", {})
        out.append((f"2D with {p.get('n_shifts', '?')} shifts: shift-SVD H = {p.get('H', '?')} "
                    "against the full path", f"{r['seconds']:.3g}",
                    f"{r['speedup_vs_full']:.2f}×",
                    f"ideal R/H = {p.get('R', 0) / max(p.get('H', 1), 1):.2f}×",
                    f"same best target as full for {_pct(r['agree_best_target_vs_full'])}"))
    r = by.get("volumes.full")
    if r and "ratio_vs_numpy" in r:
        out.append(("3D: full path against a numpy implementation", f"{r['seconds']:.3g}",
                    f"{r['ratio_vs_numpy']:.1f}×", "> 1×", ""))
    for name in ranked("volumes."):
        r = by[name]
        p = r.get("params", {})
        out.append((f"3D: radial/degree-SVD H = {p.get('H_C', '?')} against the full path",
                    f"{r['seconds']:.3g}", f"{r['speedup_vs_full']:.2f}×",
                    f"ideal K/H = {r.get('ideal_speedup', float('nan')):.2f}×",
                    f"same best rotation as full for {_pct(r['same_best_as_full'])}, landscape "
                    f"correlation {r['correlation']:.3f}" if "correlation" in r else ""))
    for cmd in ("align_images", "align_volumes"):
        for name in ranked(f"e2e.{cmd}."):
            r = by[name]
            if "speedup_vs_full" not in r:
                continue
            out.append((f"whole `{cmd.replace('_', '-')} --rank {name.rsplit('rank', 1)[1]}` "
                        "against `--rank full`", f"{r['seconds']:.3g}",
                        f"{r['speedup_vs_full']:.2f}×",
                        f"Amdahl bound {r['bound_speedup_vs_full']:.2f}×"
                        if "bound_speedup_vs_full" in r else "", "start-up included"))
    for name, r in by.items():
        if name.startswith("startup."):
            what = "radsvd " + name[len("startup."):].replace(".", " ")
            out.append((f"first run of `{what}` "
                        "(empty numba cache) against later runs",
                        f"{r['cold_seconds']:.3g} / {r['seconds']:.3g}",
                        f"{1 / r['cold_over_warm']:.2f}×", "1× after `radsvd warmup`",
                        f"{r['compile_seconds']:.0f} s compiling"))
    return out


def format_headline(doc: dict) -> str:
    """The table as aligned plain text (stdout of ``radsvd bench``)."""
    head = ("what was measured", "seconds", "speed ratio", "goal", "note")
    body = rows(doc)
    if not body:
        return "headline: no headline record in this run"
    width = [max(len(str(row[i])) for row in [head, *body]) for i in range(len(head))]
    line = "  ".join("{:<%d}" % w for w in width)
    title = f"HEADLINE ({'--quick sizes: smaller than the paper' if doc.get('quick') else 'full sizes'})"
    text = [title, line.format(*head), line.format(*("-" * w for w in width)),
            *(line.format(*row) for row in body),
            "speed ratio: how many times faster the first thing is than the second (< 1: "
            "slower); seconds: the first thing's (first run / later runs for start-up)"]
    return "\n".join(t.rstrip() for t in text)
