"""Tiled passes over a raster pair: halos make every tile's core equal the whole-image result."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import cv2
import numpy as np
from affine import Affine
from rasterio.features import rasterize
from scipy import ndimage
from shapely.geometry.base import BaseGeometry

from detection import align, decide, features, objects
from detection.errors import InvalidRasterError
from detection.io.planar import PlanarArray
from detection.radiometry import Normalisation
from detection.rs_params import RasterDetectorParams
from detection.rs_standout import STANDS_OUT


class RasterLike(Protocol):
    """An array, or a lazy reader that returns arrays for row/column slices."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def dtype(self) -> Any: ...

    def __getitem__(self, key: Any) -> np.ndarray: ...


class ScoreModel(Protocol):
    """A trained scorer (see detection.train): change probability per pixel of a window."""

    halo_px: int

    def score(
        self,
        before: np.ndarray,
        after: np.ndarray,
        valid: np.ndarray,
        roles: Sequence[str | None],
        noise: np.ndarray,
    ) -> np.ndarray: ...

    def thresholds(self) -> tuple[float, float]: ...


@dataclass(frozen=True)
class Grid:
    rows: int
    cols: int
    transform: Affine | None
    crs: str | None


def lattice_step(rows: int, cols: int, sample_pixels: int) -> int:
    return max(1, math.ceil(math.sqrt(rows * cols / sample_pixels)))


def valid_window(
    mask: RasterLike | None, key: tuple[slice, slice], shape: tuple[int, int]
) -> np.ndarray:
    if mask is None:
        return np.ones(shape, dtype=bool)
    return np.asarray(mask[key], dtype=bool)


def check_finite(before: np.ndarray, after: np.ndarray, valid: np.ndarray) -> None:
    """Refuse NaN or infinite values in pixels marked valid."""
    for name, pixels in (("before", before), ("after", after)):
        if np.isfinite(pixels).all():
            continue
        if not np.isfinite(pixels[valid]).all():
            raise InvalidRasterError(
                f"the {name} image holds NaN or infinite values in pixels marked valid; "
                "declare them nodata (or pass a validity mask) so they are excluded"
            )


