"""The `check_figures` rule: every figure's numbers against the committed reference
(wf_check) and the paper's stated results against the run (wf_claims); writes
{results}/report.md, {results}/report.html, and a summary (JSON and one line).  Never fails
itself, so the report survives a failed check; the `check` rule fails on the summary."""

import html
import json
import math
import os
from pathlib import Path

from wf_check import TOLERANCES, check_figure
from wf_claims import paper_claims
from wf_common import atomic_path, setup

log = setup(snakemake)
p = snakemake.params
run_dir = Path(p.figures_dir)
ref_dir = Path(p.reference) if p.reference else None
out = snakemake.output
report_dir = Path(out.report).parent


def fmt(x):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.3g}" if isinstance(x, float) else str(x)


results = []
for key, stem, timing in p.figures:
    res = check_figure(key, stem, timing, run_dir, ref_dir)
    if p.claims:
        try:
            res.claims = paper_claims(key, run_dir, stem)
        except (KeyError, ValueError, IndexError, AttributeError) as exc:
            res.fail(f"paper claims could not be evaluated: {exc}")
        for c in res.claims:
            if c.passed is False and not c.timing:
                res.fail(f"paper claim: {c.test} ({c.value})")
    results.append(res)
    log.info("%s: %s %s", stem, "pass" if res.passed else "FAIL", "; ".join(res.problems))

n_fail = sum(not r.passed for r in results)
claims = [c for r in results for c in r.claims]
n_claims = sum(c.passed is not None and not c.timing for c in claims)
n_claims_ok = sum(c.passed is True and not c.timing for c in claims)
n_timing = sum(c.passed is not None and c.timing for c in claims)
n_timing_ok = sum(c.passed is True and c.timing for c in claims)
worst = max((r.worst for r in results if r.worst is not None), key=lambda c: c.ratio,
            default=None)
verdict = "PASS" if n_fail == 0 else "FAIL"
summary = (f"reproducibility check: {verdict} — {len(results) - n_fail}/{len(results)} figures "
           + (f"match the reference {ref_dir}, " if ref_dir else
              "have complete data (no reference to compare with), ")
           + 
           f"{n_claims_ok}/{n_claims} paper claims hold"
           + (f" (and {n_timing_ok}/{n_timing} about measured speed)" if n_timing else "")
           + (f"; largest deviation/tolerance {worst.ratio:.2g} ({worst.column})"
              if worst and math.isfinite(worst.ratio) else "")
           + f"; report: {out.report}")


def rel(path):
    return os.path.relpath(path, report_dir)


def deviation_cell(r):
    w = r.worst
    if w is None:
        if not r.passed:
            return "–", "–"
        return ("data present (no reference)" if ref_dir is None else "timings present"), "–"
    dev = (f"{w.column}: {fmt(w.deviation)}" + (f" ({w.note})" if w.note else ""))
    return dev, fmt(w.tolerance)


def claim_cell(r, sep):
    if not r.claims:
        return "–"
    mark = {True: "✓", False: "✗", None: "n/a"}
    return sep.join(f"{mark[c.passed]} paper: {c.paper} — test: {c.test} — this run: "
                    f"{c.value}" + (" (measured speed: reported, not gating)" if c.timing
                                    else "")
                    for c in r.claims if c.paper or c.passed is not None)


md = ["# Reproducibility report", "",
      f"Run: `{run_dir}` · reference: `{ref_dir or 'none'}` · paper claims: "
      f"{'checked' if p.claims else 'not checked (check.claims: false)'}", "",
      f"**{summary}**", "",
      "Tolerances by kind (derivation: docs/reproducibility.md): "
      + "; ".join(f"{k}: " + ", ".join(f"{n} {v:.3g}" for n, v in t.items())
                  for k, t in TOLERANCES.items()) + ".", "",
      "| figure | result | max deviation | tolerance | paper's claim vs this run | figure |",
      "| --- | --- | --- | --- | --- | --- |"]
for r in results:
    dev, tol = deviation_cell(r)
    png = run_dir / f"{r.stem}.{p.figure_format}"
    result = ("pass" if r.passed else "**FAIL**") + (" (timing: present only)" if r.timing
                                                     else "")
    md.append(f"| {r.stem} | {result} | {dev} | {tol} | {claim_cell(r, '<br>')} | "
              f"![{r.stem}]({rel(png)}) |")
md += ["", "## Problems", ""]
problems = [f"- {r.stem}: {msg}" for r in results for msg in r.problems]
md += problems or ["None."]
notes = [f"- {r.stem}: {c.test}: {c.value}" for r in results for c in r.claims
         if c.passed is False and c.timing]
if notes:
    md += ["", "Claims about measured speed that do not hold on this run (reported only: "
           "measured times depend on the machine and its load):", "", *notes]
md += ["", "## Every compared column", "",
       "| figure | table | column | kind | max deviation | tolerance | deviation/tolerance | "
       "result |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
for r in results:
    for c in r.columns:
        md.append(f"| {r.stem} | {c.table} | {c.column} | {c.kind} | {fmt(c.deviation)} | "
                  f"{fmt(c.tolerance)} | {fmt(c.ratio)} | {'pass' if c.passed else 'FAIL'}"
                  + (f" ({c.note})" if c.note else "") + " |")

rows = []
for r in results:
    dev, tol = deviation_cell(r)
    png = run_dir / f"{r.stem}.{p.figure_format}"
    status = "pass" if r.passed else "FAIL"
    rows.append(
        f"<tr class='{status.lower()}'><td>{html.escape(r.stem)}</td><td>{status}"
        f"{' (timing)' if r.timing else ''}</td><td>{html.escape(dev)}</td>"
        f"<td>{html.escape(tol)}</td><td>{html.escape(claim_cell(r, chr(10)))}"
        f"</td><td><a href='{html.escape(rel(png))}'><img src='{html.escape(rel(png))}' "
        f"width='360'></a></td></tr>")
page = f"""<!doctype html><html><head><meta charset="utf-8"><title>radsvd reproducibility
report</title><style>body{{font-family:sans-serif;margin:1em}}td{{vertical-align:top;
padding:4px;border-bottom:1px solid #ccc;white-space:pre-line}}tr.fail td{{background:#fdd}}
</style></head><body><h1>Reproducibility report</h1><p><b>{html.escape(summary)}</b></p>
<p>Details, every compared column and the tolerances: report.md;
derivations: docs/reproducibility.md.</p><table><tr><th>figure</th><th>result</th>
<th>max deviation</th><th>tolerance</th><th>paper's claim vs this run</th><th>figure</th></tr>
{''.join(rows)}</table><h2>Problems</h2><pre>{html.escape(chr(10).join(problems) or 'None.')}
</pre></body></html>
"""

for path, text in ((out.report, "\n".join(md) + "\n"), (out.html, page)):
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)
with atomic_path(out.summary, suffix=".json") as tmp:
    Path(tmp).write_text(json.dumps({
        "passed": n_fail == 0, "summary": summary, "figures": [
            {"figure": r.stem, "passed": r.passed, "timing": r.timing, "problems": r.problems,
             "claims": [c.__dict__ for c in r.claims]} for r in results]}, indent=2))
log.info("%s", summary)
