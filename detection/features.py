"""Change evidence per pixel: change-vector magnitude, indices and edges at several scales."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import cv2
import numpy as np
from scipy import ndimage

#: A Gaussian smoothing of a 2-D image: (image, sigma, output=None) -> smoothed image.
Smoother = Callable[..., np.ndarray]
#: Gaussian kernels reach this many sigmas (scipy's default truncate).
TRUNCATE = 4.0
# The detector runs its tiles on threads of its own (`rs_tiles.each_window`); OpenCV's own
# threads inside each filter would only contend with them for the same cores.
cv2.setNumThreads(1)
#: Smoothing of the edge-strength change, in pixels.
TEXTURE_SIGMA_PX = 2.0
EPS = 1e-6


def resolve_roles(roles: Sequence[str | None] | None, bands: int) -> tuple[str | None, ...]:
    """Band roles, guessing the common orders when the file did not say.

    Three unnamed bands are taken as red, green, blue (PNG/JPEG order); four as blue, green,
    red, near-infrared (the order of Sentinel-2 10 m and most 4-band satellite products).
    """
    if roles is not None and len(roles) == bands and any(role is not None for role in roles):
        return tuple(roles)
    if bands == 3:
        return ("red", "green", "blue")
    if bands == 4:
        return ("blue", "green", "red", "nir")
    return (None,) * bands


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # Index of two non-negative bands; a tiny denominator means "no signal", i.e. 0.
    total = a + b
    return np.where(np.abs(total) > EPS, (a - b) / np.where(total == 0, 1, total), 0).astype(
        np.float32
    )


def spectral_indices(image: np.ndarray, roles: Sequence[str | None]) -> dict[str, np.ndarray]:
    """Normalised-difference indices that the available bands allow.

    Parameters
    ----------
    image : ndarray of shape (rows, cols, bands), float
    roles : sequence of str or None, length bands

    Returns
    -------
    dict of str to ndarray of shape (rows, cols), float32
        Always "brightness" (mean of the visible bands, else of all bands; image units);
        "ndvi" with red and NIR; "ndwi" with green and NIR; "bare" (bare-soil index:
        SWIR-based with SWIR, else red vs green redness); "built" (NDBI) with SWIR and NIR.
    """
    band = {role: image[:, :, i] for i, role in enumerate(roles) if role}
    visible = [i for i, role in enumerate(roles) if role in ("blue", "green", "red")]
    # Visible albedo: with NIR in the mean, green crops would look as bright as concrete.
    out = {"brightness": image[:, :, visible or slice(None)].mean(axis=2, dtype=np.float32)}
    if "red" in band and "nir" in band:
        out["ndvi"] = _ratio(band["nir"], band["red"])
    if "green" in band and "nir" in band:
        out["ndwi"] = _ratio(band["green"], band["nir"])
    if {"swir1", "red", "nir", "blue"} <= band.keys():
        out["bare"] = _ratio(band["swir1"] + band["red"], band["nir"] + band["blue"])
    elif "red" in band and "green" in band:
        out["bare"] = _ratio(band["red"], band["green"])
    if "swir1" in band and "nir" in band:
        out["built"] = _ratio(band["swir1"], band["nir"])
    return out


def gaussian(image: np.ndarray, sigma: float, output: np.ndarray | None = None) -> np.ndarray:
    """`scipy.ndimage.gaussian_filter(image, sigma)` (mode "reflect", `TRUNCATE` sigmas).

    A 2-D float32 image goes through OpenCV's separable filter with the same kernel and
    border: several times faster, equal up to float32 rounding (a few 1e-7; the detector's
    masks and objects came out identical on the shared pairs and the benchmark pair). Other
    images, and one no wider than the kernel's radius, go through SciPy.

    For the unsupervised score only: a trained model's features stay on SciPy's filter, as
    the model was trained on them (rounding this small still moved its cross-validated F1).
    """
    radius = int(TRUNCATE * sigma + 0.5)
    if image.dtype != np.float32 or image.ndim != 2 or min(image.shape) <= radius:
        return ndimage.gaussian_filter(image, sigma, output=output, truncate=TRUNCATE)
    size = 2 * radius + 1
    return cv2.GaussianBlur(
        image, (size, size), sigma, dst=output, sigmaY=sigma, borderType=cv2.BORDER_REFLECT
    )


#: Sobel's difference along an axis and its 1-2-1 smoothing across it (scipy's weights).
_SOBEL_DIFFERENCE = np.array([-1.0, 0.0, 1.0], dtype=np.float32)
_SOBEL_SMOOTHING = np.array([1.0, 2.0, 1.0], dtype=np.float32)
_SOBEL_NONE = np.array([1.0], dtype=np.float32)
#: Rows filtered at a time by `_sobel_strips`: its double-precision strips stay in cache.
SOBEL_STRIP_ROWS = 128


def _opencv_sobel_takes(image: np.ndarray) -> bool:
    return image.dtype == np.float32 and image.ndim == 2 and min(image.shape) >= 2


def _sobel_strips(image: np.ndarray, axes: Sequence[int]) -> Iterator[tuple[slice, list]]:
    """Row strips of `scipy.ndimage.sobel(image, axis)` for each of `axes`, in double
    precision: rounded to float32, they are SciPy's values bit for bit.

    OpenCV's separable filter in SciPy's order: the difference along the axis in float32
    (one rounding, as SciPy's), then the 1-2-1 smoothing across it in double precision,
    to be rounded once to float32 (SciPy sums its lines in double; a float32 sum would round
    twice and differ in the last bit on about 0.1 % of pixels, and `cv2.Sobel`, which also
    smooths first for the derivative along rows, differs on most of them).
    The strips yielded are views of buffers reused for the next strip.
    """
    image = np.ascontiguousarray(image)
    rows, cols = image.shape
    kernels = []
    for axis in axes:
        if axis % 2 == 0:
            kernels.append(((_SOBEL_NONE, _SOBEL_DIFFERENCE), (_SOBEL_SMOOTHING, _SOBEL_NONE)))
        else:
            kernels.append(((_SOBEL_DIFFERENCE, _SOBEL_NONE), (_SOBEL_NONE, _SOBEL_SMOOTHING)))
    # The same few buffers for every strip: new ones would be fresh memory each time.
    height = min(SOBEL_STRIP_ROWS, rows) + 2
    difference = np.empty((height, cols), dtype=np.float32)
    smoothed = [np.empty((height, cols), dtype=np.float64) for _ in axes]
    for top in range(0, rows, SOBEL_STRIP_ROWS):
        bottom = min(top + SOBEL_STRIP_ROWS, rows)
        # One row of context each side: the 3×3 result of a row needs its neighbours, and at
        # the image's own edges the strip's reflected border is the image's.
        low, high = max(top - 1, 0), min(bottom + 1, rows)
        strip = image[low:high]
        derivatives = []
        for (first, second), out in zip(kernels, smoothed, strict=True):
            part, result = difference[: high - low], out[: high - low]
            cv2.sepFilter2D(strip, cv2.CV_32F, *first, dst=part, borderType=cv2.BORDER_REFLECT)
            cv2.sepFilter2D(part, cv2.CV_64F, *second, dst=result, borderType=cv2.BORDER_REFLECT)
            derivatives.append(result[top - low : bottom - low])
        yield slice(top, bottom), derivatives


def scipy_sobel_magnitude(image: np.ndarray) -> np.ndarray:
    """Gradient magnitude of `image`'s Sobel derivatives, SciPy's filters."""
    return np.hypot(ndimage.sobel(image, axis=0), ndimage.sobel(image, axis=1))


def sobel_magnitude(image: np.ndarray) -> np.ndarray:
    """`scipy_sobel_magnitude(image)`, equal bit for bit, about three times faster.

    A 2-D float32 image goes through OpenCV (see `_sobel_strips`) and the magnitude of each
    strip is taken in double precision and rounded once to float32, which is how glibc's
    `hypotf` (NumPy's `hypot` of float32 on Linux) computes it (the unit tests hold the two
    equal). Other images, and any result that is not finite (`hypotf` treats infinities
    apart), go through SciPy.
    """
    if not _opencv_sobel_takes(image):
        return scipy_sobel_magnitude(image)
    out = np.empty(image.shape, dtype=np.float32)
    rounded = np.empty((min(SOBEL_STRIP_ROWS, image.shape[0]), image.shape[1]), np.float32)
    for rows, derivatives in _sobel_strips(image, (0, 1)):
        # SciPy's derivatives are float32: round them first (in place, through a float32
        # buffer), then take the magnitude of the rounded values in double precision.
        for derivative in derivatives:
            part = rounded[: len(derivative)]
            np.copyto(part, derivative, casting="same_kind")
            np.copyto(derivative, part)
        out[rows] = cv2.magnitude(*derivatives)
    if not np.isfinite(out).all():
        return scipy_sobel_magnitude(image)
    return out


def feature_halo_px(scales_px: Sequence[float]) -> int:
    """Pixels of context a tile needs on each side for exact features at its core."""
    widest = max(max(scales_px), TEXTURE_SIGMA_PX + 1.0)
    return int(TRUNCATE * widest + 0.5) + 2


def standardised_difference(
    before: np.ndarray, after: np.ndarray, valid: np.ndarray, noise: np.ndarray
) -> np.ndarray:
    """(after − before) / noise per band, zero where either date has no data.

    Returns
    -------
    ndarray of shape (rows, cols, bands), float32, noise units
    """
    difference = (after - before) / noise.astype(np.float32)
    difference[~valid] = 0.0
    return difference.astype(np.float32, copy=False)


def edge_strength(
    gray: np.ndarray,
    smooth_with: Smoother = ndimage.gaussian_filter,
    magnitude_with: Callable[[np.ndarray], np.ndarray] = scipy_sobel_magnitude,
) -> np.ndarray:
    """Gradient magnitude of a lightly smoothed grey image (same units per pixel)."""
    magnitude = magnitude_with(smooth_with(gray, 1.0))
    magnitude /= 8.0
    return magnitude


def change_magnitudes(difference: np.ndarray, scales_px: Sequence[float]) -> list[np.ndarray]:
    """Change-vector magnitude of the smoothed difference at each scale (noise units), with
    SciPy's filter: these are trained model features (`detection.train`), which a saved model
    expects exactly as they were computed when it was trained."""
    # Contiguous band planes filter faster than strided views of the interleaved image.
    return _plane_magnitudes(as_planes(difference), scales_px, ndimage.gaussian_filter)


def _plane_magnitudes(
    planes: np.ndarray, scales_px: Sequence[float], smooth_with: Smoother
) -> list[np.ndarray]:
    bands = len(planes)
    smoothed = np.empty(planes.shape[1:], dtype=np.float32)
    magnitudes = []
    for sigma in scales_px:
        total = np.zeros(planes.shape[1:], dtype=np.float32)
        for plane in planes:
            smooth_with(plane, sigma, output=smoothed)
            np.square(smoothed, out=smoothed)
            total += smoothed
        total /= bands
        magnitudes.append(np.sqrt(total, out=total))
    return magnitudes


def _mean_magnitude(
    planes: np.ndarray, scales_px: Sequence[float], smooth_with: Smoother
) -> np.ndarray:
    """The mean of `_plane_magnitudes` over the scales, the same values bit for bit, in
    three window-sized arrays instead of five: every tile makes new ones, and new memory
    may have to be mapped and cleared by the system first."""
    bands = len(planes)
    smoothed = np.empty(planes.shape[1:], dtype=np.float32)
    score = np.empty(planes.shape[1:], dtype=np.float32)
    total = score  # the first scale's magnitude is the start of the sum
    for scale, sigma in enumerate(scales_px):
        if scale == 1:
            total = np.empty(planes.shape[1:], dtype=np.float32)
        # 0 + x is x: the first band's square starts the total (`_plane_magnitudes` adds it
        # to zeros).
        smooth_with(planes[0], sigma, output=total)
        np.square(total, out=total)
        for plane in planes[1:]:
            smooth_with(plane, sigma, output=smoothed)
            np.square(smoothed, out=smoothed)
            total += smoothed
        total /= bands
        np.sqrt(total, out=total)
        if scale:
            score += total
    score /= len(scales_px)
    return score


def as_planes(image: np.ndarray) -> np.ndarray:
    """(rows, cols, bands) → contiguous float32 band planes (bands, rows, cols)."""
    return np.ascontiguousarray(np.moveaxis(image, 2, 0), dtype=np.float32)


#: From this many bands on, numpy sums a pixel's bands pairwise rather than in order.
PAIRWISE_BANDS = 8


def band_mean(planes: np.ndarray) -> np.ndarray:
    """Mean over the bands of (bands, rows, cols) planes, float32, equal bit for bit to
    ``image.mean(axis=2)`` of the pixel-interleaved image (numpy's summation order)."""
    if len(planes) >= PAIRWISE_BANDS:
        return np.ascontiguousarray(np.moveaxis(planes, 0, -1)).mean(axis=2)
    total = planes[0].copy()
    for plane in planes[1:]:
        total += plane
    total /= len(planes)
    return total


def texture_change(
    before: np.ndarray, after: np.ndarray, valid: np.ndarray, noise: np.ndarray
) -> np.ndarray:
    """Smoothed absolute change of edge strength of the grey image, in noise units."""
    return _grey_texture(band_mean(as_planes(before)), band_mean(as_planes(after)), valid, noise)


def _grey_texture(
    gray_before: np.ndarray, gray_after: np.ndarray, valid: np.ndarray, noise: np.ndarray
) -> np.ndarray:
    """`texture_change` from the grey images (band means) of the two dates."""
    scale = float(np.mean(noise))
    if not valid.all():
        gray_after = np.where(valid, gray_after, gray_before)
    # In place where the values allow it: fewer new window-sized arrays (see _mean_magnitude).
    change = edge_strength(gray_after, gaussian, sobel_magnitude)
    edges_before = edge_strength(gray_before, gaussian, sobel_magnitude)
    np.subtract(change, edges_before, out=change)
    np.abs(change, out=change)
    change /= scale
    change = change.astype(np.float32, copy=False)
    # The before edges are not needed any more: their array takes the result (float32 planes,
    # as the detector reads them).
    spare = edges_before if edges_before.dtype == np.float32 else None
    return gaussian(change, TEXTURE_SIGMA_PX, output=spare)


def change_score(
    before: np.ndarray,
    after: np.ndarray,
    valid: np.ndarray,
    *,
    noise: np.ndarray,
    scales_px: Sequence[float],
    texture_weight: float,
) -> np.ndarray:
    """Unsupervised change score: multi-scale change-vector magnitude plus edge change.

    Parameters
    ----------
    before, after : ndarray of shape (rows, cols, bands), float32
        Same grid, after already normalised into before units.
    valid : ndarray of shape (rows, cols), bool
    noise : ndarray of shape (bands,)
        Unchanged-difference scale per band (before units).

    Returns
    -------
    ndarray of shape (rows, cols), float32
        Score in noise units, zero where a date has no data: the mean magnitude over the
        scales plus the weighted edge change, capped by the unsmoothed magnitude.
    """
    return plane_change_score(
        as_planes(before),
        as_planes(after),
        valid,
        noise=noise,
        scales_px=scales_px,
        texture_weight=texture_weight,
    )


def plane_change_score(
    before: np.ndarray,
    after: np.ndarray,
    valid: np.ndarray,
    *,
    noise: np.ndarray,
    scales_px: Sequence[float],
    texture_weight: float,
) -> np.ndarray:
    """`change_score` of band planes: before, after of shape (bands, rows, cols), float32.

    The filters work on band planes, so an image read plane by plane is never interleaved.
    """
    difference = np.empty_like(before, dtype=np.float32)
    for band, scale in enumerate(noise.astype(np.float32)):
        np.subtract(after[band], before[band], out=difference[band])
        difference[band] /= scale
    grays = (band_mean(before), band_mean(after)) if texture_weight else None
    return difference_change_score(
        difference,
        grays,
        valid,
        noise=noise,
        scales_px=scales_px,
        texture_weight=texture_weight,
    )


def difference_change_score(
    difference: np.ndarray,
    grays: tuple[np.ndarray, np.ndarray] | None,
    valid: np.ndarray,
    *,
    noise: np.ndarray,
    scales_px: Sequence[float],
    texture_weight: float,
) -> np.ndarray:
    """`plane_change_score` from all it needs of the two dates, so that a reader can make it
    in one pass over their samples (`rs_tiles.Source.read_score_inputs`).

    Parameters
    ----------
    difference : ndarray of shape (bands, rows, cols), float32
        (after − before) / noise per band, float32 arithmetic; overwritten here.
    grays : (ndarray, ndarray) of shape (rows, cols), or None
        `band_mean` of before and of after (None without texture weight).
    valid, noise, scales_px, texture_weight
        As for `change_score`.
    """
    invalid = None if valid.all() else ~valid
    if invalid is not None:
        difference[:, invalid] = 0.0
    score = _mean_magnitude(difference, scales_px, gaussian)
    if texture_weight:
        assert grays is not None
        texture = _grey_texture(*grays, valid, noise)
        texture *= float(texture_weight)
        score += texture
    # Coarse scales find weak but extended change; the unsmoothed magnitude keeps the outline from
    # spreading past the real edge of a strong change.
    np.square(difference, out=difference)
    unsmoothed = band_mean(difference)
    np.minimum(score, np.sqrt(unsmoothed, out=unsmoothed), out=score)
    if invalid is not None:
        score[invalid] = 0.0
    return score


def local_structure(
    gray_before: np.ndarray, gray_after: np.ndarray, *, sigma: float, floor: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Local contrast of each date and the local correlation between them.

    A new roof or a dug plot changes the pattern of a neighbourhood, while haze, season
    and sun change its level and contrast: the correlation (the structure term of SSIM)
    tells the two apart better than a difference of values.

    Parameters
    ----------
    gray_before, gray_after : ndarray of shape (rows, cols), float32
        Grey images in the same units.
    sigma : float
        Gaussian window, in pixels.
    floor : float
        Contrast (image units) below which a neighbourhood counts as flat, so flat
        unchanged ground correlates at 1 instead of at random.

    Returns
    -------
    contrast_before, contrast_after : ndarray of shape (rows, cols), float32
        Local standard deviation divided by `floor`.
    correlation : ndarray of shape (rows, cols), float32
        In [-1, 1]; 1 where the pattern is the same on both dates.
    """
    mean_b = ndimage.gaussian_filter(gray_before, sigma)
    mean_a = ndimage.gaussian_filter(gray_after, sigma)
    var_b = np.maximum(ndimage.gaussian_filter(gray_before * gray_before, sigma) - mean_b**2, 0)
    var_a = np.maximum(ndimage.gaussian_filter(gray_after * gray_after, sigma) - mean_a**2, 0)
    covariance = ndimage.gaussian_filter(gray_before * gray_after, sigma) - mean_b * mean_a
    flat = floor * floor
    correlation = (covariance + flat) / np.sqrt((var_b + flat) * (var_a + flat))
    return (
        (np.sqrt(var_b) / floor).astype(np.float32),
        (np.sqrt(var_a) / floor).astype(np.float32),
        correlation.astype(np.float32),
    )


def gradient_agreement(
    gray_before: np.ndarray, gray_after: np.ndarray, *, sigma: float, floor: float
) -> np.ndarray:
    """Local agreement of the two dates' gradient directions, in [-1, 1].

    Edges that stay where they were (field borders, roads) agree whatever the illumination;
    a new building brings edges of its own.

    Parameters
    ----------
    gray_before, gray_after : ndarray of shape (rows, cols), float32
    sigma : float
        Gaussian window over which gradients are compared, in pixels.
    floor : float
        Gradient strength (image units per pixel) below which a neighbourhood counts as
        edgeless, so that it agrees (1) rather than at random.

    Returns
    -------
    ndarray of shape (rows, cols), float32
    """
    grad_b = [ndimage.sobel(ndimage.gaussian_filter(gray_before, 1.0), axis=i) for i in (0, 1)]
    grad_a = [ndimage.sobel(ndimage.gaussian_filter(gray_after, 1.0), axis=i) for i in (0, 1)]
    dot = ndimage.gaussian_filter(grad_b[0] * grad_a[0] + grad_b[1] * grad_a[1], sigma)
    norm_b = ndimage.gaussian_filter(grad_b[0] ** 2 + grad_b[1] ** 2, sigma)
    norm_a = ndimage.gaussian_filter(grad_a[0] ** 2 + grad_a[1] ** 2, sigma)
    # Sobel weights sum to 8 per axis: a floor in units per pixel is 8× that in Sobel units.
    flat = (8.0 * floor) ** 2
    return ((dot + flat) / np.sqrt((norm_b + flat) * (norm_a + flat))).astype(np.float32)
