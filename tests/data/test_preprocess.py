"""Preprocessing: normalisation, edge artefacts, centring, Fourier cropping."""

import numpy as np
import pytest

from radsvd._validate import InputError
from radsvd.data.molecules import GaussianMolecule
from radsvd.data.preprocess import (center, downsample, downsample_volume, interior_mask,
                                    normalize, preprocess, replace_edge_artifacts, shift_images)


@pytest.fixture(scope="module")
def wide():
    """Wide atoms (σ ≥ 0.08): content beyond k = π·32/2 is below exp(-(0.08·50)²/2) ≈ 3e-4,
    beyond the N = 64 Nyquist (k = 100) below exp(-32) – so crops to 64 are exact."""
    rng = np.random.default_rng(0)
    c = rng.uniform(-0.35, 0.35, (12, 3))
    return GaussianMolecule(c, rng.uniform(0.08, 0.12, 12), rng.uniform(0.5, 1.5, 12))


# FFT-based operations are periodic: tails wrap around the box.  Projected centres are within
# 0.35·√2 = 0.495 of the origin, so ≥ 0.505 from the edge: wrapped tails are below
# 2·exp(-(0.505/0.12)²/2) ≈ 3e-4 of the peak.
WRAP = 2 * np.exp(-0.5 * (0.505 / 0.12) ** 2)


def test_normalize_interior():
    imgs = np.random.default_rng(0).normal(3.0, 2.0, (4, 32, 32))
    out = normalize(imgs, radius=0.8)
    mask = interior_mask(32, 0.8)
    np.testing.assert_allclose(out[:, mask].mean(axis=1), 0.0, atol=1e-12)
    np.testing.assert_allclose(out[:, mask].std(axis=1), 1.0, rtol=1e-12)
    with pytest.raises(InputError, match="constant"):
        normalize(np.ones((1, 8, 8)))


def test_downsample_images_and_volume(wide):
    a128, a64 = wide.projection(128), wide.projection(64)
    np.testing.assert_allclose(downsample(a128, 64), a64, atol=WRAP * a64.max())
    v64, v32 = wide.volume(64), wide.volume(32)
    # at N = 32 the volume keeps k ≤ 50: dropped content ~exp(-(0.08·50)²/2) = 3e-4 of the peak
    np.testing.assert_allclose(downsample_volume(v64, 32), v32, atol=(1e-3 + WRAP) * v32.max())
    with pytest.raises(InputError, match="new box"):
        downsample(a64, 65)


def test_center_undoes_shift(wide):
    p = 2.0
    a = wide.projection(64)
    sx, sy = 3.0, -5.0  # Å; RELION origin offsets: the particle sits at −(sx, sy)
    t = np.array([sx, sy, 0.0]) * 2 / (64 * p)
    off = GaussianMolecule(wide.centers - t, wide.sigmas, wide.weights).projection(64)
    # shift_images moves content by +s pixels
    np.testing.assert_allclose(shift_images(a, -sx / p, -sy / p), off, atol=WRAP * a.max())
    np.testing.assert_allclose(center(off, sx, sy, p), a, atol=WRAP * a.max())


def test_simulated_shifts_are_undone_by_preprocess():
    from radsvd.data.molecules import synthetic_molecule
    from radsvd.data.simulate import simulate_particles

    mol = synthetic_molecule("trpv1-like", n_atoms=40)
    rot = np.stack([np.eye(3)] * 2)
    # N = 128: the atoms' spectra are below exp(-(0.028·π·64)²/2) ≈ 1e-7 at the Nyquist
    # frequency, where Fourier shifts of real images are ambiguous
    shifted, t = simulate_particles(mol, 2, 128, 2.0, snr=None, ctf=False, max_shift=12.0,
                                    rotations=rot, seed=3)
    plain, _ = simulate_particles(mol, 2, 128, 2.0, snr=None, ctf=False, rotations=rot, seed=3)
    assert np.hypot(t.shift_x, t.shift_y).min() > 1.0
    centred = center(shifted.astype(np.float64), t.shift_x.to_numpy(), t.shift_y.to_numpy(), 2.0)
    # molecule extent ≤ 0.6 + 5σ of the half-box: wrap-around negligible (< 1e-6 of the peak)
    np.testing.assert_allclose(centred, plain, atol=1e-5 * plain.max())


def test_replace_edge_artifacts():
    rng = np.random.default_rng(1)
    clean = rng.standard_normal((2, 64, 64))
    out, counts = replace_edge_artifacts(clean)
    np.testing.assert_array_equal(out, clean)  # |z| > 8 never happens in 8192 normals
    assert counts.tolist() == [0, 0]
    art = clean.copy()
    art[0, :, :5] = 0.0          # padding strip on the left
    art[1, 10, 10] = 1e4         # a hot pixel
    out, counts = replace_edge_artifacts(art)
    assert counts.tolist() == [64 * 5, 1]
    assert np.ptp(out[0, :, 0]) > 0 and abs(out[1, 10, 10]) < 8
    np.testing.assert_array_equal(out[0, :, 5:], art[0, :, 5:])


def test_preprocess_pipeline(wide):
    import pandas as pd

    imgs = np.stack([wide.projection(64)] * 3) + np.random.default_rng(2).normal(0, 0.1, (3, 64, 64))
    table = pd.DataFrame({"pixel_size": 2.0, "shift_x": [0.0, 2.0, -2.0], "shift_y": 0.0,
                          "image_size": 64})
    out, t = preprocess(imgs, table, box=32, invert=True)
    assert out.shape == (3, 32, 32)
    assert t.pixel_size.tolist() == [4.0] * 3 and (t.shift_x == 0).all()
    mask = interior_mask(32)
    np.testing.assert_allclose((-out)[:, mask].std(axis=1), 1.0)
    with pytest.raises(InputError, match="table rows"):
        preprocess(imgs, table.iloc[:2])


def test_fast_even_crop_equals_centred_crop():
    """The real-FFT path (even sizes) and the centred complex path agree on signals without
    Nyquist content (where the two only differ in how the ±M/2 planes are shared)."""
    from radsvd.data.preprocess import _downsample_centred

    rng = np.random.default_rng(4)
    N, M = 48, 24
    a = rng.standard_normal((3, N, N))
    m = np.fft.fftfreq(N) * N
    keep = (np.abs(m) < M / 2 - 1)
    a = np.fft.ifft2(np.fft.fft2(a) * (keep[:, None] & keep[None, :])).real
    np.testing.assert_allclose(downsample(a, M), _downsample_centred(a, N, M, 2) * (M / N) ** 2,
                               atol=1e-13)
    v = np.fft.ifftn(np.fft.fftn(rng.standard_normal((N, N, N)))
                     * (keep[:, None, None] & keep[None, :, None] & keep[None, None, :])).real
    np.testing.assert_allclose(downsample_volume(v, M),
                               _downsample_centred(v, N, M, 3) * (M / N) ** 3, atol=1e-13)
    # odd sizes take the centred path; band-limited content is preserved exactly
    odd = downsample(a, 25)
    assert odd.shape == (3, 25, 25)
    np.testing.assert_allclose(odd.sum(axis=(1, 2)) * (2 / 25) ** 2,
                               a.sum(axis=(1, 2)) * (2 / N) ** 2, atol=1e-12)
