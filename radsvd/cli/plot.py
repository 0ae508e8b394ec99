"""``radsvd plot``: a PNG of what a user looks at first in a result file."""

from __future__ import annotations

import sys

DESCRIPTION = """\
One PNG per result file (radsvd.results tells the kinds apart):
  align-particles (.npz beside the STAR): score histograms per CTF group; angular coverage
    (viewing directions rot, tilt on the sphere, Mollweide); the origins found (Å); and,
    when the particle STAR holds poses (simulated data carry the true ones), the angular
    error and origin error against them;
  align-images: the best-score histogram, how often each target is best, the shifts found;
  align-volumes: the stored landscape slice at the optimum if the file holds one, else the
    score of each volume."""


def register(sub) -> None:
    import argparse

    p = sub.add_parser("plot", help="PNG of a result file: score histograms, angular "
                       "coverage, shifts, found against true poses",
                       description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("result", metavar="RESULT.npz",
                   help="the .npz of align-particles, align-images or align-volumes")
    p.add_argument("--out", default=None, metavar="PLOT.png",
                   help="output PNG (default: RESULT with .png in place of .npz)")
    p.set_defaults(func=_plot)


def _plot(args) -> int:
    from pathlib import Path

    from radsvd._files import check_output_file
    from radsvd._validate import InputError
    from radsvd.results import load_result

    res = load_result(args.result)
    out = Path(args.out) if args.out else Path(args.result).with_suffix(".png")
    if out.suffix.lower() != ".png":
        raise InputError(f"--out must end in .png, got {out}")
    check_output_file(out, "--out")
    try:
        import matplotlib
    except ImportError:
        raise InputError("radsvd plot needs matplotlib: pip install 'radsvd[plot]'") from None
    matplotlib.use("Agg")
    fig, notes = plot_result(res)
    from radsvd._files import atomic_path

    with atomic_path(out, ".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"{res.kind} result {args.result} -> {out}", file=sys.stderr)
    return 0


def plot_result(res):
    """(figure, notes) for a :class:`radsvd.results.Result`."""
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 8})
    return {"poses": _poses, "images": _images, "volumes": _volumes}[res.kind](res, plt)


def _poses(res, plt):
    import numpy as np

    from radsvd.results import pose_errors, true_poses

    a, notes = res.arrays, []
    table = true_poses(res)
    fig = plt.figure(figsize=(11, 7.5))
    fig.suptitle(f"align-particles: {res.path.name} ({len(a['rot'])} particles)")
    ax = fig.add_subplot(2, 2, 1)
    groups = a.get("ctf_group", np.zeros(len(a["score"]), int))
    bins = np.histogram_bin_edges(a["score"], bins=min(60, max(10, len(a["score"]) // 10)))
    for g in np.unique(groups):
        sel = groups == g
        ax.hist(a["score"][sel], bins=bins, histtype="step",
                label=f"CTF group {g} ({sel.sum()})")
    if len(np.unique(groups)) <= 8:
        ax.legend(fontsize=6)
    ax.set(xlabel="score ⟨image, unit-norm template⟩", ylabel="particles",
           title="scores per CTF group")
    ax = fig.add_subplot(2, 2, 2, projection="mollweide")
    lon = np.deg2rad((a["rot"] + 180.0) % 360.0 - 180.0)
    lat = np.deg2rad(90.0 - a["tilt"])
    ax.scatter(lon, lat, s=3, alpha=0.5)
    ax.grid(True)
    ax.set_title("viewing directions (rot, 90° − tilt)")
    ax = fig.add_subplot(2, 2, 3)
    if "origin_x_A" in a:
        ax.scatter(a["origin_x_A"], a["origin_y_A"], s=3, alpha=0.5, label="found")
        if table is not None and {"shift_x", "shift_y"} <= set(table.columns):
            ax.scatter(table["shift_x"], table["shift_y"], s=3, alpha=0.5, label="in the STAR")
            ax.legend(fontsize=6)
        ax.set_aspect("equal", adjustable="datalim")
    ax.set(xlabel="rlnOriginXAngst (Å)", ylabel="rlnOriginYAngst (Å)", title="origins")
    ax = fig.add_subplot(2, 2, 4)
    if table is None:
        notes.append("the particle STAR holds no poses (or was not found): no found-vs-true "
                     "panel")
        ax.text(0.5, 0.5, "no true poses in the particle STAR", ha="center", va="center")
        ax.set_axis_off()
    else:
        err = pose_errors(res, table)
        e = err["angle_deg"]
        ax.hist(e, bins=np.linspace(0, 180, 61))
        ax.set(xlabel="angle between found and true pose (degrees)", ylabel="particles",
               title=f"found vs true: median {np.median(e):.3g}°, "
                     f"{100 * np.mean(e <= 5):.0f}% within 5°")
        if "origin_A" in err:
            ax.text(0.98, 0.95, f"origin error median {np.median(err['origin_A']):.3g} Å",
                    transform=ax.transAxes, ha="right", va="top")
        notes.append("simulated STARs carry the true origins: align-particles centres on them "
                     "unless --ignore-origins, which makes found origins look perfect")
    fig.tight_layout()
    return fig, notes


def _images(res, plt):
    import numpy as np

    a = res.arrays
    n_panels = 3 if "shift" in a else 2
    fig, axes = plt.subplots(1, n_panels, figsize=(4 * n_panels, 3.6))
    fig.suptitle(f"align-images: {res.path.name} ({len(a['score'])} images)")
    axes[0].hist(a["score"], bins=min(60, max(10, len(a["score"]) // 10)))
    axes[0].set(xlabel="best score", ylabel="images", title="best-score histogram")
    counts = np.bincount(a["best_target"])
    axes[1].bar(np.arange(len(counts)), counts, width=1.0)
    axes[1].set(xlabel="target index", ylabel="images", title="best target")
    if "shift" in a:
        axes[2].scatter(a["shift"][:, 0], a["shift"][:, 1], s=3, alpha=0.5)
        axes[2].set(xlabel="shift x (pixels)", ylabel="shift y (pixels)", title="shifts")
        axes[2].set_aspect("equal", adjustable="datalim")
    fig.tight_layout()
    return fig, []


def _volumes(res, plt):
    import numpy as np

    a, notes = res.arrays, []
    slices = [k for k in a if k.startswith("landscape") and a[k].ndim >= 2]
    fig, ax = plt.subplots(figsize=(5, 4))
    if slices:
        img = a[slices[0]]
        img = img.reshape((-1,) + img.shape[-2:])[0]
        im = ax.imshow(img, origin="lower", aspect="auto")
        fig.colorbar(im, ax=ax)
        ax.set_title(f"{slices[0]} (first volume)")
    else:
        notes.append("the result holds no landscape: showing the score of each volume")
        names = res.info.get("volumes")
        names = [str(n) for n in np.atleast_1d(names)] if names is not None else \
            [str(i) for i in range(len(a["score"]))]
        ax.bar(range(len(a["score"])), a["score"])
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
        ax.set(ylabel="score at the optimum", title=f"align-volumes: {res.path.name}")
    fig.tight_layout()
    return fig, notes
