"""Shared by Figs 5 and 6: a landscape X(γ) and its rank-H approximations, H = 1 … 8."""

import matplotlib.pyplot as plt
import numpy as np

from wf_plot import apply_style

LANDSCAPE_COLUMNS = {
    "curve": ("-", "key", "which landscape (image or pair)"),
    "H": ("1", "key", "rank H; 0 = the full landscape (all R rings)"),
    "j": ("1", "key", "angle index, γ_j = 360 j / Q degrees"),
    "X_normalised": ("1", "signal", "X(γ_j) divided by the largest |X| of its curve"),
}
ARGMAX_COLUMNS = {
    "curve": ("-", "key", "which landscape (image or pair)"),
    "H": ("1", "key", "rank H"),
    "argmax_full_deg": ("deg", "angle", "γ maximising the full landscape"),
    "argmax_H_deg": ("deg", "angle", "γ maximising the rank-H landscape"),
    "true_deg": ("deg", "exact", "the in-plane angle from the poses (STAR file)"),
    "grid_step_deg": ("deg", "exact", "spacing of the γ grid, 360/Q"),
}


def landscape_rows(curve, gamma, full, approx, ranks, true_angle):
    """The plotted numbers of one row of panels: the normalised curves (H = 0: full) and the
    argmax of each, as figure-data rows (wf_figdata)."""
    deg = np.degrees(gamma)
    curves, argmax = [], []
    for H, x in [(0, full)] + list(zip(ranks, approx)):
        x = np.asarray(x, dtype=np.float64)
        scale = np.max(np.abs(x)) or 1.0
        curves += [dict(curve=curve, H=int(H), j=j, X_normalised=float(v / scale))
                   for j, v in enumerate(x)]
        if H:
            argmax.append(dict(curve=curve, H=int(H),
                               argmax_full_deg=float(deg[np.argmax(full)]),
                               argmax_H_deg=float(deg[np.argmax(x)]),
                               true_deg=float(np.degrees(true_angle) % 360),
                               grid_step_deg=360.0 / len(gamma)))
    return curves, argmax


def plot_landscapes(axes, gamma, full, approx, ranks, true_angle=None, title=None):
    """One panel per rank: the full landscape (black) and X^H (red), both normalised by the
    maximum of |X| so that the shapes compare; the argmax of each marked."""
    deg = np.degrees(gamma)
    scale = np.max(np.abs(full))
    for ax, H, xh in zip(axes, ranks, approx):
        ax.plot(deg, full / scale, color="k", lw=1.0, label="full (H = R)")
        sh = np.max(np.abs(xh)) or 1.0
        ax.plot(deg, xh / sh, color="#d62728", lw=1.2, label=f"H = {H}")
        ax.axvline(deg[np.argmax(full)], color="k", lw=0.6, ls=":")
        ax.axvline(deg[np.argmax(xh)], color="#d62728", lw=0.6, ls="--")
        if true_angle is not None and np.isfinite(true_angle):
            ax.axvline(np.degrees(true_angle) % 360, color="#00a5c8", lw=0.8, ls="-", alpha=0.6)
        ax.set_xlim(0, 360)
        ax.set_xticks([0, 180, 360])
        ax.set_xticks([90, 270], minor=True)
        ax.set_title(f"H = {H}", fontsize=8, pad=2)
        ax.set_yticks([])
    return axes


def figure_grid(style_cfg, n_rows, n_cols=8):
    style = apply_style(style_cfg)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(style["width"] * 1.25 * min(n_cols, 8) / 8 + 0.6, 1.5 * n_rows + 0.6),
                             sharex=True, squeeze=False)
    return fig, axes
