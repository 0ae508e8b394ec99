"""Simulated particles against closed-form projections; written files round-trip."""

import numpy as np
import pytest

from radsvd._validate import InputError
from radsvd.data.ctf import CTFParams
from radsvd.data.mrc import read_mrc
from radsvd.data.stacks import load_particles
from radsvd.data.star import read_star
from radsvd.data.molecules import synthetic_molecule
from radsvd.data.rotations import euler_to_rotation
from radsvd.data.simulate import (Microscope, fourier_to_image, simulate_particles,
                                  write_particles)

N = 128  # at N = 128 the atoms (σ ≥ 0.028) are band-limited to exp(-(σπN/2)²/2) < 1e-7


@pytest.fixture(scope="module")
def mol():
    return synthetic_molecule("proteasome-like", n_atoms=60)


def _shifted(mol, R, sx, sy, p):
    """The molecule moved so that its projection under R sits at −(sx, sy) Å (RELION origins)."""
    t = -np.array([sx, sy, 0.0]) * 2.0 / (N * p)
    from radsvd.data.molecules import GaussianMolecule

    return GaussianMolecule(mol.centers + t @ R.T, mol.sigmas, mol.weights)


@pytest.mark.parametrize("volume_box", [None, N])  # closed-form Fourier / NUFFT of the map
def test_clean_images_are_closed_form_projections(mol, volume_box):
    p = 2.0
    imgs, t = simulate_particles(mol, 3, N, p, snr=None, ctf=False, seed=1, max_shift=8.0,
                                 volume_box=volume_box)
    assert imgs.dtype == np.float32 and imgs.shape == (3, N, N)
    for i in range(3):
        R = euler_to_rotation(t.rot[i], t.tilt[i], t.psi[i])
        ref = _shifted(mol, R, t.shift_x[i], t.shift_y[i], p).projection(N, R)
        # float32 storage (6e-8) + NUFFT eps 1e-7 + band limit 1e-7, relative to the peak
        np.testing.assert_allclose(imgs[i], ref, rtol=0, atol=1e-6 * ref.max())
    assert np.hypot(t.shift_x, t.shift_y).max() <= 8.0


@pytest.mark.parametrize("volume_box", [None, N])
def test_ctf_images_match_closed_form(mol, volume_box):
    """Reference: the closed-form real-space projection, its centred DFT times the CTF."""
    p = 2.0
    scope = Microscope(particles_per_micrograph=2)
    imgs, t = simulate_particles(mol, 4, N, p, snr=None, seed=2, microscope=scope,
                                 volume_box=volume_box)
    assert t.micrograph.nunique() == 2
    assert (t.defocus_u >= t.defocus_v).all()
    m = np.arange(N) - N // 2
    kx, ky = np.meshgrid(np.pi * m, np.pi * m)
    dx = 2.0 / N
    for i in range(4):
        R = euler_to_rotation(t.rot[i], t.tilt[i], t.psi[i])
        c = CTFParams(t.defocus_u[i], t.defocus_v[i], t.defocus_angle[i], t.voltage[i],
                      t.cs[i], t.amplitude_contrast[i])
        real = mol.projection(N, R)
        F = dx ** 2 * np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(real)))
        ref = fourier_to_image((F * c.grid2d(kx, ky, N, p))[None])[0]
        # float32 storage, band limit exp(-(σπN/2)²/2) < 1e-7 and NUFFT eps, vs the peak
        np.testing.assert_allclose(imgs[i], ref, rtol=0, atol=1e-6 * np.abs(ref).max())


def test_noise_level_and_determinism(mol):
    clean, _ = simulate_particles(mol, 8, 64, 4.0, snr=None, seed=3)
    noisy, _ = simulate_particles(mol, 8, 64, 4.0, snr=0.5, seed=3)
    noise = noisy - clean
    expected = clean.var(axis=(1, 2)).mean() / 0.5
    # the variance of 8·64² Gaussian samples has relative std sqrt(2/32768) ≈ 0.008
    assert noise.var() == pytest.approx(expected, rel=0.05)
    again, _ = simulate_particles(mol, 8, 64, 4.0, snr=0.5, seed=3)
    np.testing.assert_array_equal(again, noisy)


def test_write_and_reload(mol, tmp_path):
    imgs, t = simulate_particles(mol, 10, 32, 9.0, snr=1.0, seed=4, max_shift=5.0,
                                 volume_box=32)
    paths = write_particles(tmp_path, imgs, t, volume=mol.volume(32))
    back, table = load_particles(paths["star"])
    np.testing.assert_array_equal(back, imgs)
    assert table.attrs["style"] == "3.1"
    for col in ("rot", "tilt", "psi", "defocus_u", "defocus_v", "defocus_angle", "shift_x",
                "shift_y"):
        np.testing.assert_allclose(table[col], t[col], rtol=1e-7, atol=1e-5)
    vol, vs = read_mrc(paths["map"])
    assert vol.shape == (32, 32, 32) and vs == pytest.approx(9.0)
    assert read_star(paths["star"])["pixel_size"].iloc[0] == pytest.approx(9.0)


def test_bad_simulation_input(mol):
    with pytest.raises(InputError, match="snr"):
        simulate_particles(mol, 2, 32, 1.0, snr=-1)
    with pytest.raises(InputError, match="pixel_size"):
        simulate_particles(mol, 2, 32, 0.0)
    with pytest.raises(InputError, match="exceeds"):
        simulate_particles(np.zeros((64, 64, 64)), 2, 32, 1.0)
    with pytest.raises(InputError, match="rotations"):
        simulate_particles(mol, 2, 32, 1.0, rotations=np.eye(3))


def test_cli_simulate(tmp_path, capsys):
    from radsvd.cli import main

    out = tmp_path / "sim"
    assert main(["simulate", "--molecule", "nanodisc-like", "--n", "6", "--box", "32",
                 "--pixel-size", "9", "--snr", "0", "--n-micrographs", "2", "--style", "3.0",
                 "--out", str(out), "--seed", "1"]) == 0
    imgs, table = load_particles(out / "particles.star")
    assert imgs.shape == (6, 32, 32) and table.attrs["style"] == "3.0"
    assert table.defocus_u.nunique() == 2
    vol, _ = read_mrc(out / "map.mrc")
    assert vol.shape == (32, 32, 32)
    capsys.readouterr()
    assert main(["info", "--json", str(out / "particles.mrcs")]) == 0
    import json

    info = json.loads(capsys.readouterr().out)
    assert info["type"] == "stack" and info["images"] == 6 and info["box"] == 32
    assert info["voxel_size"] == pytest.approx(9.0)
    assert info["mean"] == pytest.approx(float(imgs.mean()), rel=1e-5, abs=1e-6)
    assert main(["simulate", "--molecule", "nope", "--out", str(out)]) == 2
    assert "unknown synthetic molecule" in capsys.readouterr().err


def test_no_ctf_simulation_writes_no_ctf(mol, tmp_path):
    imgs, t = simulate_particles(mol, 3, 32, 9.0, snr=None, ctf=False, seed=5)
    assert "defocus_u" not in t.columns
    paths = write_particles(tmp_path, imgs, t)
    with pytest.raises(InputError, match="missing CTF column"):
        load_particles(paths["star"])
    back, table = load_particles(paths["star"], require_ctf=False)
    np.testing.assert_array_equal(back, imgs)
