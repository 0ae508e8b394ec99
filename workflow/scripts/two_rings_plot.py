"""Shared by Figs 2 and 3: two image rings, the principal combination u and its orthogonal v."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from wf_figdata import PANEL_COLUMNS, panel_rows, write_figure_data
from wf_plot import CYAN, RED, apply_style, save


def plot_two_rings(npz_path, pair: str, out_path, style_cfg, title: str):
    style = apply_style(style_cfg)
    d = np.load(npz_path)
    psi = d["psi"]
    rings = d[f"{pair}_rings"]          # (2, Q) complex rings of the signal (w_1 = w_2 = 1)
    combos = d[f"{pair}_combos"]        # (2, Q) complex: u†Â (principal), v†Â (orthogonal)
    kk = d[f"{pair}_k"]
    u, v = d[f"{pair}_u"], d[f"{pair}_v"]
    lam = d[f"{pair}_eigenvalues"]      # C(u), C(v)
    quality = d[f"{pair}_quality"]      # C of each ring alone (diagonal of C)
    fig, ax = plt.subplots(figsize=(style["width"] * 0.75, style["width"] * 0.38))
    deg = np.degrees(psi)
    ax.plot(deg, rings[0].real, "k--", lw=1.2,
            label=fr"ring $k_1 = {kk[0]:.1f}$ (C = {quality[0]:.3g})")
    ax.plot(deg, rings[1].real, "k-", lw=1.2,
            label=fr"ring $k_2 = {kk[1]:.1f}$ (C = {quality[1]:.3g})")
    ax.plot(deg, combos[0].real, color=RED, lw=1.8,
            label=fr"$u^\dagger\hat{{A}}$, u = ({u[0]:+.2f}, {u[1]:+.2f}), C = {lam[0]:.3g}")
    ax.plot(deg, combos[1].real, color=CYAN, lw=1.8,
            label=fr"$v^\dagger\hat{{A}}$, v = ({v[0]:+.2f}, {v[1]:+.2f}), C = {lam[1]:.3g}")
    ax.axhline(0, color="0.7", lw=0.6)
    ax.set_xlim(0, 360)
    ax.set_xticks(np.arange(0, 361, 60))
    ax.set_xlabel(r"$\psi$ (degrees)")
    ax.set_ylabel(r"$\Re\,\hat{A}^{\mathrm{signal}}(k,\psi)$ (unit weights)")
    ax.set_title(title)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, frameon=False)
    fig.tight_layout()
    save(fig, out_path)
    curves = []
    for name, curve in (("ring1", rings[0]), ("ring2", rings[1]), ("u_combination", combos[0]),
                        ("v_combination", combos[1])):
        curves += panel_rows(name, range(len(psi)), np.real(curve), statistic="curve")
    write_figure_data(out_path, pd.DataFrame(curves), {
        **PANEL_COLUMNS,
        "value": ("a.u.", "signal", "Re Â^signal(k, ψ_j) on ring k_1, k_2 and of the "
                                    "combinations u†Â, v†Â (unit ring weights), j = 0 … Q-1")},
        f"{title}: the rings and their principal combinations", scale_by="panel")
    ring = {"k1": ("box units", "signal", "frequency of ring 1"),
            "k2": ("box units", "signal", "frequency of ring 2"),
            "u1": ("1", "signal", "principal vector u, component 1"),
            "u2": ("1", "signal", "principal vector u, component 2"),
            "v1": ("1", "signal", "orthogonal vector v, component 1"),
            "v2": ("1", "signal", "orthogonal vector v, component 2"),
            "C_u": ("a.u.", "spectrum", "C(u), the larger eigenvalue of the 2 × 2 kernel"),
            "C_v": ("a.u.", "spectrum", "C(v), the smaller eigenvalue"),
            "C_ring1": ("a.u.", "spectrum", "C of ring 1 alone (diagonal of C)"),
            "C_ring2": ("a.u.", "spectrum", "C of ring 2 alone")}
    values = [kk[0], kk[1], u[0], u[1], v[0], v[1], lam[0], lam[1], quality[0], quality[1]]
    write_figure_data(out_path, pd.DataFrame([dict(zip(ring, map(float, values)))]), ring,
                      f"{title}: ring frequencies, principal vectors and kernel values",
                      table="vectors")
