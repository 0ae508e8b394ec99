"""Summaries of data files (``radsvd info``): MRC maps and stacks, STAR particle files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from radsvd._validate import InputError


def _kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".star"):
        return "star"
    if name.endswith((".mrc", ".mrcs", ".map", ".mrc.gz", ".mrcs.gz", ".map.gz", ".st")):
        return "mrc"
    with open(path, "rb") as f:
        head = f.read(1024)
    if len(head) == 1024 and head[208:212] == b"MAP ":
        return "mrc"
    if b"data_" in head:
        return "star"
    raise InputError(f"{path}: neither an MRC file nor a STAR file")


def describe(path) -> dict:
    """A dict summary of an MRC map/stack (shape, voxel size, value range) or a STAR file
    (style, particle count, stacks, box if resolvable, pixel size and CTF ranges)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if _kind(path) == "mrc":
        from radsvd.data.io import mrc_info, read_stack

        info = mrc_info(path)
        out = {"file": str(path), "type": "stack" if info.is_stack else "map",
               "shape": list(info.shape), "mode": info.mode, "voxel_size": info.voxel_size,
               "compressed": info.compressed, "extended_header_bytes": info.extended_header_bytes}
        if info.is_stack:
            out["images"] = info.shape[0]
            out["box"] = info.shape[1]
        else:
            out["box"] = info.shape[0]
        if info.is_stack:  # statistics over at most the first 256 images (stacks can be huge)
            k = min(info.shape[0], 256)
            data = read_stack(path, np.arange(k), dtype=np.float64)
            out["stats_over_images"] = k
        else:
            from radsvd.data.io import read_mrc

            data, _ = read_mrc(path)
        out["min"], out["max"] = float(data.min()), float(data.max())
        out["mean"], out["std"] = float(data.mean()), float(data.std())
        return out
    from radsvd.data.io import read_star

    t = read_star(path, require_ctf=False)
    out = {"file": str(path), "type": "star", "relion_style": t.attrs.get("style"),
           "particles": int(len(t))}
    if "image_path" in t.columns:
        stacks = list(dict.fromkeys(t["image_path"]))
        out["stacks"] = len(stacks)
        first = path.parent / stacks[0]
        if first.exists():
            from radsvd.data.io import mrc_info

            out["box"] = mrc_info(first).shape[-1]
    if "micrograph" in t.columns:
        out["micrographs"] = int(t["micrograph"].nunique())
    if "optics_group" in t.columns:
        out["optics_groups"] = int(t["optics_group"].nunique())
    for col in ("pixel_size", "defocus_u", "defocus_v", "defocus_angle", "voltage", "cs",
                "amplitude_contrast", "phase_shift"):
        if col in t.columns and t[col].notna().any():
            lo, hi = float(t[col].min()), float(t[col].max())
            out[col] = lo if lo == hi else [lo, hi]
    out["has_poses"] = bool({"rot", "tilt", "psi"} <= set(t.columns) and t["rot"].notna().all())
    out["has_ctf"] = bool({"defocus_u", "defocus_v", "voltage"} <= set(t.columns))
    return out
