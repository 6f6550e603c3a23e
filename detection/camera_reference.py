"""A preset's robust background (median of recent accepted snapshots) and lighting match."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

from detection.camera_grid import shift_image, shift_valid_mask

# Residual noise is stored in quarter grey levels: far fields sit at 1–2 levels.
NOISE_UNITS = 4


@dataclass(frozen=True)
class ReferenceModel:
    """The background of one preset in one illumination mode (day colour or night IR).

    Attributes
    ----------
    frames : ndarray of shape (depth, rows, cols, 3), uint8
        Ring of recent accepted snapshots, registered, their brightness levelled to the
        reference's (their contrast their own).
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
    placed : bool
        Whether the background has been moved into the calibration's pixel grid (see
        :meth:`placed_at`). It starts in the grid of its first frame, wherever sway or an
        imprecise preset return had put the camera at that moment.
    shifts : tuple of (float, float)
        Until placed, the (rows, cols) shift that registered each snapshot onto it.
    border : tuple of int
        (rows, cols) of the placement's move and how many more frames must be added before no
        frame of the ring holds the border it uncovered (repeated content, not the ground);
        (0, 0, 0) when none does.
    """

    frames: NDArray[np.uint8]
    count: int
    added: int
    median: NDArray[np.uint8]
    spread: NDArray[np.uint8]
    noise: NDArray[np.uint8]
    placed: bool = False
    shifts: tuple[tuple[float, float], ...] = ()
    border: tuple[int, int, int] = (0, 0, 0)

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

    @classmethod
    def from_frames(
        cls, frames: NDArray[np.uint8], *, count: int, added: int, noise: NDArray[np.uint8]
    ) -> ReferenceModel:
        """A model whose median and spread are computed from its ring, as every model's are.

        Every way a model changes keeps them functions of ``frames[:count]`` (`start`,
        `with_frame`, and `adopting`, which writes one value into every filled frame), so a
        stored model need not hold them.
        """
        median, spread = _statistics(frames[:count])
        return cls(frames, count, added, median, spread, noise)

    def with_frame(self, image: NDArray[np.uint8]) -> ReferenceModel:
        """Return the model with ``image`` (rows, cols, 3) replacing the oldest frame."""
        depth = self.frames.shape[0]
        frames = self.frames.copy()
        frames[self.added % depth] = image
        count = min(self.count + 1, depth)
        median, spread = _statistics(frames[:count])
        rows, cols, to_go = self.border
        return replace(
            self,
            frames=frames,
            count=count,
            added=self.added + 1,
            median=median,
            spread=spread,
            border=(rows, cols, to_go - 1) if to_go > 1 else (0, 0, 0),
        )

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
        # One compiled pass (Numba is loaded on first use: see _lit).
        from detection.camera_kernels import updated_noise

        learned = self.added > 2
        noise = updated_noise(
            self.noise,
            residual,
            where,
            scale=255 * NOISE_UNITS,
            cap_offset=2 * NOISE_UNITS,
            learned=learned,
            rates=(rise, fall) if learned else (1.0 / self.added,) * 2,
        )
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
        return replace(self, frames=frames, median=median, spread=spread)

    def with_shift(self, shift: tuple[float, float]) -> ReferenceModel:
        """Return the model remembering one more snapshot's registration shift (rows, cols)."""
        return replace(self, shifts=(*self.shifts, (float(shift[0]), float(shift[1]))))

    def placement(self) -> tuple[int, int]:
        """Whole-pixel (rows, cols) move from this background's grid to the calibration's.

        A tower sways about its mast and a preset returns about its set pose, so the camera's
        positions average out at the pose it was calibrated in: the median of the shifts that
        registered snapshots onto the background is where the background's first frame stood
        off that pose (the median, so that a gust or a misregistered frame does not pull it).
        """
        rows, cols = np.median(np.asarray(self.shifts), axis=0)
        return -round(float(rows)), -round(float(cols))

    def placed_at(self, move: tuple[int, int]) -> ReferenceModel:
        """Return the model moved by whole pixels (rows, cols) and marked placed.

        Borders uncovered by the move repeat the nearest content, as a registered snapshot's
        do; they are not the ground until a ring's worth of frames has been added since (see
        :meth:`covering`).
        """
        return replace(
            self,
            frames=np.stack([shift_image(frame, move) for frame in self.frames]),
            median=shift_image(self.median, move),
            spread=shift_image(self.spread, move),
            noise=shift_image(self.noise, move),
            placed=True,
            shifts=(),
            border=(move[0], move[1], self.frames.shape[0]) if any(move) else (0, 0, 0),
        )

    def covering(self, valid: NDArray[np.bool_]) -> NDArray[np.bool_]:
        """`valid` (rows, cols) less the border a recent placement left without ground."""
        rows, cols, to_go = self.border
        if not to_go:
            return valid
        return valid & shift_valid_mask(valid.shape, (rows, cols))


