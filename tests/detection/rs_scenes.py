"""Synthetic before/after scenes with known change, shared by the raster-detector tests."""

from __future__ import annotations

import numpy as np
from affine import Affine
from scipy import ndimage

#: A 2 m UTM grid (zone 50N, on its central meridian 117°E).
PIXEL_M = 2.0
TRANSFORM = Affine(PIXEL_M, 0.0, 500_000.0, 0.0, -PIXEL_M, 3_340_000.0)
CRS = "EPSG:32650"
ROLES = ("blue", "green", "red", "nir")
# Mean reflectance (DN) of vegetated fields per band, and of a new concrete roof.
FIELD = np.array([600.0, 900.0, 700.0, 3000.0], dtype=np.float32)
ROOF = np.array([2600.0, 2700.0, 2800.0, 3000.0], dtype=np.float32)


def field_scene(rows: int = 256, cols: int = 256, *, seed: int = 0) -> np.ndarray:
    """Textured farmland, float32 of shape (rows, cols, 4), values like uint16 DN."""
    rng = np.random.default_rng(seed)
    texture = ndimage.gaussian_filter(rng.normal(size=(rows, cols)), 3.0)
    texture /= texture.std()
    grain = rng.normal(scale=0.02, size=(rows, cols, 4))
    image = FIELD * (1.0 + 0.15 * texture[:, :, None] + grain)
    return np.round(image).astype(np.float32)


def paint(image: np.ndarray, rows: slice, cols: slice, value: np.ndarray) -> np.ndarray:
    """A copy of `image` with a patch set to `value` (plus the same grain)."""
    out = image.copy()
    out[rows, cols] = value * (out[rows, cols] / FIELD)
    return np.round(out).astype(np.float32)
