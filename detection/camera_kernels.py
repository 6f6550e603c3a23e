"""Compiled per-pixel passes of the tower-camera detector.

The camera detector works on 1/4-resolution frames (about 130,000 pixels of three bands), where
each NumPy operation is a pass over memory and the fixed cost of a call is no longer small:
a step written as five array operations reads and writes its planes five times. Here such a
step reads each input once. Integer steps give exactly what NumPy gives; floating-point ones
compute every value with the same float32 operations, in the same order, as the NumPy
expressions they stand for (Numba leaves floating-point contraction off, so no multiply-add is
fused). Either way the detector's results do not change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import numpy as np
from numpy.typing import NDArray


@numba.njit(nogil=True, cache=True, inline="always")
def _between_rows(
    field: np.ndarray, upper: np.intp, lower: np.intp, weight: np.float32, value: int
) -> np.float32:
    # A field's value between two of its rows, as `upsample_field` blends them.
    up = field[upper, value]
    return (field[lower, value] - up) * weight + up


def _by_rows(kernel: Callable[..., None], image: NDArray[Any], *args: object) -> NDArray[Any]:
    """Run a row pass over a (rows, cols, bands) image seen as (rows, cols × bands)."""
    flat = np.ascontiguousarray(image).reshape(image.shape[0], -1)
    out = np.empty_like(flat)
    kernel(flat, *args, out)
    return out.reshape(image.shape)


@numba.njit(nogil=True, cache=True)
def _lit_rows(
    image: np.ndarray,
    gain: np.ndarray,
    offset: np.ndarray,
    top: np.ndarray,
    bottom: np.ndarray,
    down: np.ndarray,
    out: np.ndarray,
) -> None:
    zero, one = np.float32(0.0), np.float32(1.0)
    for row in range(out.shape[0]):
        upper, lower, weight = top[row], bottom[row], down[row]
        for value in range(out.shape[1]):
            row_gain = _between_rows(gain, upper, lower, weight, value)
            row_offset = _between_rows(offset, upper, lower, weight, value)
            lit = row_gain * image[row, value] + row_offset
            out[row, value] = min(max(lit, zero), one)


def apply_lighting(
    image: NDArray[np.float32],
    gain: NDArray[np.float32],
    offset: NDArray[np.float32],
    top: NDArray[np.intp],
    bottom: NDArray[np.intp],
    down: NDArray[np.float32],
) -> NDArray[np.float32]:
    """``clip(gain · image + offset, 0, 1)`` with gain and offset interpolated between rows.

    Parameters
    ----------
    image : ndarray of shape (rows, cols, bands), float32
    gain, offset : ndarray of shape (grid_rows, cols × bands), float32
        The fields already interpolated along the columns, one row per grid row.
    top, bottom : ndarray of shape (rows,), intp
        The grid rows each image row lies between.
    down : ndarray of shape (rows,), float32
        The weight of ``bottom`` for each image row.
    """
    return _by_rows(_lit_rows, image, gain, offset, top, bottom, down)


@numba.njit(nogil=True, cache=True)
def _less_field_rows(
    image: np.ndarray,
    field: np.ndarray,
    top: np.ndarray,
    bottom: np.ndarray,
    down: np.ndarray,
    out: np.ndarray,
) -> None:
    for row in range(out.shape[0]):
        upper, lower, weight = top[row], bottom[row], down[row]
        for value in range(out.shape[1]):
            out[row, value] = image[row, value] - _between_rows(field, upper, lower, weight, value)


def less_field(
    image: NDArray[np.float32],
    field: NDArray[np.float32],
    top: NDArray[np.intp],
    bottom: NDArray[np.intp],
    down: NDArray[np.float32],
) -> NDArray[np.float32]:
    """``image`` less a field interpolated between rows, as a new array.

    Parameters
    ----------
    image : ndarray of shape (rows, cols, bands), float32
    field : ndarray of shape (grid_rows, cols × bands), float32
        Already interpolated along the columns, one row per grid row.
    top, bottom, down : ndarray of shape (rows,)
        As for :func:`apply_lighting`.
    """
    return _by_rows(_less_field_rows, image, field, top, bottom, down)


@numba.njit(nogil=True, cache=True)
def _band_means(pixels: np.ndarray, out: np.ndarray) -> None:
    third = np.float32(1 / 3)
    for pixel in range(out.shape[0]):
        out[pixel] = (pixels[pixel, 0] + pixels[pixel, 1] + pixels[pixel, 2]) * third


def band_mean(image: NDArray[np.float32]) -> NDArray[np.float32]:
    """The mean of the three bands of a (rows, cols, 3) float32 image, as (rows, cols): the
    first two bands added, then the third, times float32 1/3, reading each pixel once."""
    rows, cols = image.shape[0], image.shape[1]
    out = np.empty(rows * cols, dtype=np.float32)
    _band_means(np.ascontiguousarray(image).reshape(-1, 3), out)
    return out.reshape(rows, cols)


@numba.njit(nogil=True, cache=True)
def _band_norms(pixels: np.ndarray, out: np.ndarray) -> None:
    third = np.float32(1 / 3)
    for pixel in range(out.shape[0]):
        red, green, blue = pixels[pixel, 0], pixels[pixel, 1], pixels[pixel, 2]
        out[pixel] = np.sqrt((red * red + green * green + blue * blue) * third)


def band_rms(image: NDArray[np.float32]) -> NDArray[np.float32]:
    """The root-mean-square of the three bands of a (rows, cols, 3) float32 image, as (rows,
    cols): squares of the first two bands added, then the third's, times float32 1/3, root."""
    rows, cols = image.shape[0], image.shape[1]
    out = np.empty(rows * cols, dtype=np.float32)
    _band_norms(np.ascontiguousarray(image).reshape(-1, 3), out)
    return out.reshape(rows, cols)