def gray(image: NDArray[np.float32]) -> NDArray[np.float32]:
    """Mean of the bands of a (rows, cols, 3) float32 image, as (rows, cols).

    One compiled pass that reads each pixel once (Numba is loaded on first use: see
    match_illumination), the values of summing the three planes in NumPy.
    """
    from detection.camera_kernels import band_mean

    return band_mean(image)


def _median_of_three(stack: NDArray[np.uint8]) -> NDArray[np.uint8]:
    # Devillard's opt_med3 network (0,1), (1,2), (0,1), computing only the values the
    # median depends on.
    low = np.minimum(stack[0], stack[1])
    high = np.maximum(stack[0], stack[1])
    np.minimum(high, stack[2], out=high)
    return np.maximum(low, high, out=high)


def _median_of_five(stack: NDArray[np.uint8]) -> NDArray[np.uint8]:
    # Devillard's opt_med5 network (0,1), (3,4), (0,3), (1,4), (1,2), (2,3), (1,2), computing
    # only the values the median depends on: 10 minima and maxima instead of 14.
    v0 = np.minimum(stack[0], stack[1])
    v1 = np.maximum(stack[0], stack[1])
    v3 = np.minimum(stack[3], stack[4])
    v4 = np.maximum(stack[3], stack[4])
    np.maximum(v0, v3, out=v3)
    np.minimum(v1, v4, out=v1)
    v2 = np.maximum(v1, stack[2])
    np.minimum(v1, stack[2], out=v1)
    np.minimum(v2, v3, out=v2)
    return np.maximum(v1, v2, out=v2)


def _mean_rounded_down(low: NDArray[np.uint8], high: NDArray[np.uint8]) -> NDArray[np.uint8]:
    # What np.median gives for an even count once cast back to uint8: the mean of the two
    # middle values, rounded down (the sum of two levels is exact in 16 bits).
    total = low.astype(np.uint16)
    total += high
    total >>= 1
    return total.astype(np.uint8)


def _median_of_four(stack: NDArray[np.uint8]) -> NDArray[np.uint8]:
    # Sorting pairs (0,1) and (2,3), the two middle values of four are the larger of the
    # smaller ones and the smaller of the larger ones.
    lower = np.maximum(np.minimum(stack[0], stack[1]), np.minimum(stack[2], stack[3]))
    upper = np.minimum(np.maximum(stack[0], stack[1]), np.maximum(stack[2], stack[3]))
    return _mean_rounded_down(lower, upper)


def _statistics(filled: NDArray[np.uint8]) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    """Median of the filled frames, and their median absolute deviation (largest band)."""
    if filled.shape[0] == 5:  # a full ring: every snapshot after the first few
        # Numba is loaded on first use: see _lit.
        from detection.camera_kernels import statistics_of_five

        return statistics_of_five(filled)
    median = median_of_frames(filled)
    deviation = np.maximum(filled, median)
    deviation -= np.minimum(filled, median)
    per_band = median_of_frames(deviation)
    spread = np.maximum(np.maximum(per_band[..., 0], per_band[..., 1]), per_band[..., 2])
    return median, spread


