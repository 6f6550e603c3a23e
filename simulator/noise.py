"""Seeded random streams and smooth noise fields shared by the tile and camera renderers."""

from __future__ import annotations

import zlib

import numpy as np
from scipy import ndimage


def rng_for(seed: int, *keys: str | int) -> np.random.Generator:
    """An independent Generator for one named part of the world.

    Deriving streams from names (not from call order) keeps a part's randomness unchanged when
    other parts are added, and lets parts be rendered in any order or in parallel.
    """
    words = [seed & 0xFFFFFFFF] + [
        zlib.crc32(str(key).encode()) if isinstance(key, str) else int(key) & 0xFFFFFFFF
        for key in keys
    ]
    return np.random.default_rng(np.random.SeedSequence(words))


def smooth_field(
    rng: np.random.Generator,
    shape: tuple[int, int],
    *,
    scale_px: float,
    octaves: int = 3,
    persistence: float = 0.5,
) -> np.ndarray:
    """Fractal value noise, roughly zero mean and unit standard deviation.

    Parameters
    ----------
    rng : numpy.random.Generator
    shape : tuple of int
        Output (rows, cols).
    scale_px : float
        Size of the largest features, pixels.
    octaves : int
        Number of halvings of the feature size added on top.
    persistence : float
        Amplitude ratio between consecutive octaves.

    Returns
    -------
    ndarray of shape `shape`, float32
    """
    rows, cols = shape
    total = np.zeros(shape, dtype=np.float32)
    amplitude, norm = 1.0, 0.0
    scale = max(scale_px, 2.0)
    for _ in range(octaves):
        coarse = (max(2, int(np.ceil(rows / scale)) + 2), max(2, int(np.ceil(cols / scale)) + 2))
        grid = rng.standard_normal(coarse).astype(np.float32)
        zoomed = ndimage.zoom(grid, (rows / (coarse[0] - 1), cols / (coarse[1] - 1)), order=1)
        total += amplitude * zoomed[:rows, :cols]
        norm += amplitude**2
        amplitude *= persistence
        scale = max(scale / 2.0, 2.0)
    return total / np.float32(np.sqrt(norm) * 0.8)


def subpixel_shift(image: np.ndarray, *, d_row: float, d_col: float) -> np.ndarray:
    """Move the content of the last two axes by a fraction of a pixel (|shift| < 1).

    Bilinear interpolation as two weighted sums of neighbouring slices, edges replicated;
    positive shifts move the content down and right. Modifies and returns `image` (float).
    """
    for axis, delta in ((-2, d_row), (-1, d_col)):
        if delta == 0:
            continue
        fraction = np.float32(abs(delta))
        body = [slice(None)] * image.ndim
        neighbour = [slice(None)] * image.ndim
        if delta > 0:  # pixel i takes (1 - f) of itself and f of pixel i - 1
            body[axis], neighbour[axis] = slice(1, None), slice(None, -1)
        else:
            body[axis], neighbour[axis] = slice(None, -1), slice(1, None)
        moved = image[tuple(neighbour)] * fraction  # a copy, taken before `image` changes
        image[tuple(body)] *= 1 - fraction
        image[tuple(body)] += moved
    return image
