"""``radsvd templates``: projections of a map on the viewing grid the aligners use."""

from __future__ import annotations

import argparse
import sys

DESCRIPTION = """\
Project MAP along the directions of the reference shell rule at frequency K (the grid
align-particles uses: 505 directions at K = 32, 993 at K = 48), one template per direction at
RELION pose (rot, tilt, psi) = (azimuth, polar angle, 0): the projection along z of the map
rotated by R^T, R = Rz(rot) Ry(tilt) Rz(psi).  Writes TEMPLATES.mrcs (real-space images, the
map's physical box on N pixels) and TEMPLATES.star beside it (RELION 3.1: rlnImageName,
rlnAngleRot/Tilt/Psi in degrees, rlnImagePixelSize in Å).

Use the templates as TARGETS of align-images with the same --K; target t of its result is
row t of the STAR file, and a result (best_target, angle, shift) becomes a RELION pose as
docs/poses.md derives:
    poses = radsvd.data.poses.compose_poses(
        radsvd.data.directions_from_star("TEMPLATES.star"), r["best_target"], r["angle"],
        r["shift"] if "shift" in r else None, pixel_size=P)"""


def register(sub) -> None:
    p = sub.add_parser(
        "templates", help="templates (projections) of a map on the aligners' viewing grid, "
                          "with a STAR file of their poses",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("map", metavar="MAP.mrc", help="cubic map (its header gives the voxel size)")
    p.add_argument("--K", type=float, required=True,
                   help="frequency of the viewing grid, in box units (as align-images --K; "
                        "at most the Nyquist frequency pi*N/2 of the template box)")
    p.add_argument("--box", type=int, default=None,
                   help="template box in pixels, at most the map's (the map is Fourier-cropped "
                        "to it; same physical box, so the pixel size grows; default: the "
                        "map's box)")
    p.add_argument("--out", required=True, metavar="TEMPLATES.mrcs",
                   help="output stack (.mrcs); TEMPLATES.star is written beside it")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=_templates)


CHUNK = 128   # templates projected per step (progress granularity, bounded working memory)


def write_templates(map_path, K: float, out, box: int | None = None,
                    progress: bool = False) -> dict:
    """Project the map at ``map_path`` on :func:`~radsvd.data.viewing.shell_directions` (K)
    and write ``out`` (.mrcs) and the STAR of the poses beside it; returns a summary."""
    from pathlib import Path

    import numpy as np

    from radsvd._files import check_output_file
    from radsvd._validate import InputError, frequency_for_box
    from radsvd.data import read_mrc, write_mrc
    from radsvd.data.preprocess import downsample_volume
    from radsvd.data.simulate import simulate_particles
    from radsvd.data.viewing import shell_directions

    out = Path(out)
    if not out.name.endswith(".mrcs"):
        raise InputError(f"--out must end in .mrcs, got {out}")
    star = out.with_suffix(".star")
    check_output_file(out, "--out")
    check_output_file(star, "--out (its .star)")
    volume, voxel = read_mrc(map_path, expect="map")
    Nv = volume.shape[-1]
    if len(set(volume.shape)) != 1:
        raise InputError(f"{map_path}: the map is not cubic: {volume.shape}")
    N = Nv if box is None else box
    if int(N) != N or not 8 <= N <= Nv:
        raise InputError(f"--box must be an integer in [8, {Nv}] (the map's box), got {box}")
    N = int(N)
    K = frequency_for_box(K, N, "--K")
    if N != Nv:
        volume = downsample_volume(volume, N)
    # MRC headers hold float32: 2.4 reads as 2.4000000953674316; 7 digits are what it has
    pixel = float(f"{voxel * Nv / N:.7g}") if voxel > 0 else 1.0
    if voxel <= 0:
        import warnings

        warnings.warn(f"{map_path}: no voxel size in the header; the STAR says 1 Å/pixel")
    directions = shell_directions(K)
    R = directions.rotations()
    n = len(R)
    images = np.empty((n, N, N), np.float32)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, unit="template", desc="templates")
    try:
        for start in range(0, n, CHUNK):
            stop = min(n, start + CHUNK)
            images[start:stop], _ = simulate_particles(volume, stop - start, N, pixel, snr=None,
                                                       ctf=False, rotations=R[start:stop])
            if bar is not None:
                bar.update(stop - start)
    finally:
        if bar is not None:
            bar.close()
    write_mrc(out, images, pixel, stack=True)
    _write_star(star, out.name, np.rad2deg(directions.azimuth), np.rad2deg(directions.polar),
                pixel, N)
    return dict(templates=n, box=N, pixel_size=pixel, K=K, stack=out, star=star)


def _write_star(path, stack_name: str, rot, tilt, pixel: float, N: int) -> None:
    """A RELION 3.1 STAR file: one optics group, one row per template."""
    import pandas as pd
    import starfile

    from radsvd._files import atomic_path

    optics = pd.DataFrame({"rlnOpticsGroup": [1], "rlnOpticsGroupName": ["opticsGroup1"],
                           "rlnImagePixelSize": [pixel], "rlnImageSize": [N],
                           "rlnImageDimensionality": [2]})
    rows = pd.DataFrame({"rlnImageName": [f"{i + 1:06d}@{stack_name}" for i in range(len(rot))],
                         "rlnAngleRot": rot, "rlnAngleTilt": tilt, "rlnAnglePsi": 0.0,
                         "rlnOpticsGroup": 1})
    with atomic_path(path, suffix=".star") as tmp:
        starfile.write({"optics": optics, "particles": rows}, tmp, float_format="%.10g")
        tmp.write_text("\n# version 30001\n" + tmp.read_text())


def _templates(args) -> int:
    s = write_templates(args.map, args.K, args.out, box=args.box,
                        progress=not args.no_progress)
    print(f"{s['templates']} templates of {s['box']}x{s['box']} pixels ({s['pixel_size']:.4g} "
          f"Å/pixel) on the K = {s['K']:g} shell directions -> {s['stack']}, {s['star']}",
          file=sys.stderr)
    return 0
