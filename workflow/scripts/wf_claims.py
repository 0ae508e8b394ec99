"""The paper's stated results, checked on a run's figure data (Rangan 2022, the text next to
each figure).  Each claim quotes the paper, states the test its words are translated into
(thresholds fixed from the words, docs/reproducibility.md), and reports this run's value.

A claim whose data the configuration does not produce (an H not in the sweep, no survey
datasets) is reported as "not applicable", not as passed.  Claims about measured times
(``timing=True``) are reported like the others but do not fail the check: like the timing
figures, they depend on the machine and its load, not on reproducing the computation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wf_check import figure_tables
from wf_figdata import read_figure_data

# The words of the paper, as numbers (fixed before looking at any run)
CONSIDERABLY = 1e-2     # "decayed considerably": two orders of magnitude below λ_1
QUITE_ACCURATE = 0.1    # "quite accurate": relative Frobenius error below 10 %
MACHINE_PRECISION = 1e-5  # "up to machine precision" on the float32 compressed path
ENORMOUS = 0.5          # "enormous" Frobenius error: at least half of ‖X‖
HIGH = 0.9              # "quite high" correlation, "high" f
USUALLY = 0.5           # "usually": more than half of the cases
RANK_H6 = 6             # "H ∼ 6"


@dataclass
class Claim:
    key: str            # figure key
    paper: str          # the paper's words
    test: str           # what is tested
    value: str          # this run
    passed: bool | None  # None: not applicable to this configuration
    timing: bool = False  # a claim about measured times: reported, never fails the check


def _table(run_dir, stem, name=""):
    tables = figure_tables(run_dir, stem)
    return read_figure_data(tables[name])[0] if name in tables else None


def _at(df, H, column):
    row = df[df.H == H]
    return float(row[column].iloc[0]) if len(row) else None


def claims_fig04(run_dir, stem):
    df = _table(run_dir, stem)
    lam = df.sort_values("h").averaged.to_numpy()
    if len(lam) < 7:
        return [Claim("fig04", "", "", "R < 7", None)]
    return [Claim("fig04", "the spectrum of C has decayed considerably by H = 6 - 7 (Fig 4)",
                  f"λ_7/λ_1 < {CONSIDERABLY:g} (kernel averaged over targets and CTF groups)",
                  f"λ_7/λ_1 = {lam[6]:.3g}", bool(lam[6] < CONSIDERABLY))]


def claims_fig05(run_dir, stem):
    df = _table(run_dir, stem, "argmax")
    low = df[df.H >= 2]
    steps = np.abs(low.argmax_H_deg - low.argmax_full_deg) % 360
    steps = np.minimum(steps, 360 - steps) / low.grid_step_deg
    share = float(np.mean(steps <= 1 + 1e-9))
    return [Claim("fig05", "even when H is low and X(γ) is inaccurate, the optimal "
                  "alignment-angle is usually still accurate (Fig 5)",
                  f"share of (image, H ≥ 2) whose rank-H argmax is within one grid step of "
                  f"the full argmax > {USUALLY:g}",
                  f"{share:.2f} of {len(low)}", bool(share > USUALLY))]


def claims_fig08(run_dir, stem):
    df = _table(run_dir, stem).sort_values("H")
    R = int(df.R.iloc[0])
    out = []
    c6 = _at(df, RANK_H6, "correlation")
    out.append(Claim("fig08", "the correlation reaches over 95% for values of H ∼ 6 (§3.5)",
                     "correlation at H = 6 > 0.95",
                     "H = 6 not in the sweep" if c6 is None else f"{c6:.4f}",
                     None if c6 is None else bool(c6 > 0.95)))
    big = df[(df.H > 16) & (df.H < R)]
    worst = float(big.frobenius_error.max()) if len(big) else None
    out.append(Claim("fig08", "once H is greater than 16 or so the approximation is quite "
                     "accurate (§3.5)",
                     f"relative Frobenius error < {QUITE_ACCURATE:g} for every 16 < H < R",
                     "no such H" if worst is None else f"largest {worst:.3g}",
                     None if worst is None else bool(worst < QUITE_ACCURATE)))
    full = _at(df, R, "frobenius_error")
    out.append(Claim("fig08", "when H = R, we recover the full calculation up to machine "
                     "precision (§3.5)",
                     f"relative Frobenius error at H = R < {MACHINE_PRECISION:g} (float32 "
                     "products)", "H = R missing" if full is None else f"{full:.2g}",
                     None if full is None else bool(full < MACHINE_PRECISION)))
    err = dict(zip(df.H.astype(int), df.frobenius_error))
    pairs = [(h, 2 * h) for h in err if 2 * h in err and 2 * h < R]
    worse = [(h, h2) for h, h2 in pairs if err[h2] >= err[h]]
    out.append(Claim("fig08", "the error falls as H grows (Fig 8, left)",
                     "Frobenius error at 2H below that at H, for every H in the sweep with "
                     "2H < R", f"{len(worse)} of {len(pairs)} doublings not below"
                     + (f" (first: H = {worse[0][0]} → {worse[0][1]})" if worse else ""),
                     (not worse) if pairs else None))
    return out


def _below_ideal(key, df, ideal_name, where):
    below = df[df.ideal_speedup > 1]
    over = below[below.speedup >= below.ideal_speedup]
    return Claim(key, f"the actual speedup ... is less dramatic than the ideal {ideal_name} "
                 f"({where})",
                 f"measured speedup < {ideal_name} wherever {ideal_name} > 1",
                 f"{len(over)} of {len(below)} above the ideal", len(over) == 0, timing=True)


def claims_fig08_speedup(run_dir, stem):
    df = _table(run_dir, stem).sort_values("H")
    first, last = df.iloc[0], df.iloc[-1]
    return [_below_ideal("fig08_speedup", df, "R/H", "§3.5, Fig 8 right"),
            Claim("fig08_speedup", "a speedup that falls as H grows towards R (Fig 8, right)",
                  "measured speedup at the smallest H > 1 and > at H = R",
                  f"{first.speedup:.2f}× at H = {int(first.H)}, {last.speedup:.2f}× at "
                  f"H = {int(last.H)}",
                  bool(first.speedup > 1 and first.speedup > last.speedup), timing=True)]


def claims_fig11_speedup(run_dir, stem):
    df = _table(run_dir, stem).sort_values("H")
    return [_below_ideal("fig11_speedup", df, "K/H", "§4.10, Fig 11 right")]


def claims_fig11(run_dir, stem):
    df = _table(run_dir, stem).sort_values("H")
    lower = df[(df.H_C < df.R) | (df.H_D < df.L + 1)]
    c6, f6 = _at(df, RANK_H6, "correlation"), _at(df, RANK_H6, "backward_f")
    return [Claim("fig11", "the frobenius-norm error associated with our approximation is "
                  "enormous (§4.10)",
                  f"relative Frobenius error ≥ {ENORMOUS:g} at every truncated H",
                  f"smallest {lower.frobenius_error.min():.3g}",
                  bool((lower.frobenius_error >= ENORMOUS).all())),
            Claim("fig11", "the correlation is still quite high, and f is high (§4.10)",
                  f"correlation and f at H = 6 > {HIGH:g}",
                  "H = 6 not in the sweep" if c6 is None else
                  f"correlation {c6:.3f}, f {f6:.3f}",
                  None if c6 is None else bool(c6 > HIGH and f6 > HIGH))]


def claims_fig12(run_dir, stem):
    df = _table(run_dir, stem)
    at6 = df[(df.H == RANK_H6) & (df.alignment == "image")]
    if at6.empty:
        return [Claim("fig12", "", "", "H = 6 not in the sweep", None)]
    low = at6.correlation.min()
    worst = at6.dataset.iloc[int(np.argmin(at6.correlation.to_numpy()))]
    return [Claim("fig12", "the same story holds for every other cryo-em data-set we have "
                  "tried (§4.10, Fig 12)",
                  "image alignment: correlation at H = 6 > 0.95 on every further dataset "
                  "(the Fig 8 claim)", f"lowest {low:.4f} ({worst})", bool(low > 0.95))]


CLAIMS = {"fig04": claims_fig04, "fig05": claims_fig05, "fig08": claims_fig08,
          "fig08_speedup": claims_fig08_speedup, "fig11": claims_fig11,
          "fig11_speedup": claims_fig11_speedup, "fig12": claims_fig12}


def paper_claims(key, run_dir, stem) -> list[Claim]:
    """The claims of one figure, evaluated on the run's data ([] when the paper states none
    for it)."""
    fn = CLAIMS.get(key)
    return fn(run_dir, stem) if fn else []
