"""A preset's robust background (median of recent accepted snapshots) and lighting match."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

# Residual noise is stored in quarter grey levels: far fields sit at 1–2 levels.
NOISE_UNITS = 4


@dataclass(frozen=True)
class ReferenceModel:
    """The background of one preset in one illumination mode (day colour or night IR).

    Attributes
    ----------
    frames : ndarray of shape (depth, rows, cols, 3), uint8
        Ring of recent accepted snapshots, registered and matched to the reference lighting.
    count : int
        How many ring slots hold frames (at most ``depth``); the next frame goes to
        ``count % depth`` once full, overwriting the oldest.
    added : int
        Total frames ever added, which tells the oldest slot once the ring is full.
    median : ndarray of shape (rows, cols, 3), uint8
        Per-pixel median of the filled slots: the background.
    spread : ndarray of shape (rows, cols), uint8
        Per-pixel median absolute deviation of the filled slots (largest band), grey levels.
    noise : ndarray of shape (rows, cols), uint8
        Running upper estimate of each pixel's residual (the lighting-matched snapshot's local
        difference from the background) on ordinary snapshots, in 1/``NOISE_UNITS`` grey levels.
        A pixel whose residual keeps varying (parcel edges under changing light and haze)
        needs more to count as change than one whose residual stays at the sensor noise.
    """

    frames: NDArray[np.uint8]
    count: int
    added: int
    median: NDArray[np.uint8]
    spread: NDArray[np.uint8]
    noise: NDArray[np.uint8]

    @classmethod
    def start(cls, image: NDArray[np.uint8], *, depth: int) -> ReferenceModel:
        """A model holding one frame (rows, cols, 3)."""
        frames = np.zeros((depth, *image.shape), dtype=np.uint8)
        frames[0] = image
        spread = np.zeros(image.shape[:2], dtype=np.uint8)
        return cls(
            frames=frames,
            count=1,
            added=1,
            median=image.copy(),
            spread=spread,
            noise=np.zeros_like(spread),
        )

    def with_frame(self, image: NDArray[np.uint8]) -> ReferenceModel:
        """Return the model with ``image`` (rows, cols, 3) replacing the oldest frame."""
        depth = self.frames.shape[0]
        frames = self.frames.copy()
        frames[self.added % depth] = image
        count = min(self.count + 1, depth)
        filled = frames[:count]
        median = median_of_frames(filled)
        deviation = np.maximum(filled, median) - np.minimum(filled, median)
        per_band = median_of_frames(deviation)
        spread = np.maximum(np.maximum(per_band[..., 0], per_band[..., 1]), per_band[..., 2])
        return ReferenceModel(frames, count, self.added + 1, median, spread, self.noise)

    def with_residual(
        self,
        residual: NDArray[np.float32],
        where: NDArray[np.bool_],
        *,
        rise: float,
        fall: float,
    ) -> ReferenceModel:
        """Return the model with its residual noise updated from one snapshot.

        ``residual`` (rows, cols) is the snapshot's local difference from this background,
        fraction of full scale; only pixels in ``where`` learn. The estimate climbs by ``rise``
        and sinks by ``fall`` of the gap, so it settles at an upper quantile of the residual
        (about rise / (rise + fall) of snapshots stay below it) rather than at its mean, and
        each residual is capped at three times the estimate plus two grey levels, so one sudden
        change barely moves it. The first snapshots, with no estimate yet, are averaged in.
        """
        old = self.noise.astype(np.float32)
        new = np.minimum(residual * np.float32(255 * NOISE_UNITS), np.float32(255))
        learned = self.added > 2
        if learned:
            np.minimum(new, 3 * old + 2 * NOISE_UNITS, out=new)
        rates = (rise, fall) if learned else (1.0 / self.added,) * 2
        step = new - old
        step *= np.where(step > 0, np.float32(rates[0]), np.float32(rates[1]))
        updated = np.where(where, old + step, old)
        noise = np.clip(np.round(updated), 0, 255).astype(np.uint8)
        return replace(self, noise=noise)

    def adopting(self, image: NDArray[np.uint8], where: NDArray[np.bool_]) -> ReferenceModel:
        """Return the model with ``image`` written into every frame at ``where`` (rows, cols).

        Recognised farm work (a ploughed or harvested parcel) is learned at once instead of
        waiting for the median to turn, so the next snapshot no longer sees it as change.
        """
        frames = self.frames.copy()
        frames[: self.count, where] = image[where]
        median = self.median.copy()
        median[where] = image[where]
        spread = self.spread.copy()
        spread[where] = 0
        return ReferenceModel(frames, self.count, self.added, median, spread, self.noise)


def gray(image: NDArray[np.float32]) -> NDArray[np.float32]:
    """Mean of the bands of a (rows, cols, 3) image, as (rows, cols).

    Summing the three planes is several times faster than ``mean(axis=-1)``, which reduces
    along the innermost, strided axis.
    """
    return (image[..., 0] + image[..., 1] + image[..., 2]) * np.float32(1 / 3)


def _sort_pair(values: list[NDArray[np.uint8]], i: int, j: int) -> None:
    values[i], values[j] = np.minimum(values[i], values[j]), np.maximum(values[i], values[j])


def median_of_frames(stack: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """Per-pixel median along the first axis of a small stack (depth, ...) of uint8 frames.

    Depths 3 and 5 use a min/max selection network (Devillard's opt_med3/opt_med5 orderings),
    several times faster than ``np.median``, which sorts; other depths fall back to it.
    """
    depth = stack.shape[0]
    if depth == 1:
        return stack[0].copy()
    if depth not in (3, 5):
        return np.median(stack, axis=0).astype(np.uint8)
    values = list(stack)
    pairs = (
        [(0, 1), (1, 2), (0, 1)]
        if depth == 3
        else [(0, 1), (3, 4), (0, 3), (1, 4), (1, 2), (2, 3), (1, 2)]
    )
    for i, j in pairs:
        _sort_pair(values, i, j)
    return values[depth // 2]


def illumination_mode(image: NDArray[np.float32], *, max_ir_chroma: float) -> str:
    """``"ir"`` for a colourless (night infrared) frame, else ``"day"``.

    ``image`` is (rows, cols, 3) in [0, 1]; chroma is the mean of max − min over the bands.
    """
    sample = image[::4, ::4]
    chroma = float((sample.max(axis=-1) - sample.min(axis=-1)).mean())
    return "ir" if chroma < max_ir_chroma else "day"


def _block_view(array: NDArray[np.float32], grid: tuple[int, int]) -> NDArray[np.float32]:
    rows, cols = array.shape[:2]
    block_rows, block_cols = rows // grid[0], cols // grid[1]
    trimmed = array[: block_rows * grid[0], : block_cols * grid[1]]
    blocks = trimmed.reshape(grid[0], block_rows, grid[1], block_cols, -1)
    return blocks.transpose(0, 2, 1, 3, 4).reshape(grid[0], grid[1], block_rows * block_cols, -1)


@lru_cache(maxsize=32)
def _interpolation_steps(
    size: int, cells: int
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float32]]:
    # Linear interpolation between cell centres: lower cell, upper cell and upper weight.
    position = np.clip((np.arange(size) + 0.5) / size * cells - 0.5, 0, cells - 1)
    lower = np.floor(position).astype(np.intp)
    upper = np.minimum(lower + 1, cells - 1)
    return lower, upper, (position - lower).astype(np.float32)


def upsample_field(field: NDArray[np.float32], shape: tuple[int, int]) -> NDArray[np.float32]:
    """Bilinear upsampling of a (grid_rows, grid_cols, bands) field to ``shape``, seam-free.

    Gathers and blends rather than matrix products: BLAS threads stall on a busy machine.
    """
    top, bottom, down = _interpolation_steps(shape[0], field.shape[0])
    left, right, across = _interpolation_steps(shape[1], field.shape[1])
    # Columns first on the small grid, then whole rows, which are contiguous block copies.
    by_cols = field[:, left] + (field[:, right] - field[:, left]) * across[None, :, None]
    by_cols = by_cols.astype(np.float32, copy=False)
    # In place on one full-size array: the temporaries cost more than the arithmetic.
    upper, out = by_cols[top], by_cols[bottom]
    out -= upper
    out *= down[:, None, None]
    out += upper
    return out


def match_illumination(
    image: NDArray[np.float32],
    reference: NDArray[np.float32],
    *,
    grid: tuple[int, int],
    max_gain: float,
) -> NDArray[np.float32]:
    """Match the snapshot's lighting to the reference, block by block and band by band.

    Exposure jumps, time of day and haze change brightness and contrast smoothly across the
    frame; a gain and offset per block from medians and inter-quartile ranges (robust to a
    change covering up to a quarter of a block) undo them while keeping local change.

    Parameters
    ----------
    image, reference : ndarray of shape (rows, cols, 3), float32 in [0, 1]
        The registered snapshot and the background.
    grid : tuple of int
        Blocks along (rows, cols).
    max_gain : float
        Gains are clipped to [1 / max_gain, max_gain].

    Returns
    -------
    ndarray of shape (rows, cols, 3), float32
        The snapshot in the reference's lighting, clipped to [0, 1].
    """
    quantiles = (25.0, 50.0, 75.0)
    # Every fourth pixel each way (hundreds per block) gives the quartiles at 1/16 of the cost.
    q_image = np.percentile(_block_view(image[::4, ::4], grid), quantiles, axis=2)
    q_ref = np.percentile(_block_view(reference[::4, ::4], grid), quantiles, axis=2)
    iqr_image = np.maximum(q_image[2] - q_image[0], 1e-3)
    iqr_ref = np.maximum(q_ref[2] - q_ref[0], 1e-3)
    gain = np.clip(iqr_ref / iqr_image, 1 / max_gain, max_gain).astype(np.float32)
    offset = (q_ref[1] - gain * q_image[1]).astype(np.float32)
    shape = (image.shape[0], image.shape[1])
    matched = image * upsample_field(gain, shape)
    matched += upsample_field(offset, shape)
    return np.clip(matched, 0.0, 1.0, out=matched)


def signal_level(image: NDArray[np.float32]) -> tuple[float, float]:
    """Mean brightness and spatial standard deviation of a (rows, cols, 3) frame in [0, 1]."""
    sample = gray(image[::4, ::4])
    return float(sample.mean()), float(sample.std())
