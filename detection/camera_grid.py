"""Whole-pixel moves of a preset's images and masks between pixel grids (NumPy only)."""

from __future__ import annotations

from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

ScalarT = TypeVar("ScalarT", bound=np.generic)


def _spans(shift: int, size: int) -> tuple[slice, slice]:
    # Source and destination spans of a whole-pixel shift along one axis.
    shift = max(-size, min(size, shift))
    source = slice(max(-shift, 0), size - max(shift, 0))
    target = slice(max(shift, 0), size - max(-shift, 0))
    return source, target


def shift_image(
    image: NDArray[ScalarT], shift: tuple[float, float], *, fill: float | None = None
) -> NDArray[ScalarT]:
    """Translate an image (rows, cols[, bands]) by (rows, cols) rounded to whole pixels.

    Whole-pixel shifts are one block copy where interpolation would cost ten times more; half a
    working pixel of error is below what the change score sees. Uncovered borders repeat the
    nearest content (they are masked out of the change score anyway), or hold ``fill``.
    """
    rows, cols = image.shape[:2]
    row_from, row_to = _spans(round(shift[0]), rows)
    col_from, col_to = _spans(round(shift[1]), cols)
    if fill is not None:
        filled = np.full_like(image, fill)
        filled[row_to, col_to] = image[row_from, col_from]
        return filled
    out = np.empty_like(image)
    out[row_to, col_to] = image[row_from, col_from]
    if row_to.start > 0:
        out[: row_to.start] = out[row_to.start]
    if row_to.stop < rows:
        out[row_to.stop :] = out[row_to.stop - 1]
    if col_to.start > 0:
        out[:, : col_to.start] = out[:, col_to.start : col_to.start + 1]
    if col_to.stop < cols:
        out[:, col_to.stop :] = out[:, col_to.stop - 1 : col_to.stop]
    return out


def shift_valid_mask(shape: tuple[int, int], shift: tuple[float, float]) -> NDArray[np.bool_]:
    """Pixels (rows, cols) that still hold image content after shifting by (rows, cols)."""
    rows, cols = shape
    valid = np.ones(shape, dtype=bool)
    dr, dc = (abs(round(s)) for s in shift)
    if shift[0] > 0:
        valid[: min(dr, rows)] = False
    elif shift[0] < 0:
        valid[max(rows - dr, 0) :] = False
    if shift[1] > 0:
        valid[:, : min(dc, cols)] = False
    elif shift[1] < 0:
        valid[:, max(cols - dc, 0) :] = False
    return valid
