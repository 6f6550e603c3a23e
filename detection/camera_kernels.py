"""Compiled per-pixel passes of the tower-camera detector.

The camera detector works on 1/4-resolution frames (about 130,000 pixels of three bands), where
each NumPy operation is a pass over memory and the fixed cost of a call is no longer small:
a step written as five array operations reads and writes its planes five times. Here such a
step reads each input once. Every value is computed with the same float32 operations, in the
same order, as the NumPy expressions these kernels stand for (Numba leaves floating-point
contraction off, so no multiply-add is fused), so the detector's results do not change.
"""

from __future__ import annotations

import numba
import numpy as np
from numpy.typing import NDArray


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
            gain_up = gain[upper, value]
            row_gain = (gain[lower, value] - gain_up) * weight + gain_up
            offset_up = offset[upper, value]
            row_offset = (offset[lower, value] - offset_up) * weight + offset_up
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
    rows = image.shape[0]
    flat = np.ascontiguousarray(image).reshape(rows, -1)
    out = np.empty_like(flat)
    _lit_rows(flat, gain, offset, top, bottom, down, out)
    return out.reshape(image.shape)
