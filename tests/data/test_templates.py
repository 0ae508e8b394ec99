"""Templates by 3D NUFFT against closed-form Fourier slices of Gaussian molecules."""

import numpy as np
import pytest

from radsvd._validate import InputError
from radsvd.data.ctf import CTFParams
from radsvd.data.molecules import synthetic_molecule
from radsvd.data.rotations import random_rotations
from radsvd.data.templates import apply_ctf, make_templates, project_fourier
from radsvd.data.viewing import shell_directions
from radsvd.grids import PolarGrid

EPS = 1e-6


@pytest.fixture(scope="module")
def setup():
    mol = synthetic_molecule("ribosome-like", n_atoms=80)
    grid = PolarGrid(K=24)
    N = 48
    return mol, grid, N, mol.volume(N)


def _tolerance(mol, N, K):
    # NUFFT: |error| ≲ eps · dx³ Σ|V| = eps · Σw; sampling aliasing at |k| ≤ K:
    # 6 Σw exp(-(σ_min (πN − K))² / 2)
    w = mol.weights.sum()
    return 10 * EPS * w + 6 * w * np.exp(-0.5 * (mol.sigmas.min() * (np.pi * N - K)) ** 2)


def test_slices_match_closed_form(setup):
    mol, grid, N, vol = setup
    R = random_rotations(6, 0)
    T = project_fourier(vol, R, grid, eps=EPS)
    assert T.shape == (6, grid.R, grid.Q) and T.dtype == np.complex128
    kx, ky = grid.points()
    k2 = np.stack([kx, ky], axis=-1)
    ref = np.stack([mol.projection_fourier(k2, r) for r in R])
    np.testing.assert_allclose(T, ref, rtol=0, atol=_tolerance(mol, N, grid.K))


def test_shell_directions_templates_and_ctf(setup):
    mol, grid, N, vol = setup
    d = shell_directions(grid.K)
    R = d.rotations()[::25]
    c = CTFParams(12000, 10000, 40.0)
    p = 3.0
    T = make_templates(vol, R, grid, ctf=(c, p), eps=EPS)
    plain = project_fourier(vol, R, grid, eps=EPS)
    np.testing.assert_allclose(T, plain * c.polar(grid, N, p))
    np.testing.assert_allclose(apply_ctf(plain, c.ring(grid, N, p)),
                               plain * c.ring(grid, N, p)[:, None])
    per = np.stack([c.polar(grid, N, p)] * len(R))
    np.testing.assert_allclose(apply_ctf(plain, per), T)
    with pytest.raises(InputError, match="CTF shape"):
        apply_ctf(plain, np.ones((3, 3)))


def test_agrees_with_images_to_polar(setup):
    """The 2D core's to_polar of a closed-form projection gives the same polar samples."""
    polar = pytest.importorskip("radsvd.images.polar")
    mol, grid, N, vol = setup
    R = random_rotations(3, 1)
    imgs = np.stack([mol.projection(N, r) for r in R])
    a = polar.to_polar(imgs, grid)
    b = project_fourier(vol, R, grid, eps=EPS)
    np.testing.assert_allclose(a, b, rtol=0, atol=_tolerance(mol, N, grid.K))


def test_bad_template_input(setup):
    mol, grid, N, vol = setup
    with pytest.raises(InputError, match="Nyquist"):
        project_fourier(mol.volume(8), np.eye(3), grid)
    with pytest.raises(InputError, match="rotation"):
        project_fourier(vol, np.ones((2, 3, 3)), grid)
    with pytest.raises(InputError, match="cubic"):
        project_fourier(np.zeros((8, 8, 9)), np.eye(3), PolarGrid(K=4))
    with pytest.raises(InputError, match="non-finite"):
        bad = vol.copy()
        bad[0, 0, 0] = np.nan
        project_fourier(bad, np.eye(3), grid)


def test_simulated_images_on_polar_grid_equal_ctf_templates():
    """End to end: simulate (Cartesian FFT grid, CTF per image) → to_polar equals the CTF
    template of the true pose on the polar grid; a CTF rotated by 90° does not."""
    polar = pytest.importorskip("radsvd.images.polar")
    from radsvd.data.rotations import euler_to_rotation
    from radsvd.data.simulate import Microscope, simulate_particles

    mol = synthetic_molecule("tmem16-like", radius=0.4, n_atoms=80)
    N, p = 128, 2.0
    scope = Microscope(defocus_range=(5000.0, 8000.0), astigmatism=3000.0,
                       particles_per_micrograph=1)
    imgs, t = simulate_particles(mol, 2, N, p, snr=None, seed=1, microscope=scope)
    grid = PolarGrid(K=60)
    P = polar.to_polar(imgs.astype(np.float64), grid)
    vol = mol.volume(N)
    for i in range(2):
        R = euler_to_rotation(t.rot[i], t.tilt[i], t.psi[i])
        T = make_templates(vol, R, grid, ctf=(CTFParams(t.defocus_u[i], t.defocus_v[i],
                                                        t.defocus_angle[i]), p))[0]
        # float32 images (6e-8 of the peak) and NUFFT tolerances: 1e-6 of the peak is ample;
        # the CTF point spread (≤ λΔf s_max ≈ 40 Å) keeps the particle inside the box
        np.testing.assert_allclose(P[i], T, rtol=0, atol=1e-6 * np.abs(T).max())
        wrong = make_templates(vol, R, grid, ctf=(CTFParams(t.defocus_u[i], t.defocus_v[i],
                                                            t.defocus_angle[i] + 90), p))[0]
        assert np.abs(P[i] - wrong).max() > 1e-3 * np.abs(T).max()  # 1000× the tolerance
