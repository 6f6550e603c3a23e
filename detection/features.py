"""Change evidence per pixel: change-vector magnitude, indices and edges at several scales."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

from detection import fused
from detection.filters import TRUNCATE, gaussian

#: Smoothing of the grey image before its edges are taken, and of the edge-strength change,
#: in pixels.
EDGE_SIGMA_PX = 1.0
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


#: The unsupervised score is filtered on a grid of every second pixel: its Gaussian scales
#: (1, 2 and 4 pixels) carry little detail finer than that, a quarter of the pixels costs a
#: quarter of the filtering, and the unsmoothed magnitude still cuts outlines at full
#: resolution.
COARSE_FACTOR = 2
#: Smoothing (sigma, full-resolution pixels) that halving already applies: the mean of two
#: pixels along each axis has a variance of a quarter pixel².
HALVING_SIGMA_PX = 0.5


def _radius(sigma: float) -> int:
    return int(TRUNCATE * sigma + 0.5)


def coarse_sigma(sigma_px: float) -> float:
    """The coarse-grid sigma that, after the halving's own smoothing, makes `sigma_px` at
    full resolution (0 when the halving alone smooths that much)."""
    return math.sqrt(max(sigma_px**2 - HALVING_SIGMA_PX**2, 0.0)) / COARSE_FACTOR


def coarse_halo_px(scales_px: Sequence[float]) -> int:
    """Context (full-resolution pixels, even) a tile needs for the coarse score at its core
    to equal the whole image's: the widest coarse filter's reach (the edge change smooths,
    takes Sobel's step and smooths again), one coarse pixel for bilinear doubling and one to
    spare, in full-resolution pixels."""
    reach = max(
        max(_radius(coarse_sigma(s)) for s in scales_px),
        _radius(coarse_sigma(EDGE_SIGMA_PX)) + 1 + _radius(coarse_sigma(TEXTURE_SIGMA_PX)),
    )
    return COARSE_FACTOR * (reach + 2)


def halve(plane: np.ndarray) -> np.ndarray:
    """The mean of each 2 × 2 block of a float32 plane; an odd edge is first padded by
    repeating its last row or column.

    In NumPy, which rounds every pixel alike: a window that starts on an even pixel halves
    to exactly the whole image's coarse pixels there. OpenCV's area resizing rounds a pixel
    differently in windows of different widths (narrow ones most, with Intel's IPP and
    without), and `cv2.pyrDown` differs in its last columns.
    """
    rows, cols = plane.shape
    if rows % 2 or cols % 2:
        plane = np.pad(plane, ((0, rows % 2), (0, cols % 2)), mode="edge")
    # Pairs of rows first: both operands are whole rows, which reads memory in order.
    pairs = plane[0::2] + plane[1::2]
    coarse = np.add(pairs[:, 0::2], pairs[:, 1::2])
    coarse *= np.float32(0.25)
    return coarse


def double(
    coarse: np.ndarray, shape: tuple[int, int], workspace: Workspace | None = None
) -> np.ndarray:
    """`halve` undone by bilinear interpolation (pixel centres aligned, edges repeated) to
    `shape` (rows, cols): twice the coarse size, or one less where the fine size was odd.

    Through OpenCV's resizing, five times faster than NumPy here. Unlike its area averaging
    (see `halve`), its bilinear doubling gives a pixel the same value in every window that
    holds it, with Intel's IPP and without (tests), though the two differ in the last bit.
    """
    rows, cols = shape
    size = (2 * coarse.shape[0], 2 * coarse.shape[1])
    doubled = (workspace or Workspace()).empty("doubled", size)
    cv2.resize(coarse, (size[1], size[0]), dst=doubled, interpolation=cv2.INTER_LINEAR)
    return doubled[:rows, :cols]


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
    """Gradient magnitude of a lightly smoothed grey image (same units per pixel), with
    SciPy's filters: a trained model feature (see `change_magnitudes`)."""
    smooth = ndimage.gaussian_filter(gray, EDGE_SIGMA_PX)
    magnitude = np.hypot(ndimage.sobel(smooth, axis=0), ndimage.sobel(smooth, axis=1))
    magnitude /= 8.0
    return magnitude


def change_magnitudes(difference: np.ndarray, scales_px: Sequence[float]) -> list[np.ndarray]:
    """Change-vector magnitude of the smoothed difference at each scale (noise units), with
    SciPy's filter: these are trained model features (`detection.train`), which a saved model
    expects exactly as they were computed when it was trained."""
    # Contiguous band planes filter faster than strided views of the interleaved image.
    planes = as_planes(difference)
    smoothed = np.empty(planes.shape[1:], dtype=np.float32)
    magnitudes = []
    for sigma in scales_px:
        total = np.zeros(planes.shape[1:], dtype=np.float32)
        for plane in planes:
            ndimage.gaussian_filter(plane, sigma, output=smoothed)
            np.square(smoothed, out=smoothed)
            total += smoothed
        total /= len(planes)
        magnitudes.append(np.sqrt(total, out=total))
    return magnitudes


def as_planes(image: np.ndarray) -> np.ndarray:
    """(rows, cols, bands) → contiguous float32 band planes (bands, rows, cols)."""
    return np.ascontiguousarray(np.moveaxis(image, 2, 0), dtype=np.float32)


class Workspace:
    """Full-resolution scratch arrays kept from one window to the next of the same thread.

    A window's temporaries are several megabytes each; allocating them anew for every window
    has the system map and clear fresh memory each time, which cost 15–20 % of the score.
    Arrays are handed out by name: one name is one array until asked for with another shape.
    """

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}

    def empty(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """A float32 array of `shape` with undefined contents."""
        array = self._arrays.get(name)
        if array is None or array.shape != shape:
            array = self._arrays[name] = np.empty(shape, dtype=np.float32)
        return array


@dataclass(frozen=True)
class ScoreInputs:
    """What `coarse_change_score` needs of a window.

    Attributes
    ----------
    differences : list of ndarray of shape (coarse rows, coarse cols), float32
        Per band, the normalised after date minus the before date in noise units, halved
        (`halve`); 0 where a date has no data.
    grey_before, grey_after : ndarray of shape (coarse rows, coarse cols), float32
        The mean over the bands of each date (after normalised), halved; 0 without data.
    unsmoothed : ndarray of shape (rows, cols), float32
        Change-vector magnitude of single full-resolution pixels (noise units), 0 without data.
    valid : ndarray of shape (rows, cols), bool
        Full-resolution pixels with data on both dates.
    """

    differences: list[np.ndarray]
    grey_before: np.ndarray
    grey_after: np.ndarray
    unsmoothed: np.ndarray
    valid: np.ndarray


def score_inputs(
    before: np.ndarray,
    after: np.ndarray,
    valid: np.ndarray,
    *,
    gain: np.ndarray,
    offset: np.ndarray,
    noise: np.ndarray,
    workspace: Workspace | None = None,
) -> ScoreInputs:
    """The score's evidence from a window's band planes.

    Parameters
    ----------
    before, after : ndarray of shape (bands, rows, cols)
        Band planes as read (uint8, uint16, int16 or float32; views are fine), the after date
        not yet normalised: ``gain * after + offset`` maps it into before units.
    valid : ndarray of shape (rows, cols), bool
        Pixels with data on both dates; what the planes hold elsewhere is never used.
    gain, offset, noise : ndarray of shape (bands,)
    workspace : Workspace, optional
        Scratch arrays to reuse; the returned `unsmoothed` is one of them.

    One compiled pass (`detection.fused`) does what seven NumPy passes a band did, with the
    same float32 operations a pixel, so a pixel gets the same value in any window that holds
    it (OpenCV's `addWeighted`, which would also fuse them, rounds a pixel differently with
    its position in the row).
    """
    workspace = workspace or Workspace()
    bands, rows, cols = before.shape
    coarse_shape = ((rows + 1) // 2, (cols + 1) // 2)
    noise = np.asarray(noise, dtype=np.float64)
    # Per band: gain/noise, 1/noise, offset/noise, each rounded to float32 as NumPy would.
    scales = np.stack([gain / noise, 1.0 / noise, offset / noise], axis=1).astype(np.float32)
    differences = np.empty((bands, *coarse_shape), dtype=np.float32)
    unsmoothed = workspace.empty("unsmoothed", (rows, cols))
    grey_before = np.empty(coarse_shape, dtype=np.float32)
    fused.score_inputs(
        *fused.flat(before),
        *fused.flat(after),
        np.ascontiguousarray(valid, dtype=bool),
        scales,
        differences,
        unsmoothed,
        grey_before,
    )
    # The after date's grey follows from the before date's and the differences.
    grey_after = grey_before.copy()
    for band, coarse in enumerate(differences):
        grey_after += coarse * np.float32(float(noise[band]) / bands)
    return ScoreInputs(list(differences), grey_before, grey_after, unsmoothed, valid)


def coarse_change_score(
    inputs: ScoreInputs,
    *,
    noise: np.ndarray,
    scales_px: Sequence[float],
    texture_weight: float,
    ceiling: float = math.inf,
    workspace: Workspace | None = None,
) -> np.ndarray:
    """Unsupervised change score: multi-scale change-vector magnitude plus edge change,
    filtered on the coarse grid, brought back to full resolution and capped there by the
    unsmoothed magnitude.

    Parameters
    ----------
    inputs : ScoreInputs
        A window's evidence (`score_inputs`).
    noise : ndarray of shape (bands,)
        Unchanged-difference scale per band (before units).
    scales_px : sequence of float
        Gaussian sigmas in full-resolution pixels.
    texture_weight : float
    ceiling : float
        Scores above it are cut to it (on the coarse grid: doubling averages and the cap only
        lowers, so no full-resolution score exceeds it).
    workspace : Workspace, optional
        Scratch arrays to reuse; the result is one of them.

    Returns
    -------
    ndarray of shape (rows, cols), float32
        Score in noise units, zero where a date has no data.
    """
    score = _coarse_mean_magnitude(inputs.differences, scales_px)
    if texture_weight:
        texture = _coarse_texture(inputs.grey_before, inputs.grey_after, noise)
        texture *= float(texture_weight)
        score += texture
    np.minimum(score, np.float32(ceiling), out=score)
    full = double(score, inputs.valid.shape, workspace)
    # Coarse scales find weak but extended change; the unsmoothed magnitude keeps the outline
    # from spreading past the real edge of a strong change. It is 0 where a date has no data,
    # so the cut also zeroes those pixels (every score is at least 0).
    np.minimum(full, inputs.unsmoothed, out=full)
    return full


def _coarse_mean_magnitude(planes: Sequence[np.ndarray], scales_px: Sequence[float]) -> np.ndarray:
    """Change-vector magnitude of halved difference planes at each scale (sigmas in
    full-resolution pixels), averaged over the scales: noise units on the coarse grid."""
    shape = planes[0].shape
    smoothed = np.empty(shape, dtype=np.float32)
    total = np.empty(shape, dtype=np.float32)
    score = np.zeros(shape, dtype=np.float32)
    for sigma_px in scales_px:
        sigma = coarse_sigma(sigma_px)
        total.fill(0.0)
        for plane in planes:
            cv2.accumulateSquare(gaussian(plane, sigma, output=smoothed) if sigma else plane, total)
        total /= len(planes)
        score += np.sqrt(total, out=total)
    score /= len(scales_px)
    return score


def _edge_magnitude(gray: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude of a lightly smoothed float32 image (SciPy's weights and
    reflected border), per coarse pixel."""
    sigma = coarse_sigma(EDGE_SIGMA_PX)
    smoothed = gaussian(gray, sigma) if sigma else gray
    along_rows = cv2.Sobel(smoothed, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REFLECT)
    along_cols = cv2.Sobel(smoothed, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REFLECT)
    # NumPy rather than `cv2.magnitude`, whose result can differ in the last bit with the
    # arrays' alignment in memory, which would make tiles differ from the whole image.
    np.square(along_rows, out=along_rows)
    along_rows += np.square(along_cols, out=along_cols)
    return np.sqrt(along_rows, out=along_rows)


def _coarse_texture(
    gray_before: np.ndarray, gray_after: np.ndarray, noise: np.ndarray
) -> np.ndarray:
    """Smoothed absolute change of edge strength between halved grey images (as
    `edge_strength` measures it at full resolution), in noise units per full-resolution
    pixel."""
    change = _edge_magnitude(gray_after)
    np.abs(np.subtract(change, _edge_magnitude(gray_before), out=change), out=change)
    # Sobel's weights sum to 8, and a coarse step spans two pixels.
    change /= 8.0 * COARSE_FACTOR * float(np.mean(noise))
    sigma = coarse_sigma(TEXTURE_SIGMA_PX)
    return gaussian(change, sigma) if sigma else change


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
