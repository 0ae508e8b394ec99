import numpy as np
import pytest

from radsvd.grids import PolarGrid, radial_quadrature


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("R", [1, 5, 49])
def test_radial_quadrature_exact_on_polynomials(dim, R):
    K = 48.0
    k, w = radial_quadrature(K, R, dim)
    assert np.all((k > 0) & (k < K)) and np.all(w > 0)
    for p in range(2 * R):  # exact up to degree 2R - 1
        exact = K ** (p + dim) / (p + dim)
        got = np.sum(w * k**p)
        # each term is bounded by K^p * sum(w) = exact * (p + dim) / dim: rounding ~ 1e-15 of that
        assert abs(got - exact) <= 1e-13 * exact * (p + dim), (p, got, exact)


def test_polar_grid_reference_defaults():
    g = PolarGrid(48)
    assert (g.R, g.Q, g.n_freq) == (49, 98, 50)
    assert np.isclose(g.w.sum(), 48**2 / 2)
    assert np.allclose(g.eta**2, g.w * 2 * np.pi / 98)
    kx, ky = g.points()
    assert kx.shape == (49, 98) and np.allclose(np.hypot(kx, ky), g.k[:, None])
    assert np.allclose(ky[:, 0], 0) and np.all(kx[:, 0] > 0)  # psi = 0 is +x


def test_polar_grid_overrides_and_errors():
    g = PolarGrid(10, R=7, Q=20)
    assert (g.R, g.Q) == (7, 20)
    with pytest.raises(ValueError, match="even"):
        PolarGrid(10, Q=21)
    with pytest.raises(ValueError, match="positive"):
        PolarGrid(-1)
    with pytest.raises(ValueError, match="Nyquist"):
        PolarGrid(48).check_box(16)
    PolarGrid(48).check_box(64)

