"""Preprocessing of particle images and maps, as in the paper's reference pipeline.

Steps (each a function; :func:`preprocess` chains them):
1. :func:`replace_edge_artifacts` – pixels that are constant along a border strip (padding
   from extraction at a micrograph edge) or extreme outliers (|z| > ``z_max`` robust
   standard deviations, hot pixels) are replaced by Gaussian noise with the robust mean and
   spread of the remaining pixels (seeded: deterministic).
2. :func:`normalize` – mean 0, standard deviation 1 over the interior disc (radius
   ``radius`` × N/2 pixels).
3. :func:`center` – translate each image by +t, t its RELION origin offset (rlnOriginX/Y,
   Å; the particle sits at −t, see :mod:`radsvd.data.simulate`), by a Fourier phase.
4. :func:`downsample` – Fourier cropping to N' pixels (pixel size p·N/N'); the samples keep
   representing the same continuous image (values are not rescaled by N'/N).
5. optional contrast inversion (multiply by −1).
Maps: :func:`downsample_volume` (Fourier cropping in 3D).
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from radsvd._jit import fft_workers
from radsvd._validate import InputError, real_stack


def _keep_single(func):
    """Return a single image (N, N) when given one, a stack otherwise."""
    import functools

    @functools.wraps(func)
    def wrapper(images, *args, **kwargs):
        out = func(images, *args, **kwargs)
        if np.ndim(images) == 2:
            return (out[0][0], out[1]) if isinstance(out, tuple) else out[0]
        return out

    return wrapper


def interior_mask(N: int, radius: float = 1.0) -> np.ndarray:
    """Boolean disc of radius ``radius``·N/2 pixels around pixel N//2 (both axes)."""
    if not 0 < radius <= np.sqrt(2):
        raise InputError(f"radius must be in (0, √2] (fraction of N/2), got {radius!r}")
    m = np.arange(N) - N // 2
    return (m[None, :] ** 2 + m[:, None] ** 2) <= (radius * N / 2.0) ** 2


class BlankImageError(InputError):
    """An image that carries no signal (constant); ``index`` is its 0-based position."""

    def __init__(self, index: int, what: str):
        self.index, self.what = index, what
        super().__init__(f"image {index + 1} (1-based) {what}")


@_keep_single
def normalize(images, radius: float = 1.0) -> np.ndarray:
    """Images shifted and scaled to mean 0 and std 1 over the interior disc (float64)."""
    imgs = real_stack(images, "images", 2)
    mask = interior_mask(imgs.shape[-1], radius)
    vals = imgs[:, mask]
    mu = vals.mean(axis=1)
    sd = vals.std(axis=1)
    flat = np.flatnonzero(sd <= 0)
    if flat.size:
        raise BlankImageError(int(flat[0]), f"is constant on its interior ({flat.size} such "
                              "image(s)); cannot scale it to unit variance")
    return (imgs - mu[:, None, None]) / sd[:, None, None]


