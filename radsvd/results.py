"""Result files of the commands (``.npz``): what kind, a summary, and the truth to compare with.

Kinds, told apart by their arrays: ``poses`` (``align-particles``: rot, tilt, psi,
ctf_group, …), ``images`` (``align-images``: best_target, angle, score), ``volumes``
(``align-volumes``: score and matrix per volume).  Files are read with ``allow_pickle=False``
(result files are data, never code).  ``info_*`` scalars are the command's settings.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from radsvd._validate import InputError


@dataclass
class Result:
    path: Path
    kind: str
    arrays: dict
    info: dict = field(default_factory=dict)


def is_result_file(path) -> bool:
    """An ``.npz`` name, or the zip signature numpy's ``savez`` writes."""
    path = Path(path)
    if path.name.lower().endswith(".npz"):
        return True
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


def load_result(path) -> Result:
    """Read a result file of ``align-particles``, ``align-images`` or ``align-volumes``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(f"{path}: not a readable .npz result file ({exc})") from None
    info = {k[5:]: (v.item() if v.ndim == 0 else v) for k, v in data.items()
            if k.startswith("info_")}
    arrays = {k: v for k, v in data.items() if not k.startswith("info_")}
    if {"rot", "tilt", "psi", "score"} <= set(arrays):
        kind = "poses"
    elif {"best_target", "angle", "score"} <= set(arrays):
        kind = "images"
    elif {"matrix", "score"} <= set(arrays):
        kind = "volumes"
    else:
        raise InputError(f"{path}: not a radsvd result (arrays: {', '.join(sorted(arrays))}); "
                         "expected the .npz of align-particles, align-images or align-volumes")
    return Result(path, kind, arrays, info)


def _stats(x) -> dict:
    x = np.asarray(x, np.float64)
    if x.size == 0:
        return {}
    return {"min": float(x.min()), "median": float(np.median(x)), "max": float(x.max())}


def true_poses(res: Result):
    """The STAR table of the particles a poses result came from, if it holds poses (simulated
    data carry their true poses and origins), else None.  The STAR path is the one given to
    align-particles, tried as given and relative to the result's folder."""
    star = res.info.get("particles")
    if res.kind != "poses" or not star:
        return None
    from radsvd.data import read_star

    for candidate in (Path(star), res.path.parent / Path(star).name):
        if candidate.is_file():
            try:
                table = read_star(candidate, require_ctf=False)
            except InputError:
                return None
            n = len(res.arrays["rot"])
            if len(table) < n or not {"rot", "tilt", "psi"} <= set(table.columns):
                return None
            table = table.iloc[:n]
            if table[["rot", "tilt", "psi"]].isna().any().any():
                return None
            return table
    return None


def pose_errors(res: Result, table) -> dict:
    """Angular errors (degrees) and origin errors (Å) of found against true poses."""
    from radsvd.data.poses import angular_errors

    a = res.arrays
    out = {"angle_deg": angular_errors(a["rot"], a["tilt"], a["psi"], table["rot"].to_numpy(),
                                       table["tilt"].to_numpy(), table["psi"].to_numpy())}
    if {"shift_x", "shift_y"} <= set(table.columns) and "origin_x_A" in a:
        out["origin_A"] = np.hypot(a["origin_x_A"] - table["shift_x"].to_numpy(),
                                   a["origin_y_A"] - table["shift_y"].to_numpy())
    return out


def summarize(path) -> dict:
    """The summary ``radsvd info`` prints for a result file."""
    res = load_result(path)
    a, info = res.arrays, res.info
    out = {"file": str(res.path), "type": f"result ({res.kind})"}
    keep = ("K", "R", "L", "rank", "H_C", "H_D", "method", "precision", "box", "pixel_size",
            "voxel_size", "max_shift_px", "n_templates", "n_ctf_groups", "refine", "refined",
            "normalized_targets", "particles", "map", "images", "targets", "target")
    out.update({k: info[k] for k in keep if k in info and not isinstance(info[k], np.ndarray)})
    out["score"] = _stats(a["score"])
    if res.kind == "poses":
        out["particles_aligned"] = int(len(a["rot"]))
        out["ctf_groups_used"] = int(len(np.unique(a["ctf_group"]))) if "ctf_group" in a else 1
        if "origin_x_A" in a:
            out["origin_A"] = _stats(np.hypot(a["origin_x_A"], a["origin_y_A"]))
        table = true_poses(res)
        if table is not None:
            err = pose_errors(res, table)
            out["true_poses_in_star"] = True
            out["angular_error_deg"] = _stats(err["angle_deg"])
            out["within_5_deg"] = float(np.mean(err["angle_deg"] <= 5.0))
            if "origin_A" in err:
                out["origin_error_A"] = _stats(err["origin_A"])
    elif res.kind == "images":
        out["images_aligned"] = int(len(a["best_target"]))
        out["distinct_best_targets"] = int(len(np.unique(a["best_target"])))
        if "shift" in a:
            out["shift_px"] = _stats(np.hypot(a["shift"][:, 0], a["shift"][:, 1]))
    else:
        names = info.get("volumes")
        names = [str(n) for n in np.atleast_1d(names)] if names is not None else \
            [f"volume {i}" for i in range(len(a["score"]))]
        out["volumes"] = {n: {"score": float(s), "matrix": np.round(m, 6).tolist()}
                          for n, s, m in zip(names, a["score"], a["matrix"])}
        out["landscape_stored"] = any(k.startswith("landscape") for k in a)
    return out
