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