def median_of_frames(stack: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """Per-pixel median along the first axis of a small stack (depth, ...) of uint8 frames.

    Depths 3 and 5 use a min/max selection network (Devillard's opt_med3/opt_med5 orderings),
    several times faster than ``np.median``, which sorts; depths 2 and 4 (a ring still
    filling) take the two middle values the same way and give what ``np.median`` gives cast
    to uint8, the mean of the two rounded down. Other depths fall back to ``np.median``.
    """
    depth = stack.shape[0]
    if depth == 1:
        return stack[0].copy()
    if depth == 2:
        return _mean_rounded_down(stack[0], stack[1])
    if depth == 3:
        return _median_of_three(stack)
    if depth == 4:
        return _median_of_four(stack)
    if depth == 5:
        return _median_of_five(stack)
    return np.median(stack, axis=0).astype(np.uint8)


def illumination_mode(image: NDArray[np.float32], *, max_ir_chroma: float) -> str:
    """``"ir"`` for a colourless (night infrared) frame, else ``"day"``.

    ``image`` is (rows, cols, 3) in [0, 1]; chroma is the mean of max − min over the bands.
    """
    sample = image[::4, ::4]
    # Band by band rather than max/min along the last axis, which numpy loops three values
    # at a time; the chroma array and its mean are the same.
    red, green, blue = sample[..., 0], sample[..., 1], sample[..., 2]
    chroma_map = np.maximum(np.maximum(red, green), blue)
    chroma_map -= np.minimum(np.minimum(red, green), blue)
    chroma = float(chroma_map.mean())
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


def _across_columns(field: NDArray[np.float32], cols: int) -> NDArray[np.float32]:
    """A (grid_rows, grid_cols, bands) field interpolated to `cols` columns on each grid row,
    as (grid_rows, cols × bands)."""
    left, right, across = _interpolation_steps(cols, field.shape[1])
    grid_rows, bands = field.shape[0], field.shape[2]
    # Each row is handled as one flat vector of (cols × bands) values with a weight per value:
    # a weight broadcast over the three bands alone makes numpy loop three values at a time,
    # which cost more than all the arithmetic.
    left_values = np.take(field, left, axis=1).reshape(grid_rows, -1)
    by_cols = np.take(field, right, axis=1).reshape(grid_rows, -1)
    by_cols -= left_values
    by_cols *= np.repeat(across, bands)
    by_cols += left_values
    return by_cols.astype(np.float32, copy=False)


def upsample_field(field: NDArray[np.float32], shape: tuple[int, int]) -> NDArray[np.float32]:
    """Bilinear upsampling of a (grid_rows, grid_cols, bands) field to ``shape``, seam-free.

    Gathers and blends rather than matrix products: BLAS threads stall on a busy machine.
    """
    top, bottom, down = _interpolation_steps(shape[0], field.shape[0])
    # Columns first on the small grid, then whole rows, which are contiguous block copies
    # (`take` copies rows several times faster than fancy indexing).
    by_cols = _across_columns(field, shape[1])
    upper = np.take(by_cols, top, axis=0)
    out = np.take(by_cols, bottom, axis=0)
    # In place on one full-size array: the temporaries cost more than the arithmetic.
    out -= upper
    out *= down[:, None]
    out += upper
    return out.reshape(shape[0], shape[1], field.shape[2])


def less_upsampled(image: NDArray[np.float32], field: NDArray[np.float32]) -> NDArray[np.float32]:
    """``image - upsample_field(field, image.shape[:2])`` in one compiled pass, the same values.

    ``image`` is (rows, cols, bands) and ``field`` (grid_rows, grid_cols, bands), float32.
    """
    # Imported here, as in _lit: the API never needs Numba.
    from detection.camera_kernels import less_field

    top, bottom, down = _interpolation_steps(image.shape[0], field.shape[0])
    return less_field(image, _across_columns(field, image.shape[1]), top, bottom, down)


def _block_quartiles(image: NDArray[np.float32], grid: tuple[int, int]) -> NDArray[np.float64]:
    """The 25th, 50th and 75th percentiles of each block and band, (3, grid_rows, grid_cols, 3)."""
    # Every fourth pixel each way (hundreds per block) gives the quartiles at 1/16 of the cost.
    return np.percentile(_block_view(image[::4, ::4], grid), (25.0, 50.0, 75.0), axis=2)


def _gain_and_offset(
    q_image: NDArray[np.float64], q_ref: NDArray[np.float64], max_gain: float
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    iqr_image = np.maximum(q_image[2] - q_image[0], 1e-3)
    iqr_ref = np.maximum(q_ref[2] - q_ref[0], 1e-3)
    gain = np.clip(iqr_ref / iqr_image, 1 / max_gain, max_gain).astype(np.float32)
    offset = (q_ref[1] - gain * q_image[1]).astype(np.float32)
    return gain, offset


def lighting_fields(
    image: NDArray[np.float32],
    reference: NDArray[np.float32],
    *,
    grid: tuple[int, int],
    max_gain: float,
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """The gain and offset, (grid_rows, grid_cols, 3) each, that `match_illumination` applies."""
    return _gain_and_offset(
        _block_quartiles(image, grid), _block_quartiles(reference, grid), max_gain
    )


def _lit(
    image: NDArray[np.float32], gain: NDArray[np.float32], offset: NDArray[np.float32]
) -> NDArray[np.float32]:
    # Imported here: the API imports this module (with the state format) but never matches
    # lighting or updates a ring, and importing Numba would cost each API process about 56 MiB.
    from detection.camera_kernels import apply_lighting

    # upsample_field(gain) · image + upsample_field(offset), clipped, in one compiled pass.
    top, bottom, down = _interpolation_steps(image.shape[0], gain.shape[0])
    cols = image.shape[1]
    return apply_lighting(
        image, _across_columns(gain, cols), _across_columns(offset, cols), top, bottom, down
    )


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
    return _lit(image, *lighting_fields(image, reference, grid=grid, max_gain=max_gain))


def matched_and_levelled(
    image: NDArray[np.float32],
    reference: NDArray[np.float32],
    *,
    grid: tuple[int, int],
    max_gain: float,
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """The snapshot in the reference's lighting (what is scored), and with only its
    brightness levelled to the reference, block by block, keeping its own contrast (what the
    background learns).

    A background that learned matched snapshots would hold its own contrast for ever,
    whatever the snapshots show: one started on a foggy frame stays foggy, and as the median
    of several frames is smoother than any of them, each generation of the ring is flatter
    than the last (a preset's background on a simulated world lost half its contrast in a
    year). Every change is then scored squeezed by as much. Levelled snapshots keep the
    background's brightness in step with the light while its contrast stays the median of
    what the snapshots themselves show.

    Parameters and clipping as in :func:`match_illumination`; one computation of the block
    quartiles serves both.
    """
    q_image, q_ref = _block_quartiles(image, grid), _block_quartiles(reference, grid)
    gain, offset = _gain_and_offset(q_image, q_ref, max_gain)
    level = (q_ref[1] - q_image[1]).astype(np.float32)
    return _lit(image, gain, offset), _lit(image, np.ones_like(gain), level)


def signal_level(image: NDArray[np.float32]) -> tuple[float, float]:
    """Mean brightness and spatial standard deviation of a (rows, cols, 3) frame in [0, 1]."""
    sample = gray(image[::4, ::4])
    return float(sample.mean()), float(sample.std())
