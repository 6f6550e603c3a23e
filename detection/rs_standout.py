"""Change that stands out from its own parcel: farming changes whole parcels alike, violations not.

Each farmland parcel is compared with itself: the per-band log ratio after/before of every pixel
against the parcel's median log ratio. Ploughing, harvest, flooding, green-up and a change of
light move the whole parcel together and leave nothing behind; a shed, a slab or a pit on part
of the parcel differs from the rest of it. Working per parcel window (not per tile) keeps the
result independent of tiling.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from affine import Affine
from rasterio.features import rasterize
from scipy import ndimage
from shapely.geometry.base import BaseGeometry

from detection import decide
from detection.rs_params import RasterDetectorParams

#: Judgement of a changed pixel: not inside a judged parcel, like its parcel, unlike it.
UNJUDGED, LIKE_PARCEL, STANDS_OUT = 0, 1, 2
#: Smoothing of the log ratio inside the parcel, pixels (averages out crop rows and noise).
SMOOTH_SIGMA_PX = 1.5
#: Fewest clear inner pixels a parcel is judged on (a median needs a few).
MIN_JUDGED_PX = 9
#: Offset added to both dates before the log ratio, as a fraction of the band's spread,
#: so that near-black pixels do not turn noise into huge ratios.
LOG_OFFSET_FRACTION = 0.05


@dataclass(frozen=True)
class ParcelWindow:
    """One parcel rasterised on its bounding window of the grid (with a margin)."""

    key: tuple[slice, slice]
    inside: np.ndarray  # (rows, cols) bool: pixels of the parcel
    inner: np.ndarray  # (rows, cols) bool: the same without its 1-px rim


def parcel_windows(
    farmland: Sequence[BaseGeometry],
    transform: Affine | None,
    shape: tuple[int, int],
    *,
    margin_px: int,
) -> list[ParcelWindow]:
    """Each non-empty parcel that meets the grid, as a window and its inner pixels."""
    base = transform or Affine.identity()
    inverse = ~base
    rows, cols = shape
    found = []
    for parcel in farmland:
        if parcel.is_empty:
            continue
        x0, y0, x1, y1 = parcel.bounds
        corners = [inverse @ (x, y) for x, y in ((x0, y0), (x0, y1), (x1, y0), (x1, y1))]
        c0 = max(int(np.floor(min(c for c, _ in corners))) - margin_px, 0)
        c1 = min(int(np.ceil(max(c for c, _ in corners))) + margin_px, cols)
        r0 = max(int(np.floor(min(r for _, r in corners))) - margin_px, 0)
        r1 = min(int(np.ceil(max(r for _, r in corners))) + margin_px, rows)
        if r1 - r0 < 3 or c1 - c0 < 3:
            continue
        inside = rasterize(
            [parcel],
            out_shape=(r1 - r0, c1 - c0),
            transform=base @ Affine.translation(c0, r0),
            fill=0,
            default_value=1,
            dtype="uint8",
        ).astype(bool)
        # Rim pixels mix the parcel with the road or ditch beside it.
        inner = ndimage.binary_erosion(inside, border_value=0)
        if inner.any():
            found.append(ParcelWindow((slice(r0, r1), slice(c0, c1)), inside, inner))
    return found


def log_ratio(before: np.ndarray, after: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Per-band log(after + offset) − log(before + offset), float32 (rows, cols, bands)."""
    floor = offset.astype(np.float32) * 0.1
    shifted = offset.astype(np.float32)
    return (
        np.log(np.maximum(after + shifted, floor)) - np.log(np.maximum(before + shifted, floor))
    ).astype(np.float32)


