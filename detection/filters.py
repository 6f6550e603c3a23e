"""Box and Gaussian filters with SciPy's results, through OpenCV where it is faster."""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

#: Gaussian kernels reach this many sigmas (scipy's default truncate).
TRUNCATE = 4.0
# The raster detector runs its tiles on threads of its own (`rs_tiles.each_window`) and the
# workers run one job per thread or process; OpenCV's own threads inside each filter would
# only contend with them for the same cores.
cv2.setNumThreads(1)
_BORDERS = {"reflect": cv2.BORDER_REFLECT, "nearest": cv2.BORDER_REPLICATE}


def box_mean(image: np.ndarray, size: int, *, mode: str = "reflect") -> np.ndarray:
    """`scipy.ndimage.uniform_filter` over rows and columns only, each `size` wide.

    `image` is (rows, cols) or (rows, cols, bands), each band filtered on its own; `mode`
    "reflect" or "nearest" as SciPy names them. A float32 image of at most 4 bands and an
    odd `size` go through OpenCV's box filter with the same border: several times faster,
    equal up to float32 rounding (a few 1e-8). Other images, and even sizes (which SciPy
    centres differently), go through SciPy.
    """
    bands_ok = image.ndim == 2 or (image.ndim == 3 and image.shape[2] <= 4)
    small = min(image.shape[:2]) <= size // 2
    if image.dtype != np.float32 or not bands_ok or small or size % 2 == 0:
        sizes = (size, size) + (1,) * (image.ndim - 2)
        return ndimage.uniform_filter(image, size=sizes, mode=mode)
    return cv2.blur(np.ascontiguousarray(image), (size, size), borderType=_BORDERS[mode])


def gaussian(image: np.ndarray, sigma: float, output: np.ndarray | None = None) -> np.ndarray:
    """`scipy.ndimage.gaussian_filter(image, sigma)` (mode "reflect", `TRUNCATE` sigmas).

    A 2-D float32 image goes through OpenCV's separable filter with the same kernel and
    border: several times faster, equal up to float32 rounding (a few 1e-7). Other images,
    and one no wider than the kernel's radius, go through SciPy.

    Not for a trained model's features: they stay on SciPy's filter, as the model was
    trained on them (rounding this small still moved its cross-validated F1).
    """
    radius = int(TRUNCATE * sigma + 0.5)
    if image.dtype != np.float32 or image.ndim != 2 or min(image.shape) <= radius:
        return ndimage.gaussian_filter(image, sigma, output=output, truncate=TRUNCATE)
    size = 2 * radius + 1
    return cv2.GaussianBlur(
        image, (size, size), sigma, dst=output, sigmaY=sigma, borderType=cv2.BORDER_REFLECT
    )