@numba.njit(nogil=True, cache=True)
def _levels_of(values: np.ndarray, out: np.ndarray) -> None:
    full = np.float32(255.0)
    for value in range(out.shape[0]):
        out[value] = np.uint8(np.rint(values[value] * full))


def to_levels(image: NDArray[np.float32]) -> NDArray[np.uint8]:
    """A float32 image in [0, 1] (any shape) as uint8 levels: times 255 in float32, rounded
    half to even, in one pass."""
    out = np.empty(image.size, dtype=np.uint8)
    _levels_of(np.ascontiguousarray(image).reshape(-1), out)
    return out.reshape(image.shape)


@numba.njit(nogil=True, cache=True)
def _step_sums(plane: np.ndarray, out: np.ndarray) -> None:
    zero = np.float32(0.0)
    for row in range(plane.shape[0]):
        for col in range(plane.shape[1]):
            step = abs(plane[row, col] - plane[row, col - 1]) if col > 0 else zero
            if row > 0:
                step = step + abs(plane[row, col] - plane[row - 1, col])
            out[row, col] = step


def step_sum(plane: NDArray[np.float32]) -> NDArray[np.float32]:
    """Each value's absolute step from its left neighbour plus that from the one above, for a
    (rows, cols) float32 plane (zero where there is none), in one pass."""
    plane = np.ascontiguousarray(plane)
    out = np.empty_like(plane)
    _step_sums(plane, out)
    return out


@numba.njit(nogil=True, cache=True)
def _kept_regions(
    labels: np.ndarray,
    score: np.ndarray,
    high: np.float32,
    count: int,
    min_area_px: int,
    out: np.ndarray,
) -> None:
    sizes = np.zeros(count + 1, dtype=np.int64)
    reaches = np.zeros(count + 1, dtype=np.bool_)
    for value in range(labels.shape[0]):
        label = labels[value]
        sizes[label] += 1
        if score[value] > high:
            reaches[label] = True
    reaches[0] = False
    for label in range(count + 1):
        reaches[label] = reaches[label] and sizes[label] >= min_area_px
    for value in range(labels.shape[0]):
        out[value] = reaches[labels[value]]