def smooth_inside(values: np.ndarray, inside: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian mean of `values` (rows, cols, bands) over `inside` pixels only."""
    weight = ndimage.gaussian_filter(inside.astype(np.float32), sigma)
    out = np.empty_like(values)
    for band in range(values.shape[2]):
        out[:, :, band] = ndimage.gaussian_filter(np.where(inside, values[:, :, band], 0), sigma)
    return out / np.maximum(weight, 1e-6)[:, :, None]


def parcel_residual(ratio: np.ndarray, inside: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Residual of the smoothed log ratio from the parcel median, and the residual's scale.

    Returns
    -------
    residual : ndarray of shape (rows, cols, bands), float32 (0 outside `inside`)
    scale : ndarray of shape (bands,)
        Robust spread of the residual inside the parcel (1.4826 × MAD).
    """
    smooth = smooth_inside(ratio, inside, SMOOTH_SIGMA_PX)
    values = smooth[inside]
    median = np.median(values, axis=0)
    residual = (smooth - median).astype(np.float32)
    residual[~inside] = 0.0
    scale = 1.4826 * np.median(np.abs(values - median), axis=0)
    return residual, scale


def judge_parcels(
    read: Callable[[tuple[slice, slice]], tuple[np.ndarray, np.ndarray, np.ndarray]],
    windows: Sequence[ParcelWindow],
    *,
    offset: np.ndarray,
    shape: tuple[int, int],
    mmu_px: int,
    params: RasterDetectorParams,
) -> np.ndarray:
    """Judgement (UNJUDGED, LIKE_PARCEL or STANDS_OUT) of every pixel of the grid.

    Parameters
    ----------
    read : callable (key) -> (before, after, valid)
        Reads a window of the pair: float32 (rows, cols, bands) twice, the after date
        normalised into before units, and bool (rows, cols).
    windows : sequence of ParcelWindow
    offset : ndarray of shape (bands,)
        Log-ratio offset per band (before units).
    shape : (rows, cols)
    mmu_px : int
        Minimum mapping unit in pixels.

    Returns
    -------
    ndarray of shape (rows, cols), uint8
    """
    judged = np.zeros(shape, dtype=np.uint8)
    residuals = []
    for window in windows:
        before, after, valid = read(window.key)
        inside = window.inner & valid
        # Judged on whatever part is clear, however little: farm work changes that part as
        # it does the rest, and a change filling all that is seen cannot be told from it.
        if inside.sum() >= MIN_JUDGED_PX:
            ratio = log_ratio(before, after, offset)
            residual, scale = parcel_residual(ratio, inside)
            residuals.append((window, inside, ratio, residual, scale))
    if not residuals:
        return judged
    # One noise scale for all parcels: a parcel with a big violation would inflate its own.
    sigma = _weighted_median(
        np.array([scale for *_, scale in residuals]),
        np.array([inside.sum() for _, inside, *_ in residuals], dtype=np.float64),
    )
    sigma = np.maximum(sigma, params.standout_min_log_ratio / params.standout_sigmas)
    unit = sigma.astype(np.float32)
    for window, inside, ratio, residual, _ in residuals:
        # Both: unlike the rest of the parcel now, and changed itself (a shed standing since
        # before does not stand out as change when the crop around it grows). The smoothed
        # residual asks for support around the pixel; the pixel's own values keep the
        # outline from spreading past the real edge.
        median = np.median(ratio[inside], axis=0)
        anomaly = np.minimum(
            np.sqrt(np.mean((residual / unit) ** 2, axis=2)),
            np.minimum(
                np.sqrt(np.mean(((ratio - median) / unit) ** 2, axis=2)),
                np.sqrt(np.mean((ratio / unit) ** 2, axis=2)),
            ),
        )
        stands_out = decide.decide(
            anomaly,
            inside,
            strong=params.standout_sigmas,
            weak=params.standout_sigmas * params.hysteresis_low_fraction,
            reach_px=params.hysteresis_reach_px,
            opening_radius_px=params.opening_radius_px,
            closing_radius_px=params.closing_radius_px,
            mmu_px=mmu_px,
        )
        target = judged[window.key]
        target[window.inside] = np.maximum(target[window.inside], LIKE_PARCEL)
        target[stands_out] = STANDS_OUT
    return judged


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per column of `values` (items, columns), the median weighted by `weights` (items,)."""
    order = np.argsort(values, axis=0)
    out = np.empty(values.shape[1])
    for column in range(values.shape[1]):
        cumulative = np.cumsum(weights[order[:, column]])
        middle = order[np.searchsorted(cumulative, cumulative[-1] / 2), column]
        out[column] = values[middle, column]
    return out
