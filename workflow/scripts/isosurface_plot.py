"""Marching-cubes isosurfaces (scikit-image) drawn with matplotlib's 3D axes."""

import numpy as np
from matplotlib.colors import to_rgb
from mpl_toolkits.mplot3d.art3d import Poly3DCollection
from skimage.measure import marching_cubes


def draw_isosurface(ax, vol, level, color="#8fb3d9", elev=20, azim=-60):
    """Isosurface of ``vol[iz, iy, ix]`` at ``level``, shaded by a fixed light direction."""
    vol = np.asarray(vol, dtype=np.float64)
    level = float(np.clip(level, vol.min() + 1e-12 * np.ptp(vol), vol.max() - 1e-12 * np.ptp(vol)))
    verts, faces, normals, _ = marching_cubes(vol, level=level)
    xyz = verts[:, ::-1]                      # (iz, iy, ix) -> (x, y, z)
    tri = xyz[faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    fn /= np.linalg.norm(fn, axis=1, keepdims=True) + 1e-30
    light = np.array([0.4, -0.5, 0.77])
    light /= np.linalg.norm(light)
    shade = 0.35 + 0.65 * np.abs(fn @ light)
    base = np.array(to_rgb(color))
    coll = Poly3DCollection(tri, facecolors=np.clip(shade[:, None] * base, 0, 1),
                            edgecolors="none", linewidths=0)
    ax.add_collection3d(coll)
    # a cube around the largest connected features: centre and half-width from the
    # vertices' 1st-99th percentiles (isolated noise specks do not set the scale)
    lo, hi = np.percentile(xyz, 1, axis=0), np.percentile(xyz, 99, axis=0)
    c, h = 0.5 * (lo + hi), 0.5 * float(np.max(hi - lo)) * 1.08 + 0.5
    for setter, ci in zip((ax.set_xlim, ax.set_ylim, ax.set_zlim), c):
        setter(ci - h, ci + h)
    ax.set_box_aspect((1, 1, 1), zoom=1.35)
    ax.view_init(elev=elev, azim=azim)
    ax.set_axis_off()
    return ax
