"""Change evidence per pixel: change-vector magnitude, indices and edges at several scales."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

#: Gaussian kernels reach this many sigmas (scipy's default truncate).
TRUNCATE = 4.0
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


def edge_strength(gray: np.ndarray) -> np.ndarray:
    """Gradient magnitude of a lightly smoothed grey image (same units per pixel)."""
    smooth = ndimage.gaussian_filter(gray, 1.0)
    return np.hypot(ndimage.sobel(smooth, axis=0), ndimage.sobel(smooth, axis=1)) / 8.0


def change_magnitudes(difference: np.ndarray, scales_px: Sequence[float]) -> list[np.ndarray]:
    """Change-vector magnitude of the smoothed difference at each scale (noise units)."""
    bands = difference.shape[2]
    # Contiguous band planes filter faster than strided views of the interleaved image.
    planes = np.ascontiguousarray(np.moveaxis(difference, 2, 0), dtype=np.float32)
    smoothed = np.empty(difference.shape[:2], dtype=np.float32)
    magnitudes = []
    for sigma in scales_px:
        total = np.zeros(difference.shape[:2], dtype=np.float32)
        for plane in planes:
            ndimage.gaussian_filter(plane, sigma, output=smoothed)
            np.square(smoothed, out=smoothed)
            total += smoothed
        total /= bands
        magnitudes.append(np.sqrt(total, out=total))
    return magnitudes


def texture_change(
    before: np.ndarray, after: np.ndarray, valid: np.ndarray, noise: np.ndarray
) -> np.ndarray:
    """Smoothed absolute change of edge strength of the grey image, in noise units."""
    scale = float(np.mean(noise))
    gray_before = before.mean(axis=2)
    gray_after = np.where(valid, after.mean(axis=2), gray_before)
    change = np.abs(edge_strength(gray_after) - edge_strength(gray_before)) / scale
    return ndimage.gaussian_filter(change.astype(np.float32), TEXTURE_SIGMA_PX)


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
    difference = standardised_difference(before, after, valid, noise)
    magnitudes = change_magnitudes(difference, scales_px)
    score = np.mean(magnitudes, axis=0)
    if texture_weight:
        score += texture_weight * texture_change(before, after, valid, noise)
    # Coarse scales find weak but extended change; the unsmoothed magnitude keeps the outline from
    # spreading past the real edge of a strong change.
    np.minimum(score, np.sqrt(np.mean(difference**2, axis=2)), out=score)
    score[~valid] = 0.0
    return score.astype(np.float32, copy=False)
