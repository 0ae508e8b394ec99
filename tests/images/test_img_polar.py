import numpy as np
import pytest

import img_helpers as hb
from radsvd import InputError, PolarGrid
from radsvd.images import (FBSource, fb_to_polar, images_to_fb, polar_to_images, to_fb,
                           to_polar)


def blob_case():
    # off-centre, anisotropic, tilted: pins the x/y axis convention and the sign of k·x
    return [dict(amp=1.0, cx=0.21, cy=-0.13, sx=0.12, sy=0.07, th=0.3)]


def test_polar_samples_equal_closed_form_fourier_transform():
    N, grid = 64, PolarGrid(K=30)
    blobs = blob_case()
    p = to_polar(hb.image(blobs, N), grid)
    kx, ky = grid.points()
    ref = hb.fourier(blobs, kx, ky)
    # The pixel sum (eq. 32) equals the continuous FT up to aliasing ~exp(-(2π/dx-K)²s²/2)
    # (e^-100 here) and truncation at the box edge, ≥ 0.79 = 6.6 σ away: e^-21.7 ≈ 4e-10;
    # finufft eps = 1e-12.  Both far below the required 1e-8.
    rel = np.linalg.norm(p[0] - ref) / np.linalg.norm(ref)
    assert rel <= 1e-8
    # swapping the axes (x <-> y) would break it: the convention is pinned
    ref_swapped = hb.fourier(blobs, ky, kx)
    assert np.linalg.norm(p[0] - ref_swapped) / np.linalg.norm(ref) > 0.1


def test_odd_box_and_float32_input():
    N, grid = 65, PolarGrid(K=20)
    blobs = blob_case()
    img32 = hb.image(blobs, N).astype(np.float32)
    kx, ky = grid.points()
    ref = hb.fourier(blobs, kx, ky)
    # double precision on float32 pixels: relative rounding 6e-8 per pixel, sum of ~N²
    # terms → ≲ 1e-6
    p64 = to_polar(img32, grid, precision="double")
    assert np.linalg.norm(p64[0] - ref) / np.linalg.norm(ref) < 1e-6
    # the default for float32 data: single precision at eps 1e-6 (finufft's relative l2
    # error ~eps) on top of the same pixel rounding: < 2e-6
    p32 = to_polar(img32, grid)
    assert p32.dtype == np.complex128
    rel = np.linalg.norm(p32[0] - ref) / np.linalg.norm(ref)
    assert rel < 2e-6
    # ... and it is the single-precision transform: it differs from double by far more
    # than double's own 1e-12
    assert np.linalg.norm(p32 - p64) / np.linalg.norm(p64) > 1e-9


def test_precision_follows_the_data_and_can_be_overridden():
    from radsvd._nufft import transform_precision

    assert transform_precision(np.float32) == ("single", 1e-6)
    assert transform_precision(np.dtype(">f4")) == ("single", 1e-6)
    assert transform_precision(np.int16) == ("single", 1e-6)
    assert transform_precision(np.float64) == ("double", 1e-12)
    assert transform_precision(np.int32) == ("double", 1e-12)
    assert transform_precision(np.float32, eps=1e-12) == ("double", 1e-12)
    assert transform_precision(np.float32, eps=1e-4) == ("single", 1e-4)
    assert transform_precision(np.float64, eps=1e-6) == ("double", 1e-6)
    assert transform_precision(np.float64, precision="single") == ("single", 1e-6)
    assert transform_precision(np.float32, precision="double") == ("double", 1e-12)
    with pytest.raises(InputError, match="single precision"):
        transform_precision(np.float32, eps=1e-9, precision="single")
    with pytest.raises(InputError, match="precision must be"):
        transform_precision(np.float32, precision="half")
    for eps in (0, 1, -1e-3, float("nan"), True, "1e-6"):
        with pytest.raises(InputError, match="eps"):
            transform_precision(np.float32, eps=eps)
    # an explicit eps selects double precision for float32 images: same result as float64
    rng = np.random.default_rng(3)
    grid = PolarGrid(K=12)
    img = rng.standard_normal((2, 24, 24)).astype(np.float32)
    a = to_polar(img, grid, eps=1e-12)
    b = to_polar(img.astype(np.float64), grid)
    assert np.max(np.abs(a - b)) <= 1e-12 * np.max(np.abs(b))