def kept_regions(
    labels: NDArray[np.int32],
    score: NDArray[np.float32],
    *,
    high: float,
    count: int,
    min_area_px: int,
) -> NDArray[np.bool_]:
    """Pixels (rows, cols) of the labelled regions (1 to ``count``) that hold at least
    ``min_area_px`` pixels and a ``score`` above ``high`` (compared in float32), in two
    passes."""
    out = np.empty(labels.size, dtype=np.bool_)
    _kept_regions(
        np.ascontiguousarray(labels).reshape(-1),
        np.ascontiguousarray(score).reshape(-1),
        np.float32(high),
        count,
        min_area_px,
        out,
    )
    return out.reshape(labels.shape)


@numba.njit(nogil=True, cache=True, inline="always")
def _median_of_five(
    v0: np.uint8, v1: np.uint8, v2: np.uint8, v3: np.uint8, v4: np.uint8
) -> np.uint8:
    # The network of `camera_reference._median_of_five` (Devillard's opt_med5), value by value.
    low01, high01 = min(v0, v1), max(v0, v1)
    low34, high34 = min(v3, v4), max(v3, v4)
    low34 = max(low01, low34)
    high01 = min(high01, high34)
    upper = max(high01, v2)
    high01 = min(high01, v2)
    upper = min(upper, low34)
    return max(high01, upper)


@numba.njit(nogil=True, cache=True)
def _ring_statistics(frames: np.ndarray, median: np.ndarray, deviation: np.ndarray) -> None:
    """Each value's median over the five frames and the median of its distances from it.

    Kept in uint8 (the distances cast back, as they fit): integer promotion to 64 bits left
    the compiler eight values a vector instruction instead of sixty-four, and took 40× as
    long.
    """
    for value in range(frames.shape[1]):
        v0, v1, v2 = frames[0, value], frames[1, value], frames[2, value]
        v3, v4 = frames[3, value], frames[4, value]
        centre = _median_of_five(v0, v1, v2, v3, v4)
        median[value] = centre
        deviation[value] = _median_of_five(
            np.uint8(max(v0, centre) - min(v0, centre)),
            np.uint8(max(v1, centre) - min(v1, centre)),
            np.uint8(max(v2, centre) - min(v2, centre)),
            np.uint8(max(v3, centre) - min(v3, centre)),
            np.uint8(max(v4, centre) - min(v4, centre)),
        )


def statistics_of_five(frames: NDArray[np.uint8]) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    """Per-pixel median of five (5, rows, cols, bands) uint8 frames, and the largest band's
    median absolute deviation from it, as (rows, cols): one pass instead of about thirty."""
    shape = frames.shape[1:]
    flat = np.ascontiguousarray(frames).reshape(5, -1)
    median = np.empty(flat.shape[1], dtype=np.uint8)
    deviation = np.empty_like(median)
    _ring_statistics(flat, median, deviation)
    per_band = deviation.reshape(shape)
    # Band by band: `max(axis=-1)` over three values at a time took thirty times as long.
    spread = np.maximum(per_band[..., 0], per_band[..., 1])
    return median.reshape(shape), np.maximum(spread, per_band[..., 2], out=spread)


@numba.njit(nogil=True, cache=True)
def _keep_where(frame: np.ndarray, background: np.ndarray, keep: np.ndarray) -> None:
    # Branch-free (a select per value), which the compiler turns into vector instructions.
    for pixel in range(keep.shape[0]):
        kept = keep[pixel]
        for band in range(frame.shape[1]):
            frame[pixel, band] = background[pixel, band] if kept else frame[pixel, band]


