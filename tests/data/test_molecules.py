"""Synthetic molecules and the pose convention, checked against brute force and RELION."""

import numpy as np
import pytest

from radsvd._validate import InputError
from radsvd.data.molecules import SYNTHETIC_PRESETS, GaussianMolecule, synthetic_molecule
from radsvd.data.rotations import (euler_to_rotation, random_rotations, rotation_to_euler)


def relion_euler_matrix(rot, tilt, psi):
    """RELION's Euler_angles2matrix (src/euler.cpp), written out from its published formula."""
    a, b, g = np.deg2rad([rot, tilt, psi])
    ca, sa, cb, sb, cg, sg = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(g), np.sin(g)
    cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
    return np.array([[cg * cc - sg * sa, cg * cs + sg * ca, -cg * sb],
                     [-sg * cc - cg * sa, -sg * cs + cg * ca, sg * sb],
                     [sc, ss, cb]])


@pytest.fixture(scope="module")
def mol():
    return synthetic_molecule("trpv1-like", n_atoms=60)


def test_euler_matches_relion_transpose():
    rng = np.random.default_rng(0)
    for rot, tilt, psi in rng.uniform([-180, 0, -180], [180, 180, 180], (20, 3)):
        R = euler_to_rotation(rot, tilt, psi)
        np.testing.assert_allclose(R, relion_euler_matrix(rot, tilt, psi).T, atol=1e-14)
        # the viewing direction is the third column: polar angle tilt, azimuth rot
        t, r = np.deg2rad(tilt), np.deg2rad(rot)
        np.testing.assert_allclose(R[:, 2], [np.sin(t) * np.cos(r), np.sin(t) * np.sin(r),
                                             np.cos(t)], atol=1e-14)


def test_euler_round_trip_including_degenerate_tilts():
    R = random_rotations(200, 1)
    back = euler_to_rotation(*rotation_to_euler(R))
    np.testing.assert_allclose(back, R, atol=1e-12)
    for tilt in (0.0, 180.0):
        Rd = euler_to_rotation(30.0, tilt, 50.0)
        np.testing.assert_allclose(euler_to_rotation(*rotation_to_euler(Rd)), Rd, atol=1e-12)


def test_random_rotations_are_haar():
    R = random_rotations(20000, 2)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-12)
    # Haar moments: E[R_ij] = 0, E[R_ij^2] = 1/3; each entry's std ≤ 1, so 5/sqrt(n) is > 5σ
    tol = 5 / np.sqrt(len(R))
    assert np.abs(R.mean(axis=0)).max() < tol
    assert np.abs((R ** 2).mean(axis=0) - 1 / 3).max() < tol


def test_volume_integral_and_projection(mol):
    N = 64
    dx = 2.0 / N
    vol = mol.volume(N)
    # Riemann sums of Gaussians well inside the box are exact to ~exp(-(π σ N)²/2) ≈ 1e-8
    assert vol.sum() * dx ** 3 == pytest.approx(mol.weights.sum(), rel=1e-7)
    np.testing.assert_allclose(vol.sum(axis=0) * dx, mol.projection(N), atol=1e-6 * vol.max())


def test_pose_convention_real_and_fourier(mol):
    """Template of pose R = projection along z of the molecule rotated by R^T."""
    N = 64
    dx = 2.0 / N
    for R in random_rotations(3, 3):
        p = mol.projection(N, R)
        ref = mol.rotated(R.T).volume(N).sum(axis=0) * dx
        np.testing.assert_allclose(p, ref, atol=1e-6 * ref.max())
        k = np.random.default_rng(4).uniform(-40, 40, (50, 2))
        k3 = np.c_[k, np.zeros(50)] @ R.T  # rows: R (kx, ky, 0)
        np.testing.assert_allclose(mol.projection_fourier(k, R), mol.fourier(k3), atol=1e-12)


def test_fourier_against_brute_force_dtft(mol):
    N = 64
    dx = 2.0 / N
    vol = mol.volume(N)
    x = (np.arange(N) - N // 2) * dx
    Z, Y, X = np.meshgrid(x, x, x, indexing="ij")
    k = np.random.default_rng(5).uniform(-20, 20, (8, 3))
    brute = np.array([dx ** 3 * np.sum(vol * np.exp(-1j * (kk[0] * X + kk[1] * Y + kk[2] * Z)))
                      for kk in k])
    # samples' DTFT = Σ_m Â(k + πN m): the 6 nearest aliases are each below
    # Σw·exp(-(σ_min (πN - |k|))² / 2)
    kmax = np.linalg.norm(k, axis=1).max()
    tol = 6 * mol.weights.sum() * np.exp(-0.5 * (mol.sigmas.min() * (np.pi * N - kmax)) ** 2)
    np.testing.assert_allclose(mol.fourier(k), brute, rtol=0, atol=tol)


def test_presets_deterministic_distinct_in_box_and_asymmetric():
    mols = [synthetic_molecule(n) for n in SYNTHETIC_PRESETS]
    assert len(mols) >= 6
    again = synthetic_molecule(SYNTHETIC_PRESETS[0])
    np.testing.assert_array_equal(again.centers, mols[0].centers)
    assert not np.allclose(synthetic_molecule(SYNTHETIC_PRESETS[0], seed=1).centers,
                           mols[0].centers)
    N = 48
    for m in mols:
        assert m.extent(5.0) < 1.0  # every atom to 5σ inside the box [-1, 1]³
        p = m.projection(N)
        # no n-fold symmetry about the viewing axis: rotating the image changes it
        for quarter in (1, 2):
            diff = np.linalg.norm(np.rot90(p, quarter) - p) / np.linalg.norm(p)
            assert diff > 0.05, (m.name, quarter, diff)
    projs = [m.projection(N) / np.linalg.norm(m.projection(N)) for m in mols]
    for i in range(len(projs)):
        for j in range(i):
            assert np.linalg.norm(projs[i] - projs[j]) > 0.1


def test_bad_molecules():
    with pytest.raises(InputError, match="centers"):
        GaussianMolecule(np.zeros((3, 2)), np.ones(3), np.ones(3))
    with pytest.raises(InputError, match="positive"):
        GaussianMolecule(np.zeros((3, 3)), np.zeros(3), np.ones(3))
    with pytest.raises(InputError, match="unknown synthetic molecule"):
        synthetic_molecule("nope")
    with pytest.raises(InputError, match="rotation"):
        synthetic_molecule("trpv1-like").projection(16, np.eye(3) * 2)


def test_projection_fourier_grid_is_the_closed_form_on_the_dft_grid(mol):
    N = 24
    R = random_rotations(2, 7)
    F = mol.projection_fourier_grid(N, R)
    m = np.pi * (np.arange(N) - N // 2)
    kx, ky = np.meshgrid(m, m)  # [iy, ix]
    for i in range(2):
        np.testing.assert_allclose(F[i], mol.projection_fourier(np.stack([kx, ky], -1), R[i]),
                                   rtol=1e-12, atol=1e-12 * mol.weights.sum())