@_keep_single
def replace_edge_artifacts(images, z_max: float = 8.0, seed: int = 0,
                           chunk: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Replace padding strips and outlier pixels by matched noise; returns (images, counts).

    A border row or column (from the outside in) that is constant belongs to a padding strip;
    a pixel whose robust z-score (median, 1.4826·MAD, estimated on every other pixel in each
    direction) exceeds ``z_max`` is an outlier.
    ``counts[i]`` is the number of pixels replaced in image i.
    """
    imgs = real_stack(images, "images", 2).copy()
    rng = np.random.default_rng(seed)
    n, N, _ = imgs.shape
    counts = np.zeros(n, dtype=np.int64)
    for start in range(0, n, chunk):
        a = imgs[start:start + chunk]
        bad = _padding_strips(a)
        # robust statistics from every other pixel in each direction (a quarter of them)
        sub, subbad = a[:, ::2, ::2], bad[:, ::2, ::2]
        if bad.any():
            few = np.flatnonzero((~subbad).sum(axis=(1, 2)) < 16)
            if few.size:
                raise BlankImageError(start + int(few[0]), "is (almost) entirely constant "
                                      "(a blank particle?)")
            masked = np.where(subbad, np.nan, sub)
            med = np.nanmedian(masked, axis=(1, 2))
            mad = 1.4826 * np.nanmedian(np.abs(masked - med[:, None, None]), axis=(1, 2))
        else:
            med = np.median(sub, axis=(1, 2))
            mad = 1.4826 * np.median(np.abs(sub - med[:, None, None]), axis=(1, 2))
        bad |= (mad > 0)[:, None, None] & (np.abs(a - med[:, None, None])
                                           > z_max * mad[:, None, None])
        k = bad.sum(axis=(1, 2))
        for i in np.flatnonzero(k):  # image order: deterministic draws
            a[i][bad[i]] = rng.normal(med[i], mad[i] if mad[i] > 0 else 1.0, int(k[i]))
        counts[start:start + chunk] = k
    return imgs, counts


def _padding_strips(a) -> np.ndarray:
    """Mask of border rows/columns that are constant, from each edge inwards: (c, N, N)."""
    rows = a.max(axis=2) == a.min(axis=2)
    cols = a.max(axis=1) == a.min(axis=1)

    def runs(flags):
        lead = np.cumprod(flags, axis=1).astype(bool)
        trail = np.cumprod(flags[:, ::-1], axis=1)[:, ::-1].astype(bool)
        return lead | trail

    return runs(rows)[:, :, None] | runs(cols)[:, None, :]


@_keep_single
def shift_images(images, sx, sy, chunk: int = 64) -> np.ndarray:
    """Translate images by (sx, sy) pixels (content moves to +s) with a Fourier phase."""
    imgs = real_stack(images, "images", 2)
    n, N, _ = imgs.shape
    sx = np.broadcast_to(np.asarray(sx, np.float64), (n,))
    sy = np.broadcast_to(np.asarray(sy, np.float64), (n,))
    fy, fx = np.fft.fftfreq(N), np.fft.rfftfreq(N)
    out = np.empty_like(imgs)
    for start in range(0, n, chunk):
        sl = slice(start, start + chunk)
        F = scipy.fft.rfft2(imgs[sl], workers=fft_workers())
        F *= np.exp(-2j * np.pi * (fx[None, None, :] * sx[sl, None, None]
                                   + fy[None, :, None] * sy[sl, None, None]))
        out[sl] = scipy.fft.irfft2(F, s=(N, N), workers=fft_workers())
    return out


def center(images, shift_x_A, shift_y_A, pixel_size: float) -> np.ndarray:
    """Centre particles with RELION origin offsets (Å, rlnOriginX/YAngst): translate by +offset."""
    return shift_images(images, np.asarray(shift_x_A) / pixel_size,
                        np.asarray(shift_y_A) / pixel_size)


def _crop_indices(N: int, M: int) -> slice:
    c = N // 2
    return slice(c - M // 2, c - M // 2 + M)


def _rcrop(F, N: int, M: int, axes: int) -> np.ndarray:
    """Crop an rfftn spectrum of an N^d array to the M^d one: |m| < M/2 on the full axes
    (m = -M/2 kept), 0 ≤ m ≤ M/2 on the last (half) axis."""
    h = M // 2
    out = F[..., : h + 1]
    for ax in range(axes - 1):
        axis = out.ndim - axes + ax
        lo = np.take(out, np.arange(h), axis=axis)
        hi = np.take(out, np.arange(N - h, N), axis=axis)
        out = np.concatenate([lo, hi], axis=axis)
    return out


def _downsample_even(a, N: int, M: int, d: int) -> np.ndarray:
    """Fourier crop of real arrays (…, N^d) → (…, M^d) for even N and M.

    With index N//2 at the origin the centring phases (−1)^m of the N- and M-point transforms
    cancel, so plain real FFTs suffice; the Nyquist planes get the symmetric treatment of c2r.
    """
    axes = tuple(range(-d, 0))
    F = scipy.fft.rfftn(a, axes=axes, workers=fft_workers())
    G = _rcrop(F, N, M, d)
    return scipy.fft.irfftn(G, s=(M,) * d, axes=axes, workers=fft_workers())


def _downsample_centred(a, N: int, M: int, d: int) -> np.ndarray:
    """Fourier crop for any parity: centred complex transforms (slower)."""
    axes = tuple(range(-d, 0))
    F = np.fft.fftshift(scipy.fft.fftn(np.fft.ifftshift(a, axes=axes), axes=axes,
                                       workers=fft_workers()), axes=axes)
    s = _crop_indices(N, M)
    G = F[(Ellipsis,) + (s,) * d]
    return np.fft.fftshift(scipy.fft.ifftn(np.fft.ifftshift(G, axes=axes), axes=axes,
                                           workers=fft_workers()), axes=axes).real


@_keep_single
def downsample(images, M: int, chunk: int = 64) -> np.ndarray:
    """Fourier-crop images from N to M ≤ N pixels (same physical box; pixel size × N/M).

    Samples keep representing the same continuous image: values are scaled by (M/N)²·(N/M)²
    = 1 overall (the DFT normalisations cancel).  Works in chunks of ``chunk`` images.
    """
    imgs = np.asarray(images)
    if imgs.ndim == 2:
        imgs = imgs[None]
    if imgs.ndim != 3 or imgs.shape[1] != imgs.shape[2] or imgs.shape[0] == 0:
        raise InputError(f"images: expected a stack of square images, got shape {imgs.shape}")
    if imgs.dtype.kind not in "fiu":
        raise InputError(f"images: expected real numbers, got dtype {imgs.dtype}")
    N = imgs.shape[-1]
    if int(M) != M or not 2 <= M <= N:
        raise InputError(f"downsample: new box must be an integer in [2, {N}], got {M!r}")
    M = int(M)
    if M == N:
        return real_stack(imgs, "images", 2).copy()
    out = np.empty((imgs.shape[0], M, M))
    crop = _downsample_even if (N % 2 == 0 and M % 2 == 0) else _downsample_centred
    for start in range(0, imgs.shape[0], chunk):
        block = real_stack(imgs[start:start + chunk], "images", 2)
        out[start:start + chunk] = crop(block, N, M, 2)
    return out * (M / N) ** 2


def downsample_volume(volume, M: int) -> np.ndarray:
    """Fourier-crop a cubic map from N to M ≤ N voxels per side (same physical box)."""
    vol = real_stack(volume, "volume", 3)
    if vol.shape[0] != 1:
        raise InputError("downsample_volume: expected one map")
    vol = vol[0]
    N = vol.shape[0]
    if int(M) != M or not 2 <= M <= N:
        raise InputError(f"downsample_volume: new box must be an integer in [2, {N}], got {M!r}")
    M = int(M)
    if M == N:
        return vol.copy()
    crop = _downsample_even if (N % 2 == 0 and M % 2 == 0) else _downsample_centred
    return crop(vol, N, M, 3) * (M / N) ** 3


def preprocess(images, table=None, box: int | None = None, invert: bool = False,
               radius: float = 1.0, fix_edges: bool = True, center_shifts: bool = True):
    """Reference preprocessing: edges → centre → downsample → normalise → (invert).

    ``table`` (normalised STAR table) supplies shifts and pixel size; the returned copy has
    the new pixel size and zero shifts when the images were centred.  Returns (images, table).
    """
    try:
        return _preprocess(images, table, box, invert, radius, fix_edges, center_shifts)
    except BlankImageError as exc:
        if table is None or "image_name" not in table.columns:
            raise
        star = table.attrs.get("path")
        row = int(table.index[exc.index]) + 1     # the STAR row (the table keeps its index)
        raise InputError(f"{star + ': ' if star else ''}particle row {row} "
                         f"({table['image_name'].iloc[exc.index]}) {exc.what}") from None


def _preprocess(images, table, box, invert, radius, fix_edges, center_shifts):
    imgs = real_stack(images, "images", 2)
    N = imgs.shape[-1]
    if fix_edges:
        imgs, _ = replace_edge_artifacts(imgs)
    if table is not None:
        if len(table) != imgs.shape[0]:
            raise InputError(f"preprocess: {len(table)} table rows for {imgs.shape[0]} images")
        table = table.copy()
        p = table["pixel_size"].to_numpy(np.float64)
        if center_shifts and {"shift_x", "shift_y"} <= set(table.columns):
            sx, sy = table["shift_x"].to_numpy(), table["shift_y"].to_numpy()
            if np.any(sx != 0) or np.any(sy != 0):
                imgs = shift_images(imgs, sx / p, sy / p)
            table["shift_x"] = 0.0
            table["shift_y"] = 0.0
    if box is not None and box != N:
        imgs = downsample(imgs, box)
        if table is not None:
            table["pixel_size"] = table["pixel_size"] * N / box
            if "image_size" in table.columns:
                table["image_size"] = box
    imgs = normalize(imgs, radius)
    if invert:
        imgs = -imgs
    return imgs, table
