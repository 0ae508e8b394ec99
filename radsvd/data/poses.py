"""From 2D alignment results to RELION poses, pose errors, and the poses STAR file.

Composition (conventions of :mod:`radsvd.data.rotations` and :mod:`radsvd.images.align`).
Template t is the projection at pose R_t: T̂_t(k) = V̂(R_t (kx, ky, 0)).  The engine reports
image ≈ T_δ R_γ T_t: the template rotated counter-clockwise by γ, then moved by +δ.  Rotating
an image by γ is R_γ T̂(k) = T̂(Rz(−γ) k), so the image is the projection at pose

    R = R_t · Rz(−γ),   i.e. RELION (rot, tilt, psi) = (rot_t, tilt_t, psi_t − γ),

and its particle sits at +δ from the box centre.  RELION's origin offsets centre a particle by
moving it by +origin (the particle sits at −origin), so

    rlnOriginXAngst = origin_x − δx · p,   rlnOriginYAngst = origin_y − δy · p,

with (origin_x, origin_y) the offsets the images were already centred by (0 if none) and p the
pixel size (Å) of the images that were aligned; x is the column index, y the row index.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from radsvd._validate import InputError
from radsvd.data.rotations import as_rotations, euler_to_rotation, rotation_to_euler

__all__ = ["compose_poses", "angular_errors", "write_poses_star", "SCORE_LABEL"]

SCORE_LABEL = "rlnRadsvdScore"


def _rz(a):
    c, s = np.cos(a), np.sin(a)
    out = np.zeros(np.shape(a) + (3, 3))
    out[..., 0, 0], out[..., 0, 1], out[..., 1, 0], out[..., 1, 1] = c, -s, s, c
    out[..., 2, 2] = 1.0
    return out


def compose_poses(template_rotations, best_target, angle, shift_px=None, pixel_size=1.0,
                  origin_x=0.0, origin_y=0.0) -> pd.DataFrame:
    """RELION poses of aligned images: columns rot, tilt, psi (degrees) and shift_x, shift_y
    (Å, RELION origins), from the templates' poses (n_t, 3, 3), the engine's best_target (n,),
    angle γ (n, radians) and shift δ (n, 2) pixels of size ``pixel_size`` Å (module doc)."""
    Rt = as_rotations(template_rotations, "template rotations")
    t = np.asarray(best_target, np.int64)
    g = np.asarray(angle, np.float64)
    if t.ndim != 1 or g.shape != t.shape:
        raise InputError(f"best_target {t.shape} and angle {g.shape} must be 1-d of one length")
    if t.size and (t.min() < 0 or t.max() >= len(Rt)):
        raise InputError(f"best_target refers to template {int(t.max())}, but only {len(Rt)} "
                         "template rotations are given")
    R = Rt[t] @ _rz(-g)
    rot, tilt, psi = rotation_to_euler(R)
    d = np.zeros((t.size, 2)) if shift_px is None else np.asarray(shift_px, np.float64)
    if d.shape != (t.size, 2):
        raise InputError(f"shift must have shape ({t.size}, 2), got {d.shape}")
    return pd.DataFrame({"rot": rot, "tilt": tilt, "psi": psi,
                         "shift_x": np.asarray(origin_x, np.float64) - d[:, 0] * pixel_size,
                         "shift_y": np.asarray(origin_y, np.float64) - d[:, 1] * pixel_size})


def angular_errors(rot, tilt, psi, rot_true, tilt_true, psi_true) -> np.ndarray:
    """Geodesic angle (degrees) between the poses given by two sets of RELION Euler angles."""
    A = euler_to_rotation(rot, tilt, psi)
    B = euler_to_rotation(rot_true, tilt_true, psi_true)
    c = (np.einsum("...ij,...ij->...", A, B) - 1.0) / 2.0
    return np.rad2deg(np.arccos(np.clip(c, -1.0, 1.0)))


_OPTICS_LABELS = ("rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast",
                  "rlnDetectorPixelSize", "rlnMagnification", "rlnImagePixelSize")


def write_poses_star(path, star, poses: pd.DataFrame, score, n: int | None = None) -> Path:
    """Write a RELION 3.1 STAR file: the first ``n`` particle rows of ``star`` (any style) with
    rlnAngleRot/Tilt/Psi, rlnOriginXAngst/YAngst from ``poses`` (:func:`compose_poses`) and
    ``score`` as ``rlnRadsvdScore``.  An older-style input gets a data_optics block (one group
    per distinct voltage, Cs, amplitude contrast and pixel size); its per-particle optics and
    pixel origins (rlnOriginX/Y) are dropped.  Written atomically."""
    import starfile

    from radsvd._files import atomic_path
    from radsvd.data.star import particle_block, read_blocks, read_star, star_style

    blocks = read_blocks(star)
    style = star_style(blocks)
    part = particle_block(blocks, star).reset_index(drop=True)
    n = len(part) if n is None else int(n)
    if len(poses) != n or np.shape(score) != (n,):
        raise InputError(f"write_poses_star: {len(poses)} poses and {np.shape(score)} scores "
                         f"for {n} particles")
    part = part.iloc[:n].copy()
    out = {}
    if style == "3.1":
        out["optics"] = blocks["optics"]
    else:
        table = read_star(star, require_ctf=False).iloc[:n]
        keys = ["voltage", "cs", "amplitude_contrast", "pixel_size"]
        missing = [k for k in keys if k not in table.columns or table[k].isna().any()]
        if missing:
            raise InputError(f"{star}: cannot build data_optics, missing {', '.join(missing)}")
        uniq, groups = np.unique(table[keys].to_numpy(np.float64), axis=0, return_inverse=True)
        out["optics"] = pd.DataFrame({
            "rlnOpticsGroup": np.arange(1, len(uniq) + 1),
            "rlnOpticsGroupName": [f"opticsGroup{g + 1}" for g in range(len(uniq))],
            "rlnVoltage": uniq[:, 0], "rlnSphericalAberration": uniq[:, 1],
            "rlnAmplitudeContrast": uniq[:, 2], "rlnImagePixelSize": uniq[:, 3],
            "rlnImageDimensionality": 2})
        part = part.drop(columns=[c for c in _OPTICS_LABELS + ("rlnOriginX", "rlnOriginY")
                                  if c in part.columns])
        part["rlnOpticsGroup"] = groups.ravel() + 1
    part["rlnAngleRot"] = poses["rot"].to_numpy()
    part["rlnAngleTilt"] = poses["tilt"].to_numpy()
    part["rlnAnglePsi"] = poses["psi"].to_numpy()
    part["rlnOriginXAngst"] = poses["shift_x"].to_numpy()
    part["rlnOriginYAngst"] = poses["shift_y"].to_numpy()
    part[SCORE_LABEL] = np.asarray(score, np.float64)
    out["particles"] = part
    with atomic_path(path, suffix=".star") as tmp:
        starfile.write(out, tmp, float_format="%.8g")
        tmp.write_text("\n# version 30001\n" + tmp.read_text())
    return Path(path)
