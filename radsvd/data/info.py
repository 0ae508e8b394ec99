"""Summaries of data files (``radsvd info``): MRC maps and stacks, STAR particle files, and
the commands' result files (:func:`radsvd.results.summarize`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from radsvd._validate import InputError

_MRC_NAMES = (".mrc", ".mrcs", ".map", ".st", ".mrc.gz", ".mrcs.gz", ".map.gz")
STACK_STAT_IMAGES = 256  # statistics of a stack cover at most its first images (stacks are big)
MAP_STAT_BYTES = 1 << 26  # and those of a larger map evenly spaced sections of this many bytes


def _kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith((".star", ".star.gz")):
        return "star"
    if name.endswith(_MRC_NAMES):
        return "mrc"
    with open(path, "rb") as f:
        head = f.read(1024)
    if head[:2] == b"\x1f\x8b":   # compressed: a STAR file if its text says so
        from radsvd.data._gzip import read_head

        text = read_head(path, 1024)
        return "star" if b"data_" in text and text[208:212] != b"MAP " else "mrc"
    if head[208:212] == b"MAP ":
        return "mrc"
    if b"data_" in head:
        return "star"
    from radsvd.data.mrc import parse_mrc_header

    try:  # an MRC header without its id, whose sizes match the file's exactly
        h = parse_mrc_header(head, None)
        if h.data_offset + h.data_bytes == path.stat().st_size:
            return "mrc"
    except InputError:
        pass
    raise InputError(f"{path}: neither an MRC file (no 'MAP ' id, not a known MRC name: "
                     f"{', '.join(_MRC_NAMES)}) nor a STAR file (no data_ block)")


def describe(path) -> dict:
    """A dict summary of an MRC map/stack (shape, voxel size, value range), a STAR file
    (style, particle count, stacks, box if resolvable, pixel size and CTF ranges) or a result
    ``.npz`` (kind, settings, score range; for poses against a STAR holding true poses, the
    angular and origin errors).

    MRC files are classified and checked by :func:`radsvd.data.mrc.parse_mrc_header`, the
    policy every reader uses; the tolerated oddities are listed under ``warnings``.  STAR
    files are read by :func:`radsvd.data.star.read_star`, which refuses values that are not
    numbers; an unreadable first stack is listed under ``problems``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if not path.is_file():
        what = "a folder" if path.is_dir() else "not a regular file (a device or pipe?)"
        raise InputError(f"{path}: {what}; pass an MRC or STAR file")
    from radsvd.results import is_result_file, summarize

    if is_result_file(path):
        return summarize(path)
    if _kind(path) == "mrc":
        return _describe_mrc(path)
    return _describe_star(path)


def _describe_mrc(path: Path) -> dict:
    from radsvd.data.mrc import mrc_header, mrc_statistics

    h = mrc_header(path)
    out = {"file": str(path), "type": "stack" if h.is_stack else "map", "shape": list(h.shape),
           "mode": h.mode, "dtype": h.dtype.name, "voxel_size": h.voxel_size,
           "space_group": h.ispg, "compressed": h.compressed,
           "extended_header_bytes": h.nsymbt}
    if h.is_stack:
        out["images"], out["box"] = h.nz, [h.ny, h.nx] if h.nx != h.ny else h.nx
        k = min(h.nz, STACK_STAT_IMAGES)
        out.update(mrc_statistics(path, h, np.arange(k)))
        out["stats_over_images"] = k
    else:
        out["box"] = h.shape[0] if len(set(h.shape)) == 1 else list(h.shape)
        k = min(h.nz, max(1, MAP_STAT_BYTES // h.section_bytes))
        out.update(mrc_statistics(path, h, np.linspace(0, h.nz - 1, k).round()))
        if k < h.nz:
            out["stats_over_sections"] = k
    if h.warnings:
        out["warnings"] = list(h.warnings)
    return out


def _describe_star(path: Path) -> dict:
    from radsvd.data.star import read_star

    t = read_star(path, require_ctf=False)
    out = {"file": str(path), "type": "star", "relion_style": t.attrs.get("style"),
           "particles": int(len(t))}
    problems = []
    if "image_path" in t.columns and len(t):
        stacks = list(dict.fromkeys(t["image_path"]))
        out["stacks"] = len(stacks)
        first = path.parent / stacks[0]
        try:
            if first.is_file():
                from radsvd.data.mrc import mrc_header

                out["box"] = mrc_header(first).nx
        except (InputError, OSError) as exc:
            problems.append(f"first stack unreadable: {str(exc)[:300]}")
    if "micrograph" in t.columns:
        out["micrographs"] = int(t["micrograph"].nunique())
    if "optics_group" in t.columns:
        out["optics_groups"] = int(t["optics_group"].nunique())
    for col in ("pixel_size", "defocus_u", "defocus_v", "defocus_angle", "voltage", "cs",
                "amplitude_contrast", "phase_shift"):
        if col in t.columns and t[col].notna().any():
            lo, hi = float(t[col].min()), float(t[col].max())
            out[col] = lo if lo == hi else [lo, hi]
    out["has_poses"] = bool({"rot", "tilt", "psi"} <= set(t.columns) and len(t)
                            and t["rot"].notna().all())
    out["has_ctf"] = bool({"defocus_u", "defocus_v", "voltage"} <= set(t.columns))
    if problems:
        out["problems"] = problems
    return out
