"""Bringing the after image onto the before grid: grid checks, reprojection, sub-pixel shift."""

from __future__ import annotations

import math

import numpy as np
from affine import Affine
from rasterio.enums import Resampling
from rasterio.warp import reproject, transform_bounds
from scipy import ndimage
from skimage.registration import phase_cross_correlation

from detection.errors import InvalidRasterError, RegistrationError

#: Edge of the central window, in pixels, used to estimate the residual shift.
SHIFT_WINDOW_PX = 512


def check_transform(transform: Affine, *, name: str) -> None:
    """Refuse geotransforms the detector cannot map pixels with.

    Raises
    ------
    InvalidRasterError
        A zero pixel size (degenerate) or rotation/shear terms (a rotated grid).
    """
    if transform.a == 0 or transform.e == 0 or transform.determinant == 0:
        raise InvalidRasterError(
            f"{name} has a zero or degenerate geotransform {tuple(transform)[:6]}; "
            "write a valid pixel size into the file (e.g. with gdal_edit.py -tr)"
        )
    if transform.b != 0 or transform.d != 0:
        raise InvalidRasterError(
            f"{name} has a rotated or sheared geotransform (terms {transform.b}, {transform.d}); "
            "warp it to a north-up grid first (gdalwarp without -to options)"
        )


def check_georeferencing(before_crs: str | None, after_crs: str | None) -> None:
    """Refuse a pair where exactly one date has a CRS: it cannot be placed against the other."""
    if (before_crs is None) != (after_crs is None):
        missing = "before" if before_crs is None else "after"
        raise InvalidRasterError(
            f"the {missing} image has no CRS while the other has one; assign the CRS it "
            "was produced in (e.g. gdal_edit.py -a_srs EPSG:32650) or supply both without one"
        )


def _bounds(transform: Affine, shape: tuple[int, int]) -> tuple[float, float, float, float]:
    rows, cols = shape
    x0, y0 = transform @ (0, 0)
    x1, y1 = transform @ (cols, rows)
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


def check_overlap(
    before_transform: Affine,
    before_shape: tuple[int, int],
    after_transform: Affine,
    after_shape: tuple[int, int],
    *,
    before_crs: str | None,
    after_crs: str | None,
) -> None:
    """Refuse a pair whose footprints do not overlap.

    Raises
    ------
    RegistrationError
        The after footprint, in the before CRS, does not intersect the before footprint.
    """
    bx0, by0, bx1, by1 = _bounds(before_transform, before_shape)
    ax0, ay0, ax1, ay1 = _bounds(after_transform, after_shape)
    if before_crs and after_crs and before_crs != after_crs:
        ax0, ay0, ax1, ay1 = transform_bounds(after_crs, before_crs, ax0, ay0, ax1, ay1)
    if ax0 >= bx1 or ax1 <= bx0 or ay0 >= by1 or ay1 <= by0:
        raise RegistrationError(
            f"the images do not overlap: before covers x {bx0:.6g}..{bx1:.6g}, "
            f"y {by0:.6g}..{by1:.6g}, after covers x {ax0:.6g}..{ax1:.6g}, "
            f"y {ay0:.6g}..{ay1:.6g} (in the before CRS); pick two images of the same place"
        )


def reproject_onto_grid(
    image: np.ndarray,
    valid: np.ndarray,
    *,
    src_transform: Affine,
    src_crs: str | None,
    dst_transform: Affine,
    dst_crs: str | None,
    dst_shape: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """Resample `image` (bilinear) onto the destination grid.

    Parameters
    ----------
    image : ndarray of shape (rows, cols, bands), float32
    valid : ndarray of shape (rows, cols), bool
        Pixels with data in `image`.

    Returns
    -------
    aligned : ndarray of shape (dst_rows, dst_cols, bands), float32
    aligned_valid : ndarray of shape (dst_rows, dst_cols), bool
        False where the source does not cover the destination or had no data.
    """
    src_crs = src_crs or dst_crs or "EPSG:3857"  # neither georeferenced: pixel grids only
    dst_crs = dst_crs or src_crs
    common = {
        "src_transform": src_transform,
        "dst_transform": dst_transform,
        "src_crs": src_crs,
        "dst_crs": dst_crs,
        "resampling": Resampling.bilinear,
    }
    bands = image.shape[2]
    target = np.zeros((bands, *dst_shape), dtype=np.float32)
    reproject(np.moveaxis(image.astype(np.float32, copy=False), -1, 0), target, **common)
    coverage = np.zeros(dst_shape, dtype=np.float32)
    reproject(valid.astype(np.float32), coverage, src_nodata=None, dst_nodata=0, **common)
    # A bilinear sample touching a missing pixel is not trusted (threshold just below 1).
    return np.ascontiguousarray(np.moveaxis(target, 0, -1)), coverage > 0.999


def estimate_shift(
    before_gray: np.ndarray, after_gray: np.ndarray, *, max_shift_px: float, min_shift_px: float
) -> tuple[float, float]:
    """Residual (row, col) shift that registers `after_gray` onto `before_gray`, in pixels.

    Parameters
    ----------
    before_gray, after_gray : ndarray of shape (rows, cols), float
        One grey band of each date on the same grid (a central window is enough).

    Returns
    -------
    tuple of float
        (0.0, 0.0) when the estimate is below `min_shift_px`, above `max_shift_px`, or the
        images are too flat to tell; otherwise the shift to apply to the after image.
    """
    if min(before_gray.shape) < 32 or np.ptp(before_gray) == 0 or np.ptp(after_gray) == 0:
        return 0.0, 0.0
    # normalization=None: phase normalisation misbehaves on smooth images.
    shift, _, _ = phase_cross_correlation(
        before_gray, after_gray, upsample_factor=20, normalization=None
    )
    dy, dx = float(shift[0]), float(shift[1])
    magnitude = math.hypot(dy, dx)
    if magnitude < min_shift_px or magnitude > max_shift_px:
        return 0.0, 0.0
    return dy, dx


def central_window(shape: tuple[int, int]) -> tuple[slice, slice]:
    """The central square (at most SHIFT_WINDOW_PX wide) used for shift estimation."""
    rows, cols = shape
    height, width = min(rows, SHIFT_WINDOW_PX), min(cols, SHIFT_WINDOW_PX)
    top, left = (rows - height) // 2, (cols - width) // 2
    return slice(top, top + height), slice(left, left + width)


def shift_image(image: np.ndarray, shift: tuple[float, float]) -> np.ndarray:
    """Apply a (row, col) sub-pixel shift to every band of `image` (bilinear, edges repeated)."""
    if shift == (0.0, 0.0):
        return image
    out = np.empty_like(image, dtype=np.float32)
    for band in range(image.shape[2]):
        out[:, :, band] = ndimage.shift(image[:, :, band], shift, order=1, mode="nearest")
    return out