def keep_background(
    frame: NDArray[np.uint8], background: NDArray[np.uint8], keep: NDArray[np.bool_]
) -> None:
    """``frame[keep] = background[keep]`` in place, for (rows, cols, bands) frames and a
    (rows, cols) mask: NumPy's masked gather and scatter of three-value pixels cost more
    than the rest of the background update."""
    if not frame.flags.c_contiguous:  # a reshaped copy would take the writes
        raise ValueError("keep_background writes into a C-contiguous frame only")
    bands = frame.shape[-1]
    flat = np.ascontiguousarray(background).reshape(-1, bands)
    _keep_where(frame.reshape(-1, bands), flat, np.ascontiguousarray(keep).reshape(-1))


@numba.njit(nogil=True, cache=True)
def _noise_rows(
    noise: np.ndarray,
    residual: np.ndarray,
    where: np.ndarray,
    scale: np.float32,
    cap_offset: np.float32,
    learned: bool,
    rise: np.float32,
    fall: np.float32,
    out: np.ndarray,
) -> None:
    full, three, zero = np.float32(255.0), np.float32(3.0), np.float32(0.0)
    for value in range(out.shape[0]):
        if not where[value]:
            out[value] = noise[value]
            continue
        old = np.float32(noise[value])
        new = min(residual[value] * scale, full)
        if learned:
            new = min(new, three * old + cap_offset)
        step = new - old
        step = step * (rise if step > zero else fall)
        out[value] = np.uint8(min(max(np.rint(step + old), zero), full))


def updated_noise(
    noise: NDArray[np.uint8],
    residual: NDArray[np.float32],
    where: NDArray[np.bool_],
    *,
    scale: float,
    cap_offset: float,
    learned: bool,
    rates: tuple[float, float],
) -> NDArray[np.uint8]:
    """A background's residual noise (rows, cols) moved towards one snapshot's, in one pass.

    Where ``where`` holds: the residual in noise units (``residual · scale``, at most 255;
    once ``learned``, also at most ``3 · noise + cap_offset``), the noise moved towards it by
    ``rates[0]`` of the gap when it rises and ``rates[1]`` when it falls, rounded half to even
    and kept within 0–255. Elsewhere the noise stays. See `ReferenceModel.with_residual`.
    """
    out = np.empty(noise.size, dtype=np.uint8)
    _noise_rows(
        np.ascontiguousarray(noise).reshape(-1),
        np.ascontiguousarray(residual, dtype=np.float32).reshape(-1),
        np.ascontiguousarray(where).reshape(-1),
        np.float32(scale),
        np.float32(cap_offset),
        learned,
        np.float32(rates[0]),
        np.float32(rates[1]),
        out,
    )
    return out.reshape(noise.shape)


def load_passes() -> None:
    """Load every pass (from Numba's cache, or compile it) for the types the detector calls
    it with, so that a worker pays for it before its first snapshot instead of during it.

    The passes are called through the detector's own code on small frames: the lighting
    match and the local mean's removal build their inputs the way a snapshot's do, and the
    others take C-ordered arrays and fixed scalar types only, whatever the caller gives them.
    """
    from detection.camera_reference import less_upsampled, match_illumination

    image = np.full((16, 16, 3), 0.5, dtype=np.float32)
    match_illumination(image, image, grid=(2, 2), max_gain=2.0)
    less_upsampled(image, np.zeros((2, 2, 3), dtype=np.float32))
    statistics_of_five(np.zeros((5, 4, 4, 3), dtype=np.uint8))
    frame = np.zeros((4, 4, 3), dtype=np.uint8)
    keep_background(frame, frame.copy(), np.zeros((4, 4), dtype=bool))
    band_mean(image)
    band_rms(image)
    to_levels(image)
    plane = np.zeros((4, 4), dtype=np.float32)
    noise = np.zeros((4, 4), dtype=np.uint8)
    updated_noise(
        noise, plane, np.ones((4, 4), dtype=bool), scale=1, cap_offset=0, learned=True, rates=(1, 1)
    )
    step_sum(plane)
    labels = np.zeros((4, 4), dtype=np.int32)
    kept_regions(labels, plane, high=1.0, count=int(labels.max()), min_area_px=1)
