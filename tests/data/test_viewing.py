"""The reference code's Gauss–Legendre shell rule and STAR-file directions."""

import numpy as np
import pandas as pd
import pytest

from radsvd._validate import InputError
from radsvd.data.star import write_star
from radsvd.data.rotations import euler_to_rotation
from radsvd.data.viewing import directions_from_angles, directions_from_star, shell_directions


@pytest.mark.parametrize("K, count", [(32, 505), (48, 993), (64, 1639), (80, 2453), (96, 3427)])
def test_shell_rule_counts(K, count):
    assert len(shell_directions(K)) == count


def test_shell_rule_structure_and_quadrature():
    d = shell_directions(48)
    assert len(d.n_azimuth) == 29  # the reference code's rule: 29 latitudes at K = 48
    assert d.n_azimuth.sum() == 993
    # 3 + round(48 sin θ) azimuths per latitude (halves rounded away from zero)
    th = np.unique(d.polar)
    assert len(th) == 29
    # exact for low-degree polynomials on the sphere: ∫1 = 4π, ∫z² = ∫x² = 4π/3, ∫x y = 0
    v, w = d.vectors, d.weights
    assert w.sum() == pytest.approx(4 * np.pi, rel=1e-13)
    assert (w * v[:, 2] ** 2).sum() == pytest.approx(4 * np.pi / 3, rel=1e-12)
    assert (w * v[:, 0] ** 2).sum() == pytest.approx(4 * np.pi / 3, rel=1e-12)
    assert abs((w * v[:, 0] * v[:, 1]).sum()) < 1e-12
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0)
    R = d.rotations()
    np.testing.assert_allclose(R[:, :, 2], v, atol=1e-14)


def test_directions_from_star(tmp_path):
    rng = np.random.default_rng(0)
    n = 12
    rot, tilt, psi = rng.uniform(-180, 180, n), rng.uniform(0, 180, n), rng.uniform(-180, 180, n)
    table = pd.DataFrame({"image_name": [f"{i + 1:06d}@s.mrcs" for i in range(n)],
                          "defocus_u": 1e4, "defocus_v": 1e4, "voltage": 300.0, "cs": 2.7,
                          "amplitude_contrast": 0.1, "pixel_size": 1.0,
                          "rot": rot, "tilt": tilt, "psi": psi})
    path = write_star(tmp_path / "p.star", table, style="3.1")
    R = directions_from_star(path)
    np.testing.assert_allclose(R, euler_to_rotation(rot, tilt, psi), atol=1e-6)
    R5 = directions_from_star(path, n=5, with_psi=False)
    np.testing.assert_allclose(R5, euler_to_rotation(rot[:5], tilt[:5], 0.0), atol=1e-6)
    with pytest.raises(InputError, match="rot"):
        directions_from_angles([1.0, 2.0], [1.0])
    with pytest.raises(InputError, match="positive"):
        shell_directions(0)
    no_angles = tmp_path / "noangles.star"
    write_star(no_angles, table.drop(columns=["rot", "tilt", "psi"]), style="3.1")
    with pytest.raises(InputError, match="Euler angles"):
        directions_from_star(no_angles)