def without_invalid(
    before: np.ndarray, after: np.ndarray, valid: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Refuse NaN/inf in valid pixels; make invalid pixels finite and equal (no change)."""
    check_finite(before, after, valid)
    if not valid.all():
        before = np.where(valid[:, :, None], before, 0.0).astype(np.float32)
        after = np.where(valid[:, :, None], after, before).astype(np.float32)
    return before, after


#: Rows grown at a time when a sample lattice is read from a buffered mask.
SAMPLE_STRIP_ROWS = 512


@dataclass(frozen=True, eq=False)
class BufferedValid:
    """A validity mask whose invalid areas are grown by `radius_px` (a square), read lazily.

    Each read takes `radius_px` of context around the window, so a window gives exactly
    what the whole grown mask holds there; beyond the image edge counts as valid.
    """

    mask: RasterLike
    radius_px: int

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.mask.shape[:2])

    @property
    def dtype(self) -> Any:
        return np.dtype(bool)

    def __getitem__(self, key: Any) -> np.ndarray:
        rows, cols = (_span(part, size) for part, size in zip(key, self.shape, strict=True))
        step = rows.step or 1
        if step == 1 or rows.stop - rows.start <= SAMPLE_STRIP_ROWS:
            return self._grown(rows, cols)
        # A sample lattice over a lazy mask: grow strip by strip, so that no read spans
        # the whole image; each strip starts on a sampled row.
        stride = max(1, SAMPLE_STRIP_ROWS // step) * step
        strips = [
            self._grown(slice(top, min(top + stride, rows.stop), step), cols)
            for top in range(rows.start, rows.stop, stride)
        ]
        return np.concatenate(strips)

    def _grown(self, rows: slice, cols: slice) -> np.ndarray:
        r0, c0 = max(rows.start - self.radius_px, 0), max(cols.start - self.radius_px, 0)
        r1 = min(rows.stop + self.radius_px, self.shape[0])
        c1 = min(cols.stop + self.radius_px, self.shape[1])
        valid = np.asarray(self.mask[r0:r1, c0:c1], dtype=bool)
        # Nothing to grow in a fully valid window (the common case): skip the filter.
        grown = (
            valid
            if valid.all()
            else ndimage.minimum_filter(valid, size=2 * self.radius_px + 1, mode="constant", cval=1)
        )
        core = grown[rows.start - r0 : rows.stop - r0, cols.start - c0 : cols.stop - c0]
        return core[:: rows.step or 1, :: cols.step or 1]


def _span(part: slice, size: int) -> slice:
    start, stop, step = part.indices(size)
    return slice(start, max(stop, start), step)


def buffered(mask: RasterLike | None, radius_px: int) -> RasterLike | None:
    """`mask` with invalid areas grown by `radius_px` (None and 0 leave it as it is)."""
    if mask is None or radius_px <= 0:
        return mask
    return BufferedValid(mask, radius_px)


# --- tiles ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    core: tuple[slice, slice]
    outer: tuple[slice, slice]
    inner: tuple[slice, slice]  # the core, in coordinates of the outer window


def windows(rows: int, cols: int, tile: int, halo: int) -> Iterator[Window]:
    for top in range(0, rows, tile):
        for left in range(0, cols, tile):
            bottom, right = min(top + tile, rows), min(left + tile, cols)
            r0, c0 = max(top - halo, 0), max(left - halo, 0)
            r1, c1 = min(bottom + halo, rows), min(right + halo, cols)
            yield Window(
                core=(slice(top, bottom), slice(left, right)),
                outer=(slice(r0, r1), slice(c0, c1)),
                inner=(slice(top - r0, bottom - r0), slice(left - c0, right - c0)),
            )


T = TypeVar("T")


def each_window(
    work: Callable[[Window], T], tiles: Iterable[Window], *, threads: int = 1
) -> list[T]:
    """`work` on every window, in window order, on up to `threads` threads at once.

    NumPy and SciPy's filters release the GIL, so tiles run side by side on several cores.
    Each window's work writes only its own core of a shared output, and results come back in
    window order, so the outcome is the same for any number of threads.
    """
    if threads <= 1:
        return [work(window) for window in tiles]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(work, tiles))


@dataclass(frozen=True, eq=False)
class Source:
    before: RasterLike
    after: RasterLike
    before_valid: RasterLike | None
    after_valid: RasterLike | None
    normalisation: Normalisation
    shift: tuple[float, float]

    def read(self, key: tuple[slice, slice]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(before, normalised after, valid) of a window, float32."""
        before = np.asarray(self.before[key], dtype=np.float32)
        after = self.normalisation.apply(np.asarray(self.after[key], dtype=np.float32))
        shape = before.shape[:2]
        valid = valid_window(self.before_valid, key, shape) & valid_window(
            self.after_valid, key, shape
        )
        before, after = without_invalid(before, after, valid)
        after = align.shift_image(after, self.shift)
        return before, after, valid

    def read_planes(self, key: tuple[slice, slice]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`read` as contiguous band planes (bands, rows, cols): the same values, without
        interleaving an image that is stored (or filtered) plane by plane."""
        before = _planes(self.before, key)
        after = _planes(self.after, key)
        gain = self.normalisation.gain.astype(np.float32)
        offset = self.normalisation.offset.astype(np.float32)
        for band, plane in enumerate(after):  # Normalisation.apply, band by band
            plane *= gain[band]
            plane += offset[band]
        valid = valid_window(self.before_valid, key, before.shape[1:]) & valid_window(
            self.after_valid, key, before.shape[1:]
        )
        if not _always_finite(self.before) or not _always_finite(self.after):
            check_finite(np.moveaxis(before, 0, -1), np.moveaxis(after, 0, -1), valid)
        if not valid.all():
            before = np.where(valid, before, np.float32(0.0))
            after = np.where(valid, after, before)
        if self.shift != (0.0, 0.0):
            after = np.stack(
                [ndimage.shift(plane, self.shift, order=1, mode="nearest") for plane in after]
            )
        return before, after, valid

    def read_score_inputs(
        self, key: tuple[slice, slice], workspace: features.Workspace | None = None
    ) -> features.ScoreInputs:
        """What `features.coarse_change_score` needs of a window (`features.score_inputs`).

        The band planes go in as read: stored integer planes as views, without a float32
        copy, and the after date is normalised in the same pass that differences it. A
        sub-pixel shift interpolates the normalised after date first (`read_planes`).
        """
        if self.shift != (0.0, 0.0):
            before, after, valid = self.read_planes(key)
            bands = before.shape[0]
            return features.score_inputs(
                before,
                after,
                valid,
                gain=np.ones(bands),
                offset=np.zeros(bands),
                noise=self.normalisation.noise,
                workspace=workspace,
            )
        before, after = _stored_planes(self.before, key), _stored_planes(self.after, key)
        valid = valid_window(self.before_valid, key, before.shape[1:]) & valid_window(
            self.after_valid, key, before.shape[1:]
        )
        if not _always_finite(self.before) or not _always_finite(self.after):
            check_finite(np.moveaxis(before, 0, -1), np.moveaxis(after, 0, -1), valid)
        return features.score_inputs(
            before,
            after,
            valid,
            gain=self.normalisation.gain,
            offset=self.normalisation.offset,
            noise=self.normalisation.noise,
            workspace=workspace,
        )


def _stored_planes(image: RasterLike, key: tuple[slice, slice]) -> np.ndarray:
    """The window's band planes (bands, rows, cols) as stored: a view of planes held whole,
    float32 planes of anything else."""
    if isinstance(image, PlanarArray):
        rows, cols = key
        return image.stored[:, rows, cols]
    return _planes(image, key)


def _planes(image: RasterLike, key: tuple[slice, slice]) -> np.ndarray:
    """A new array always: the planes are normalised in place, the caller's image never is."""
    if isinstance(image, PlanarArray):
        return image.planes(key)
    window = np.asarray(image[key], dtype=np.float32)
    return np.array(np.moveaxis(window, 2, 0), dtype=np.float32, order="C", copy=True)


def _always_finite(image: RasterLike) -> bool:
    """Integer samples cannot be NaN or infinite (nor become so under a plausible gain)."""
    return isinstance(image, PlanarArray) and image.integer


_FLOAT16_MAX = float(np.finfo(np.float16).max)


# The whole-grid score is float16. NumPy converts to and from it one value at a time, which
# cost about 5 ms a tile; OpenCV's conversion is vectorised and gives the same values: a
# product by 1 is exact, and both round to the nearest float16, ties to even, overflowing
# to infinity (NaN stays NaN, its payload aside).


def as_float16(values: np.ndarray) -> np.ndarray:
    """`values.astype(np.float16)` for a float32 plane, through OpenCV; as NumPy otherwise."""
    if values.dtype == np.float32 and values.ndim == 2 and values.size:
        # A scalar second operand, which OpenCV takes but its type stubs do not list.
        return cv2.multiply(values, 1.0, dtype=cv2.CV_16F)  # type: ignore[call-overload]
    return values.astype(np.float16)


def as_float32(values: np.ndarray) -> np.ndarray:
    """`values.astype(np.float32)` for a float16 plane, through OpenCV; as NumPy otherwise."""
    if values.dtype == np.float16 and values.ndim == 2 and values.size:
        # A scalar second operand, which OpenCV takes but its type stubs do not list.
        return cv2.multiply(values, 1.0, dtype=cv2.CV_32F)  # type: ignore[call-overload]
    return values.astype(np.float32)


def score_image(
    source: Source,
    grid: Grid,
    roles: tuple[str | None, ...],
    params: RasterDetectorParams,
    model: ScoreModel | None,
    *,
    threads: int = 1,
) -> np.ndarray:
    shift_halo = math.ceil(max(abs(s) for s in source.shift)) + 1
    halo = (model.halo_px if model else features.coarse_halo_px(params.scales_px)) + shift_halo
    # The unsupervised score halves each window: windows that start on even pixels halve onto
    # one coarse grid, so tiles add up to the whole image's score.
    halo += halo % 2
    tile = params.tile_px - params.tile_px % 2
    score = np.zeros((grid.rows, grid.cols), dtype=np.float16)
    noise = source.normalisation.noise
    # Each thread reuses its scratch arrays from one window to the next.
    scratch = threading.local()

    def score_window(window: Window) -> None:
        if model is not None:
            before, after, valid = source.read(window.outer)
            values = model.score(before, after, valid, roles, noise)
            np.minimum(values, _FLOAT16_MAX, out=values)
        else:
            if not hasattr(scratch, "workspace"):
                scratch.workspace = features.Workspace()
            values = features.coarse_change_score(
                source.read_score_inputs(window.outer, scratch.workspace),
                noise=noise,
                scales_px=params.scales_px,
                texture_weight=params.texture_weight,
                ceiling=_FLOAT16_MAX,
                workspace=scratch.workspace,
            )
        # Kept as float16 to halve the whole-grid score's memory; on a scene with almost no
        # noise a score can exceed float16's range, so it saturates there (`_FLOAT16_MAX`
        # above) instead of becoming inf, which the threshold's statistics could not use.
        score[window.core] = as_float16(values[window.inner])

    each_window(score_window, windows(grid.rows, grid.cols, tile, halo), threads=threads)
    return score


def thresholds(
    score: np.ndarray, params: RasterDetectorParams, model: ScoreModel | None
) -> tuple[float, float]:
    if model is not None:
        return model.thresholds()
    step = lattice_step(score.shape[0], score.shape[1], params.sample_pixels)
    sample = score[::step, ::step].astype(np.float32).ravel()
    if params.threshold_method == "noise":
        strong = decide.noise_threshold(
            sample, floor=params.threshold_floor, sigmas=params.noise_sigmas
        )
    else:
        strong = decide.adaptive_threshold(sample, floor=params.threshold_floor)
    return strong, strong * params.hysteresis_low_fraction


def _farmland_window(
    farmland: Sequence[BaseGeometry] | None, grid: Grid, key: tuple[slice, slice]
) -> np.ndarray | None:
    if farmland is None:
        return None
    rows, cols = key[0].stop - key[0].start, key[1].stop - key[1].start
    base = grid.transform or Affine.scale(1.0)
    window_transform = base @ Affine.translation(key[1].start, key[0].start)
    shapes = [g for g in farmland if not g.is_empty]
    if not shapes:
        return np.zeros((rows, cols), dtype=bool)
    return rasterize(
        shapes,
        out_shape=(rows, cols),
        transform=window_transform,
        fill=0,
        default_value=1,
        dtype="uint8",
    ).astype(bool)


def decide_image(
    score: np.ndarray,
    source: Source,
    grid: Grid,
    farmland: Sequence[BaseGeometry] | None,
    strong: float,
    weak: float,
    mmu_px: int,
    params: RasterDetectorParams,
    *,
    threads: int = 1,
) -> np.ndarray:
    halo = decide.decision_halo_px(
        reach_px=params.hysteresis_reach_px,
        opening_radius_px=params.opening_radius_px,
        closing_radius_px=params.closing_radius_px,
        mmu_px=mmu_px,
    )
    mask = np.zeros((grid.rows, grid.cols), dtype=bool)

    def decide_window(window: Window) -> None:
        values = as_float32(score[window.outer])
        if values.max(initial=0.0) < strong:
            return
        shape = values.shape
        allowed = valid_window(source.before_valid, window.outer, shape) & valid_window(
            source.after_valid, window.outer, shape
        )
        inside = _farmland_window(farmland, grid, window.outer)
        if inside is not None:
            allowed &= inside
        decided = decide.decide(
            values,
            allowed,
            strong=strong,
            weak=weak,
            reach_px=params.hysteresis_reach_px,
            opening_radius_px=params.opening_radius_px,
            closing_radius_px=params.closing_radius_px,
            mmu_px=mmu_px,
        )
        mask[window.core] = decided[window.inner]

    each_window(decide_window, windows(grid.rows, grid.cols, params.tile_px, halo), threads=threads)
    return mask


def collect_objects(
    mask: np.ndarray,
    score: np.ndarray,
    source: Source,
    grid: Grid,
    roles: tuple[str | None, ...],
    params: RasterDetectorParams,
    judged: np.ndarray | None = None,
    *,
    threads: int = 1,
) -> list[objects.ObjectPiece]:
    """Object pieces of the mask, split by material class and, with `judged`, by whether
    they stand out from their parcel (class + JUDGEMENT_STRIDE × judgement)."""
    base = grid.transform or Affine.identity()
    shift_halo = math.ceil(max(abs(s) for s in source.shift)) + 1

    def window_pieces(window: Window) -> list[objects.ObjectPiece]:
        core = mask[window.core]
        if not core.any():
            return []
        # Indices only over the bounding box of the change in this core.
        region = decide.bounding_box(core)
        rows, cols = window.core
        if source.shift == (0.0, 0.0):
            # Every step of `Source.read` is then pixel by pixel: reading just the box gives
            # its values exactly, without converting and normalising the rest of the window.
            box = (
                slice(rows.start + region[0].start, rows.start + region[0].stop),
                slice(cols.start + region[1].start, cols.start + region[1].stop),
            )
            before, after, _ = source.read(box)
        else:
            # A sub-pixel shift interpolates from neighbours, in the window's coordinates.
            before, after, _ = source.read(window.outer)
            before, after = before[window.inner][region], after[window.inner][region]
        indices_before = features.spectral_indices(before, roles)
        indices_after = features.spectral_indices(after, roles)
        classes = objects.surface_class(indices_before, indices_after, water_ndwi=params.water_ndwi)
        if judged is not None:
            judgement = judged[window.core][region].astype(np.int8)
            # What stands out from its parcel is one object whatever its materials (a roof
            # and its shadow); its material is judged from its mean indices later.
            material = np.where(judgement == STANDS_OUT, objects.OTHER, classes)
            classes = material + objects.JUDGEMENT_STRIDE * judgement
        return objects.tile_pieces(
            core,
            as_float32(score[window.core]),
            indices_before,
            indices_after,
            classes=classes,
            transform=base @ Affine.translation(cols.start, rows.start),
            touches_edge=(
                rows.start > 0,
                rows.stop < grid.rows,
                cols.start > 0,
                cols.stop < grid.cols,
            ),
            region=region,
        )

    tiles = windows(grid.rows, grid.cols, params.tile_px, shift_halo)
    found = each_window(window_pieces, tiles, threads=threads)
    return objects.merge_pieces([piece for pieces in found for piece in pieces])
