"""The numbers a figure plots, written beside its PNG: one or more small CSV tables with a
header that names every column, its unit and its *kind* (how the reproducibility check
compares it with the reference, workflow/scripts/check_figures.py and
docs/reproducibility.md).

File layout, for a figure ``results/figures/fig08_image_alignment.png``:

    results/figures/fig08_image_alignment.csv          the main table
    results/figures/fig08_image_alignment.<name>.csv   further tables, if any

Each file starts with comment lines::

    # radsvd figure data: fig08_image_alignment — <what the figure shows>
    # column | unit | kind | description
    # H | 1 | key | rank H (principal rings kept)
    # correlation | 1 | correlation | Pearson correlation of X^H with X
    ...

then a plain CSV (pandas: ``read_figure_data``).  Kinds:

    key          identifies a row (rows of the run and of the reference are matched on
                 these); compared exactly
    exact        a parameter or count (R, Q, ideal speedup R/H, ...): compared exactly
    spectrum     eigenvalue normalised by the largest: relative tolerance above a floor
    frobenius    relative Frobenius error: relative tolerance above a floor
    correlation  a correlation: absolute tolerance
    fraction     the backward-error fraction f or another share in [0, 1]: absolute
    signal       a plotted value (pixels, landscapes, rings): absolute, relative to the
                 largest |value| of its column (within its ``scale_by`` group)
    angle        an argmax on the angular grid (degrees): equal, or one grid step off for at
                 most a stated share of the rows
    pose_error   an order statistic of pose errors (degrees or pixels): within one step of
                 the search grid
    timing       a measured time or a ratio of times: present (finite, > 0), not compared
    measured     another property of the machine or the run (peak memory, which Snakemake
                 may not sample for a short job; thread counts): neither compared nor
                 required
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from wf_common import atomic_path

KINDS = ("key", "exact", "spectrum", "frobenius", "correlation", "fraction", "signal", "angle",
         "pose_error", "timing", "measured")
HEADER = "# radsvd figure data: "


def data_path(png_path, table: str | None = None) -> Path:
    """The CSV beside a figure: ``<stem>.csv`` or ``<stem>.<table>.csv``."""
    png = Path(png_path)
    stem = png.name.rsplit(".", 1)[0]
    return png.with_name(f"{stem}.csv" if table is None else f"{stem}.{table}.csv")


def write_figure_data(png_path, df, columns: dict, what: str, table: str | None = None,
                      scale_by: str | None = None) -> Path:
    """Write ``df[list(columns)]`` beside ``png_path``.

    ``columns``: name -> (unit, kind, description); ``what``: one line on the table;
    ``scale_by``: a key column whose groups set the scale of the ``signal`` columns (e.g.
    one scale per panel).  Floats are written with 17 significant digits, so the file holds
    the float64 values exactly."""
    bad = {c: spec[1] for c, spec in columns.items() if spec[1] not in KINDS}
    if bad:
        raise ValueError(f"unknown kinds {bad}; known: {KINDS}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"figure data lacks columns {missing}")
    if scale_by is not None and columns.get(scale_by, (None, None))[1] != "key":
        raise ValueError(f"scale_by={scale_by!r} must be a key column")
    path = data_path(png_path, table)
    lines = [f"{HEADER}{path.name.removesuffix('.csv')} — {what}",
             "# column | unit | kind | description"]
    lines += [f"# {name} | {unit} | {kind} | {desc}"
              for name, (unit, kind, desc) in columns.items()]
    if scale_by:
        lines.append(f"# scale_by: {scale_by}")
    buf = io.StringIO()
    df[list(columns)].to_csv(buf, index=False, float_format="%.17g", lineterminator="\n")
    with atomic_path(path, suffix=".csv") as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n" + buf.getvalue())
    return path


def read_figure_data(path):
    """(DataFrame, meta) of a figure-data CSV; meta: {"what", "columns": {name: (unit, kind,
    description)}, "scale_by"}."""
    import pandas as pd

    path = Path(path)
    text = path.read_text()
    head = [ln for ln in text.splitlines() if ln.startswith("#")]
    if not head or not head[0].startswith(HEADER):
        raise ValueError(f"{path}: not a figure-data file (no '{HEADER.strip()}' header)")
    meta = {"what": head[0][len(HEADER):], "columns": {}, "scale_by": None}
    for line in head[2:]:
        body = line[1:].strip()
        if body.startswith("scale_by:"):
            meta["scale_by"] = body.split(":", 1)[1].strip()
            continue
        parts = [p.strip() for p in body.split("|", 3)]
        if len(parts) != 4 or parts[2] not in KINDS:
            raise ValueError(f"{path}: bad column line {line!r}")
        meta["columns"][parts[0]] = (parts[1], parts[2], parts[3])
    df = pd.read_csv(io.StringIO(text), comment="#", keep_default_na=True)
    if list(df.columns) != list(meta["columns"]):
        raise ValueError(f"{path}: columns {list(df.columns)} do not match the header "
                         f"{list(meta['columns'])}")
    return df, meta


def block_means(img, n: int = 4) -> np.ndarray:
    """The image averaged over an n × n grid of blocks (a thumbnail; rows first), the pixel
    content of an image panel at a resolution that rounding cannot move."""
    img = np.asarray(img, dtype=np.float64)
    rows = np.array_split(np.arange(img.shape[0]), n)
    cols = np.array_split(np.arange(img.shape[1]), n)
    return np.array([[img[np.ix_(r, c)].mean() for c in cols] for r in rows]).ravel()


def panel_rows(panel: str, index, values, statistic: str = "block_mean"):
    """Long-format rows (panel, statistic, index, value) for a 1-D array of plotted values."""
    return [dict(panel=panel, statistic=statistic, index=int(i), value=float(v))
            for i, v in zip(index, values)]


def image_panel_rows(panel: str, img, n_blocks: int = 4):
    """An image panel as the statistics that set its look: mean and standard deviation (the
    colour limits are mean ± 2.5 s.d.) and the n × n block means."""
    img = np.asarray(img, dtype=np.float64)
    rows = [dict(panel=panel, statistic="mean", index=0, value=float(img.mean())),
            dict(panel=panel, statistic="std", index=0, value=float(img.std()))]
    return rows + panel_rows(panel, range(n_blocks * n_blocks), block_means(img, n_blocks))


PANEL_COLUMNS = {   # the long format of image and curve panels
    "panel": ("-", "key", "which panel of the figure"),
    "statistic": ("-", "key", "mean, std, block_mean (n × n thumbnail, rows first) or a curve"),
    "index": ("1", "key", "block or sample index"),
}


ACCURACY_COLUMNS = {   # the accuracy panels of Figs 8, 11 (and 12, 14, 16)
    "H": ("1", "key", "rank H"),
    "frobenius_error": ("1", "frobenius", "‖X^H − X‖_F / ‖X‖_F over all pairs and angles"),
    "correlation": ("1", "correlation", "Pearson correlation of X^H with X over all pairs and "
                                        "angles"),
    "backward_f": ("1", "fraction", "backward-error fraction f (mean over pairs of the share "
                                    "of angles with X ≤ X at the argmax of X^H)"),
}

# The eigenvalues around the truncation of a basis built from a kernel: with them the check
# bounds how far rounding can rotate the kept rank-H subspace, and with it the Frobenius error
# (Davis–Kahan; wf_check.basis_rotation, docs/reproducibility.md)
EIGENGAP_COLUMNS = {
    "lambda_H": ("1", "spectrum", "λ_H/λ_1 of the basis's kernel (empty: no kernel)"),
    "lambda_next": ("1", "spectrum", "λ_{H+1}/λ_1 of the basis's kernel (empty: no kernel)"),
}


def volume_panel_rows(panel: str, vol, percentiles):
    """A volume drawn as isosurfaces: mean, standard deviation and the level of each drawn
    percentile (the isosurface values)."""
    vol = np.asarray(vol, dtype=np.float64)
    rows = [dict(panel=panel, statistic="mean", index=0, value=float(vol.mean())),
            dict(panel=panel, statistic="std", index=0, value=float(vol.std()))]
    return rows + [dict(panel=panel, statistic=f"level_p{float(p):g}", index=0,
                        value=float(np.percentile(vol, p))) for p in percentiles]