def test_fb_coefficients_symmetry_and_roundtrip():
    rng = np.random.default_rng(0)
    grid = PolarGrid(K=12)
    imgs = rng.standard_normal((3, 24, 24))
    p = to_polar(imgs, grid)
    fb = to_fb(p)
    assert fb.shape == (3, grid.R, grid.Q // 2 + 1)
    # eq. 34 by direct summation
    q = np.arange(grid.Q // 2 + 1)
    direct = np.einsum("nrj,qj->nrq", p, np.exp(-1j * np.outer(q, grid.psi))) / grid.Q
    assert np.max(np.abs(fb - direct)) < 1e-13 * np.max(np.abs(fb))
    # real images: a(k, -q) = (-1)^q conj(a(k, q)), checked on the full FFT
    full = np.fft.fft(p, axis=-1) / grid.Q
    for qq in range(1, grid.Q // 2):
        assert np.allclose(full[..., grid.Q - qq], (-1) ** qq * np.conj(full[..., qq]),
                           rtol=0, atol=1e-13 * np.abs(full).max())
    assert np.max(np.abs(fb_to_polar(fb, grid.Q) - p)) < 1e-13 * np.abs(p).max()


def test_polar_to_images_reconstructs_band_limited_blob():
    N, grid = 48, PolarGrid(K=70)  # Nyquist 75.4; the blob's FT at K is e^-(70·0.1)²/2 ≈ 2e-11
    blobs = [dict(amp=1.0, cx=0.1, cy=-0.2, sx=0.1, sy=0.13, th=0.5)]
    img = hb.image(blobs, N)
    back = polar_to_images(to_fb(to_polar(img, grid)), grid, N)
    # quadrature of the inverse (eq. 30) is exact to ~1e-9 for this smooth band-limited FT
    assert np.max(np.abs(back[0] - img)) < 1e-7


def test_fbsource_matches_images_to_fb():
    rng = np.random.default_rng(1)
    grid = PolarGrid(K=10)
    imgs = rng.standard_normal((7, 20, 20))
    src = FBSource(imgs, grid)
    assert src.shape == (7, grid.R, grid.n_freq)
    assert np.array_equal(src[2:5], images_to_fb(imgs[2:5], grid, threads=1))
    # the plan is reused: same values on a second call and for other slice lengths
    assert np.array_equal(src[2:5], images_to_fb(imgs[2:5], grid, threads=1))
    assert np.array_equal(src[0:7][2:5], src[2:5])
    # all(): the whole stack with all threads, equal to the slices to finufft's rounding
    assert np.allclose(src.all(), src[0:7], rtol=0, atol=1e-12 * np.abs(src[0:7]).max())
    # float32 stacks: single precision, as images_to_fb
    s32 = FBSource(imgs.astype(np.float32), grid)
    assert s32.precision == "single" and s32.eps == 1e-6
    assert np.array_equal(s32[1:4], images_to_fb(imgs[1:4].astype(np.float32), grid,
                                                 threads=1))
    assert FBSource(imgs.astype(np.float32), grid, eps=1e-12).precision == "double"


def test_images_to_fb_is_to_fb_of_to_polar():
    rng = np.random.default_rng(2)
    grid = PolarGrid(K=10)
    imgs = rng.standard_normal((5, 20, 20))
    ref = to_fb(to_polar(imgs, grid))
    # double: the same sums, the scale applied after the FFT instead of before
    assert np.max(np.abs(images_to_fb(imgs, grid) - ref)) < 1e-13 * np.abs(ref).max()
    # single: the FFT over ψ in single precision too (Q = 22 terms, rounding ~1e-7)
    i32 = imgs.astype(np.float32)
    ref32 = to_fb(to_polar(i32, grid))
    fb32 = images_to_fb(i32, grid)
    assert fb32.dtype == np.complex128
    assert np.max(np.abs(fb32 - ref32)) < 1e-6 * np.abs(ref32).max()


@pytest.mark.parametrize("bad, match", [
    (np.zeros((2, 16, 18)), "square"),
    (np.zeros((0, 16, 16)), "empty"),
    (np.zeros((2, 3, 16, 16)), "stack"),
    (np.full((1, 16, 16), np.nan), "NaN"),
    (np.full((1, 16, 16), np.inf), "non-finite"),
    (np.zeros((1, 16, 16), complex), "real"),
])
def test_bad_images(bad, match):
    with pytest.raises(InputError, match=match):
        to_polar(bad, PolarGrid(K=10))


def test_K_beyond_nyquist():
    with pytest.raises(InputError, match="Nyquist"):
        to_polar(np.zeros((1, 16, 16)), PolarGrid(K=30))  # πN/2 = 25.1
    with pytest.raises(InputError, match="Nyquist"):
        FBSource(np.zeros((1, 16, 16)), PolarGrid(K=30))


def test_bad_fb_shapes():
    with pytest.raises(InputError, match="Q even"):
        to_fb(np.zeros((1, 3, 5), complex))
    with pytest.raises(InputError, match="frequencies"):
        fb_to_polar(np.zeros((1, 3, 4), complex), 8)


def test_fbsource_streams_through_engine_in_parallel():
    from radsvd._jit import threads
    from radsvd.images import align_images

    rng = np.random.default_rng(5)
    grid = PolarGrid(K=10)
    imgs = rng.standard_normal((23, 20, 20))
    tg = rng.standard_normal((4, 20, 20))
    fb_t = images_to_fb(tg, grid)
    ref = align_images(images_to_fb(imgs, grid), fb_t, grid, all_pairs=True)
    with threads(2):  # finufft runs inside the worker threads, one thread each
        r = align_images(FBSource(imgs, grid), fb_t, grid, all_pairs=True, tile=(3, 2))
    # finufft at eps 1e-12 with different thread counts: agreement to ~1e-12 relative
    assert np.max(np.abs(r.scores - ref.scores)) < 1e-10 * np.max(np.abs(ref.scores))
    assert np.array_equal(r.best_target, ref.best_target)
