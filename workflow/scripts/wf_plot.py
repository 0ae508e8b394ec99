"""Shared look of the figures: matplotlib (Agg) style, colours, colormap, atomic saving."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LinearSegmentedColormap  # noqa: E402

from wf_common import atomic_path  # noqa: E402

# Colours of the paper's metric panels: Frobenius error black, correlation red,
# backward-error fraction cyan (dark enough to print), measured speedup red, ideal cyan.
BLACK, RED, CYAN = "#000000", "#d62728", "#00a5c8"
METHOD_STYLE = {
    "radial_svd": dict(color="#d62728", marker="o", label="radial-SVD"),
    "frequency_marching": dict(color="#1f77b4", marker="s", label="frequency marching"),
    "energy_pca": dict(color="#2ca02c", marker="^", label="energy PCA"),
    "radial_degree_svd": dict(color="#d62728", marker="o", label="radial- and degree-SVD"),
}

# Relative errors below this are rounding (float64 sums): drawn at this level
ROUNDING_FLOOR = 1e-12

# The paper's image colormap: magenta (−2.5 σ) through black (mean) to cyan (+2.5 σ).
MAGENTA_BLACK_CYAN = LinearSegmentedColormap.from_list(
    "magenta_black_cyan", [(1.0, 0.0, 1.0), (0.0, 0.0, 0.0), (0.0, 1.0, 1.0)])


def apply_style(style: dict | None = None) -> dict:
    style = dict(style or {})
    plt.rcParams.update({
        "figure.dpi": 100,
        "savefig.dpi": int(style.get("dpi", 150)),
        "font.size": 9,
        "axes.titlesize": 9,
        "axes.labelsize": 9,
        "legend.fontsize": 8,
        "xtick.labelsize": 8,
        "ytick.labelsize": 8,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": False,
        "lines.linewidth": 1.4,
        "lines.markersize": 4,
    })
    style.setdefault("width", 7.0)
    return style


def centred_limits(a, n_std: float = 2.5):
    """Colour limits centred on the mean, ±n_std standard deviations (the paper's choice)."""
    a = np.asarray(a, dtype=float)
    m, s = float(a.mean()), float(a.std())
    s = s if s > 0 else 1.0
    return m - n_std * s, m + n_std * s


def show_image(ax, img, title=None):
    lo, hi = centred_limits(img)
    ax.imshow(img, cmap=MAGENTA_BLACK_CYAN, vmin=lo, vmax=hi, origin="lower",
              interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)


def show_polar(ax, values, k, psi, title=None):
    """Real part of Fourier samples on the polar grid (R × Q), drawn as a disc."""
    values = np.real(np.asarray(values))
    lo, hi = centred_limits(values)
    # cell edges in k and ψ
    k = np.asarray(k, float)
    k_edges = np.concatenate([[0.0], 0.5 * (k[1:] + k[:-1]), [k[-1] + 0.5 * (k[-1] - k[-2])]])
    dpsi = 2 * np.pi / len(psi)
    psi_edges = np.concatenate([psi - 0.5 * dpsi, [psi[-1] + 0.5 * dpsi]])
    P, Kk = np.meshgrid(psi_edges, k_edges)
    ax.pcolormesh(Kk * np.cos(P), Kk * np.sin(P), values, cmap=MAGENTA_BLACK_CYAN,
                  vmin=lo, vmax=hi, shading="flat", rasterized=True)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ("left", "bottom"):
        ax.spines[side].set_visible(False)
    if title:
        ax.set_title(title)


def save(fig, path) -> None:
    fmt = str(path).rsplit(".", 1)[-1]
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, bbox_inches="tight")
    plt.close(fig)


def accuracy_panels(axes, df, x="H", style_kw=None):
    """The accuracy panels of Figs 8 and 11 from a tidy table restricted to one
    dataset+method: relative Frobenius error (log scale, rounding-level values at
    ROUNDING_FLOOR); correlation (red) and backward-error fraction f (cyan).  No timings."""
    df = df.sort_values(x)
    kw = dict(style_kw or {})
    ax0, ax1 = axes
    # errors at rounding level (H = R) drawn at ROUNDING_FLOOR: their last bits vary between
    # runs, and the reference figures must not
    ax0.semilogy(df[x], np.maximum(df["frobenius_error"], ROUNDING_FLOOR), color=BLACK,
                 marker="o", **kw)
    ax0.axhline(ROUNDING_FLOOR, color="0.6", lw=0.8, ls=":")
    ax0.text(0.02, ROUNDING_FLOOR * 3, "rounding", color="0.4", fontsize=7,
             transform=ax0.get_yaxis_transform())
    ax0.set_ylim(bottom=ROUNDING_FLOOR / 3)
    ax0.set_xlabel("rank H")
    ax0.set_ylabel(r"relative error $\|X^H - X\|_F / \|X\|_F$")
    ax0.set_title("Frobenius error")
    ax1.plot(df[x], df["correlation"], color=RED, marker="o", label="correlation", **kw)
    ax1.plot(df[x], df["backward_f"], color=CYAN, marker="s", label="backward-error fraction f",
             **kw)
    ax1.set_xlabel("rank H")
    ax1.set_ylabel("correlation, f")
    ax1.set_ylim(min(0.0, float(np.nanmin(df[["correlation", "backward_f"]].values))) - 0.02,
                 1.02)
    ax1.legend(loc="lower right", frameon=False)
    ax1.set_title("alignment accuracy")
    _integer_H_axes(axes, df[x])


def speedup_panel(ax, df, x="H", ideal_label="ideal (operation count)", style_kw=None):
    """The timing panel of Figs 8 and 11: measured total-time speedup over the full
    calculation (red) and the operation-count ideal (cyan), over H."""
    df = df.sort_values(x)
    kw = dict(style_kw or {})
    ax.plot(df[x], df["ideal_speedup"], color=CYAN, marker="s", label=ideal_label, **kw)
    ax.plot(df[x], df["speedup"], color=RED, marker="o", label="measured (total time)", **kw)
    ax.axhline(1.0, color="0.6", lw=0.8, ls=":")
    ax.set_yscale("log")
    ax.set_xlabel("rank H")
    ax.set_ylabel("speedup over full calculation")
    ax.legend(loc="upper right", frameon=False)
    ax.set_title("speedup")
    _integer_H_axes([ax], df[x])


def _integer_H_axes(axes, H):
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.set_xlim(0, float(H.max()) + 1)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
