"""The reproducibility check: a run's figure data against the committed reference, under
tolerances derived from what each quantity is, and the paper's stated results against the
run.  Used by check_figures.py (the `check_figures` rule) and by the tests; how to read its
report and how every tolerance was derived: docs/reproducibility.md.

Comparison, per figure: every table of the figure (<stem>.csv, <stem>.<table>.csv, written by
wf_figdata) must be present in the run and in the reference with the same columns and kinds;
rows are matched on the key columns (none missing, none extra); then every column is
compared by its kind with the tolerance of TOLERANCES.  A figure passes when every table does;
its deviation is the column with the largest deviation/tolerance ratio.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wf_figdata import read_figure_data

# Unit roundoffs: float64 (the transforms, kernels, full landscapes, metrics) and float32
# (the particle stacks as stored, the compressed landscapes' products).
EPS64 = 2.0 ** -53
EPS32 = 2.0 ** -24

# Worst-case reduction lengths (docs/reproducibility.md): n·u bounds the rounding error of a
# sum of n products (Higham, gamma_n); doubled, since the run and the reference may each be
# off by it.
N_FLOAT64_SUM = 500_000     # longest float64 sum into a kernel entry: targets × angles ≤ 5e5
N_FLOAT32_SUM = 800         # longest float32 contraction of a compressed landscape value

TOLERANCES = {
    # spectra: |Δ(λ_h/λ_1)| ≤ rel·λ_h/λ_1 + floor (eigenvalues of a Hermitian kernel are
    # perturbed by ≤ ‖δC‖ ≤ γ_n ε64 λ_1, both runs)
    "spectrum": {"rel": 2 * N_FLOAT64_SUM * EPS64, "floor": 2 * N_FLOAT64_SUM * EPS64},
    # relative Frobenius errors, in units of ‖X‖: the float32 products perturb X^H by
    # ≤ γ_n ε32 ‖X^H‖ ≤ γ_n ε32 (1 + e) ‖X‖ in each run
    "frobenius": {"rel": 2 * N_FLOAT32_SUM * EPS32, "floor": 2 * N_FLOAT32_SUM * EPS32},
    # correlations: a relative perturbation η of X^H moves the correlation by ≤ η
    "correlation": {"abs": 2 * N_FLOAT32_SUM * EPS32},
    # backward-error fraction f: a pair whose argmax over γ flips changes f by ≤ 1/n_pairs;
    # stated share of pairs allowed to flip (near-ties within rounding)
    "fraction": {"abs": 1e-4},
    # plotted values (pixels, landscapes, rings, isosurface levels): one float32 rounding of
    # the stored particle stacks and maps, relative to the largest |value| of the panel
    "signal": {"scale": 4 * EPS32},
    # argmax angles: equal; at most this share of them one grid step off (near-ties)
    "angle": {"share": 0.01, "steps": 1},
    # order statistics of pose errors: within one step of the search grid
    "pose_error": {"steps": 1},
}


def basis_rotation(lambda_H, lambda_next, tol=TOLERANCES):
    """Per row: the bound sin θ ≤ min(1, ‖δC‖/(gap − ‖δC‖)) on how far rounding rotates the
    kept rank-H eigenspace of a basis's kernel C between two runs (Davis–Kahan sin θ theorem;
    docs/reproducibility.md), from λ_H/λ_1 and λ_{H+1}/λ_1 of the reference.  ‖δC‖/λ_1 is the
    spectrum floor (both runs' kernel rounding); NaN (a basis with no kernel) gives 0."""
    dc = tol["spectrum"]["floor"]
    gap = np.asarray(lambda_H, float) - np.asarray(lambda_next, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(gap > dc, dc / (gap - dc), 1.0)
    return np.where(np.isnan(gap), 0.0, np.minimum(s, 1.0))


@dataclass
class ColumnResult:
    table: str
    column: str
    kind: str
    deviation: float            # max |run − reference| (angles: grid steps; exact: count)
    tolerance: float            # the tolerance at that row
    ratio: float                # max deviation/tolerance (inf when an exact value differs)
    passed: bool
    note: str = ""


@dataclass
class FigureResult:
    key: str
    stem: str
    timing: bool
    passed: bool = True
    problems: list = field(default_factory=list)
    columns: list = field(default_factory=list)
    claims: list = field(default_factory=list)

    def fail(self, message):
        self.passed = False
        self.problems.append(message)

    @property
    def worst(self) -> ColumnResult | None:
        compared = [c for c in self.columns if c.kind not in ("timing", "measured")]
        return max(compared, key=lambda c: (not c.passed, c.ratio), default=None)


def figure_tables(directory, stem) -> dict:
    """{table name ("" for the main table): path} of a figure's data files."""
    directory = Path(directory)
    out = {}
    for path in sorted(directory.glob(f"{stem}*.csv")):
        rest = path.name[len(stem):-len(".csv")]
        if rest == "":
            out[""] = path
        elif rest.startswith(".") and "." not in rest[1:]:
            out[rest[1:]] = path
    return out


def _finite(a):
    return np.isfinite(np.asarray(a, dtype=float))


def compare_column(kind, run, ref, scale=None, step=None, tol=TOLERANCES, rotation=None):
    """(deviation, tolerance, ratio, passed, note) of one column; ``scale`` per row for
    signal columns, ``step`` per row for angle and pose_error columns, ``rotation`` per row
    for frobenius columns of a truncated eigenbasis (:func:`basis_rotation`; None: 0)."""
    if kind in ("key", "exact"):
        if run.dtype.kind in "fc" or ref.dtype.kind in "fc":
            a, b = run.astype(float), ref.astype(float)
            same = (a == b) | (np.isnan(a) & np.isnan(b))
            dev = float(np.nanmax(np.abs(a - b))) if (~same).any() else 0.0
        else:
            same = run.astype(str) == ref.astype(str)
            dev = float((~same).sum())
        ok = bool(same.all())
        return dev, 0.0, (0.0 if ok else math.inf), ok, "" if ok else f"{(~same).sum()} differ"
    a, b = run.astype(float), ref.astype(float)
    if not (_finite(a) == _finite(b)).all():
        return math.nan, 0.0, math.inf, False, "finite in one run only"
    fin = _finite(b)
    a, b = a[fin], b[fin]
    if kind in ("angle", "pose_error"):
        step = np.asarray(step, float)[fin]
        d = np.abs(a - b)
        if kind == "angle":
            d = np.minimum(d % 360.0, 360.0 - d % 360.0)
        steps = d / step
        n_off = int((steps > 1e-9).sum())
        if kind == "angle":
            allowed = math.floor(tol["angle"]["share"] * len(steps))
            ok = bool((steps <= tol["angle"]["steps"] + 1e-9).all() and n_off <= allowed)
            note = f"{n_off} of {len(steps)} off the reference (≤ {allowed} allowed)"
            dev = float(steps.max(initial=0.0))
            return dev, float(tol["angle"]["steps"]), (dev if ok else math.inf), ok, note
        dev = float(steps.max(initial=0.0))
        lim = float(tol["pose_error"]["steps"])
        return dev, lim, dev / lim, bool(dev <= lim + 1e-9), "in grid steps"
    d = np.abs(a - b)
    note = ""
    if kind == "spectrum":
        t = tol["spectrum"]["rel"] * np.abs(b) + tol["spectrum"]["floor"] * np.asarray(
            scale, float)[fin]
    elif kind == "frobenius":
        t = tol["frobenius"]["rel"] * np.abs(b) + tol["frobenius"]["floor"]
        if rotation is not None:
            # X^H moves by ≤ 2 sin θ ‖X‖ when its kept subspace rotates by θ
            rot = np.asarray(rotation, float)[fin]
            t = t + 2.0 * rot
            n_undetermined = int((rot >= 1.0).sum())
            if n_undetermined:
                note = (f"{n_undetermined} row(s) truncated inside a rounding-level eigengap: "
                        "Frobenius error undetermined there")
    elif kind == "correlation":
        t = np.full_like(b, tol["correlation"]["abs"])
    elif kind == "fraction":
        t = np.full_like(b, tol["fraction"]["abs"])
    elif kind == "signal":
        t = tol["signal"]["scale"] * np.asarray(scale, float)[fin]
    else:
        raise ValueError(f"unknown kind {kind!r}")
    if len(d) == 0:
        return 0.0, 0.0, 0.0, True, ""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(t > 0, d / t, np.where(d > 0, math.inf, 0.0))
    i = int(np.argmax(ratio))
    return float(d[i]), float(t[i]), float(ratio[i]), bool(ratio[i] <= 1.0), note


def _scales(df, meta, column):
    """Per row: the largest |value| of ``column`` within the row's scale_by group."""
    vals = df[column].astype(float).abs()
    if meta.get("scale_by"):
        return vals.groupby(df[meta["scale_by"]]).transform("max").to_numpy()
    return np.full(len(df), float(vals.max()) if len(vals) else 0.0)


def _steps(df, unit, kind):
    if kind == "angle":
        return df["grid_step_deg"].to_numpy(float)
    if unit == "deg":
        return df["grid_spacing_deg"].to_numpy(float)
    return df["shift_step_px"].to_numpy(float)


def compare_table(result: FigureResult, name, run_path, ref_path, tol=TOLERANCES):
    label = name or "main"
    run, run_meta = read_figure_data(run_path)
    if ref_path is None:
        _timing_only(result, label, run, run_meta)
        return
    ref, ref_meta = read_figure_data(ref_path)
    if run_meta["columns"] != ref_meta["columns"]:
        result.fail(f"{label}: columns or kinds differ from the reference "
                    f"({list(run_meta['columns'])} vs {list(ref_meta['columns'])})")
        return
    keys = [c for c, spec in run_meta["columns"].items() if spec[1] == "key"]
    for df, what in ((run, "run"), (ref, "reference")):
        if keys and df.duplicated(keys).any():
            result.fail(f"{label}: duplicate key rows in the {what}")
            return
    if keys:
        merged = run.merge(ref, on=keys, how="outer", suffixes=("", "__ref"), indicator=True)
        extra = merged[merged["_merge"] == "left_only"]
        missing = merged[merged["_merge"] == "right_only"]
        if len(extra) or len(missing):
            result.fail(f"{label}: rows differ from the reference: {len(missing)} missing, "
                        f"{len(extra)} extra (first: "
                        f"{(missing if len(missing) else extra)[keys].iloc[0].to_dict()})")
            return
        run_al = merged[[c for c in run.columns]]
        ref_al = merged[keys + [f"{c}__ref" for c in run.columns if c not in keys]]
        ref_al.columns = [c.removesuffix("__ref") for c in ref_al.columns]
        ref_al = ref_al[list(run.columns)]
    else:
        if len(run) != len(ref):
            result.fail(f"{label}: {len(run)} rows, the reference has {len(ref)}")
            return
        run_al, ref_al = run, ref
    rotation = None
    if {"lambda_H", "lambda_next"} <= set(run_meta["columns"]):
        rotation = basis_rotation(ref_al["lambda_H"].to_numpy(float),
                                  ref_al["lambda_next"].to_numpy(float), tol)
    for column, (unit, kind, _) in run_meta["columns"].items():
        if kind in ("key", "measured"):
            continue
        if kind == "timing":
            ok = bool((_finite(run_al[column]) & (run_al[column].astype(float) > 0)).all())
            result.columns.append(ColumnResult(label, column, kind, math.nan, math.nan, 0.0, ok,
                                               "present" if ok else "missing or ≤ 0"))
            if not ok:
                result.fail(f"{label}.{column}: a time is missing, not finite or ≤ 0")
            continue
        scale = _scales(ref_al, ref_meta, column) if kind in ("signal", "spectrum") else None
        step = _steps(ref_al, unit, kind) if kind in ("angle", "pose_error") else None
        dev, t, ratio, ok, note = compare_column(
            kind, run_al[column].to_numpy(), ref_al[column].to_numpy(), scale, step, tol,
            rotation if kind == "frobenius" else None)
        result.columns.append(ColumnResult(label, column, kind, dev, t, ratio, ok, note))
        if not ok:
            result.fail(f"{label}.{column} ({kind}): deviation {dev:.3g} > tolerance {t:.3g}"
                        + (f"; {note}" if note else ""))


def _timing_only(result, label, run, meta):
    """No reference: timings present; every other value finite where it is a number."""
    for column, (_, kind, _) in meta["columns"].items():
        if kind == "timing":
            ok = bool((_finite(run[column]) & (run[column].astype(float) > 0)).all())
            result.columns.append(ColumnResult(label, column, kind, math.nan, math.nan, 0.0, ok,
                                               "present" if ok else "missing or ≤ 0"))
            if not ok:
                result.fail(f"{label}.{column}: a time is missing, not finite or ≤ 0")


def check_figure(key, stem, timing, run_dir, ref_dir, tol=TOLERANCES) -> FigureResult:
    """Compare the data of one figure in ``run_dir`` with ``ref_dir`` (None: no reference;
    then only the presence of the data and of its times is checked)."""
    result = FigureResult(key, stem, timing)
    run_tables = figure_tables(run_dir, stem)
    if "" not in run_tables:
        result.fail(f"no figure data {stem}.csv in {run_dir}")
        return result
    ref_tables = figure_tables(ref_dir, stem) if ref_dir else {}
    if ref_dir and not ref_tables:
        result.fail(f"no reference data {stem}.csv in {ref_dir}")
        return result
    if ref_dir and set(run_tables) != set(ref_tables):
        result.fail(f"tables {sorted(run_tables)} differ from the reference's "
                    f"{sorted(ref_tables)}")
        return result
    for name, path in run_tables.items():
        try:
            compare_table(result, name, path, ref_tables.get(name) if ref_dir else None, tol)
        except ValueError as exc:
            result.fail(str(exc))
    return result
