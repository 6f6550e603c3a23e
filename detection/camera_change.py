"""Change scoring inside a preset's watched farmland, and outlines of confirmed changes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache, cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import shapely
import shapely.affinity
from affine import Affine
from numpy.typing import NDArray
from rasterio import features
from scipy import ndimage
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry
from skimage.segmentation import felzenszwalb

from detection.camera_reference import gray, less_upsampled
from detection.decide import dilate
from detection.filters import box_mean
from detection.geolocate import (
    Calibration,
    ground_area_m2,
    ground_extent_m,
    image_geometry_to_lonlat,
    parcels_in_image,
    watched_ground,
    watched_image_region,
)

if TYPE_CHECKING:
    from detection.camera import CameraParams

_ROI_CACHE: dict[bytes, NDArray[np.bool_]] = {}
_PARCEL_CACHE: dict[tuple[bytes, int], tuple[tuple[BaseGeometry, ...], NDArray[np.int32]]] = {}
_ROI_CACHE_SIZE = 64
#: Pixels of a parcel outside a change needed to tell whether the parcel changed with it.
_MIN_PARCEL_REST_PX = 10
_WKB_CACHE: dict[int, tuple[BaseGeometry, bytes]] = {}


@dataclass(frozen=True)
class ChangeScore:
    """Per-pixel change evidence of one snapshot against its background.

    Attributes
    ----------
    score : ndarray of shape (rows, cols), float32
        Combined colour and structure change; 1 is the detection threshold.
    candidates : ndarray of shape (rows, cols), bool
        Change regions inside the watched region, small specks removed.
    residual : ndarray of shape (rows, cols), float32
        Local colour difference from the background (see :func:`local_residual`), fraction.
    local : ndarray of shape (rows, cols, 3), float32
        That difference per band, signed: which way the colour changed.
    difference : ndarray of shape (rows, cols, 3), float32
        Plain colour difference from the background, signed, fraction.
    allowance : ndarray of shape (rows, cols), float32
        What the plain difference is measured against: the plain threshold plus the pooled
        variability of the background, fraction.
    """

    score: NDArray[np.float32]
    candidates: NDArray[np.bool_]
    residual: NDArray[np.float32]
    local: NDArray[np.float32]
    difference: NDArray[np.float32]
    allowance: NDArray[np.float32]

    @cached_property
    def colour(self) -> NDArray[np.float32]:
        """Plain colour difference against ``allowance``, (rows, cols) float32, unsmoothed.

        Sharp edges for outlines; only snapshots that confirm a change need it, so it is
        computed on first use.
        """
        return (_norm(self.difference) / self.allowance).astype(np.float32, copy=False)


@dataclass(frozen=True)
class Outlines:
    """Confirmed changes of one snapshot.

    Attributes
    ----------
    found : list of dict
        Keyword arguments of :class:`~detection.camera.CameraDetection`, one per detection.
    open_mask : ndarray of shape (rows, cols), bool
        Reported changes so far, including these (never learned into the background).
    farm_work : ndarray of shape (rows, cols), bool
        Confirmed regions too large for a violation, to learn into the background at once.
    """

    found: list[dict[str, Any]]
    open_mask: NDArray[np.bool_]
    farm_work: NDArray[np.bool_]


def _geometry_wkb(geometry: BaseGeometry) -> bytes:
    # Shapely geometries are immutable, so one held here keeps its id and its WKB; writing the
    # WKB of a farmland of many parcels anew twice a snapshot cost more than the mask lookup.
    held = _WKB_CACHE.get(id(geometry))
    if held is not None and held[0] is geometry:
        return held[1]
    if len(_WKB_CACHE) >= _ROI_CACHE_SIZE:
        _WKB_CACHE.clear()
    wkb = geometry.wkb
    _WKB_CACHE[id(geometry)] = (geometry, wkb)
    return wkb


def _calibration_key(calibration: Calibration, shape: tuple[int, int], params: Any) -> bytes:
    farmland = _geometry_wkb(calibration.farmland) if calibration.farmland is not None else b""
    parts = (
        calibration.homography.tobytes(),
        farmland,
        repr((calibration.image_size, shape, params.text_boxes, params.geolocate)).encode(),
    )
    return b"|".join(parts)


def region_of_interest(
    calibration: Calibration, *, shape: tuple[int, int], params: CameraParams
) -> NDArray[np.bool_]:
    """Working-resolution mask (rows, cols) of the watched farmland minus on-screen text."""
    key = _calibration_key(calibration, shape, params)
    cached = _ROI_CACHE.get(key)
    if cached is not None:
        return cached
    scale = calibration.image_size[0] / shape[1]
    region = watched_image_region(calibration, params=params.geolocate)
    if region.is_empty:
        mask = np.zeros(shape, dtype=bool)
    else:
        mask = features.rasterize(
            [region], out_shape=shape, transform=Affine.scale(scale), dtype="uint8"
        ).astype(bool)
    rows, cols = shape
    for col0, row0, col1, row1 in params.text_boxes:
        mask[
            int(row0 * rows) : int(np.ceil(row1 * rows)),
            int(col0 * cols) : int(np.ceil(col1 * cols)),
        ] = False
    if len(_ROI_CACHE) >= _ROI_CACHE_SIZE:
        _ROI_CACHE.clear()
    _ROI_CACHE[key] = mask
    return mask


def parcel_labels(
    calibration: Calibration, *, shape: tuple[int, int], params: CameraParams
) -> NDArray[np.int32] | None:
    """Working-resolution labels (rows, cols) of the calibration's parcels, 0 outside them.

    Parcel *i* of ``calibration.parcels`` is drawn as *i* + 1; where two overlap the later one
    shows. None when the calibration names no parcels.
    """
    parcels = calibration.parcels
    if not parcels:
        return None
    # A preset's parcels come as one tuple of immutable geometries, rebuilt only when the
    # farmland changes. Their WKB (about 1 ms for 200 parcels) would be written anew on every
    # snapshot, so the tuple itself is the key, held here so that its id is not reused.
    key = (_calibration_key(calibration, shape, params), id(parcels))
    held = _PARCEL_CACHE.get(key)
    if held is not None and held[0] is parcels:
        return held[1]
    drawn = [
        (geometry, label)
        for label, geometry in enumerate(parcels_in_image(calibration, params=params.geolocate), 1)
        if not geometry.is_empty
    ]
    scale = calibration.image_size[0] / shape[1]
    labels = (
        features.rasterize(drawn, out_shape=shape, transform=Affine.scale(scale), dtype="int32")
        if drawn
        else np.zeros(shape, dtype=np.int32)
    )
    if len(_PARCEL_CACHE) >= _ROI_CACHE_SIZE:
        _PARCEL_CACHE.clear()
    _PARCEL_CACHE[key] = (parcels, labels)
    return labels


def _inset(valid: NDArray[np.bool_], margin: int) -> NDArray[np.bool_]:
    # Erosion by a square, as four shifted ANDs: exact for the rectangles that shifts leave and
    # ten times cheaper than binary_erosion.
    inner = valid.copy()
    inner[margin:] &= valid[:-margin]
    inner[:-margin] &= valid[margin:]
    inner[:, margin:] &= valid[:, :-margin]
    inner[:, :-margin] &= valid[:, margin:]
    return inner


def _local_mean_grid(image: NDArray[np.float32], window: int) -> NDArray[np.float32]:
    """Mean of (rows, cols, bands) over about ``window`` pixels, as the grid of smoothed block
    means (grid rows, grid cols, bands) that `upsample_field` brings back to full size.

    Averaging blocks of window/5 pixels, smoothing that small grid over 5 cells and
    interpolating back costs a tenth of a full-resolution box filter of the same size.
    """
    factor = max(1, window // 5)
    rows, cols = image.shape[0] // factor, image.shape[1] // factor
    bands = image.shape[2]
    trimmed = np.ascontiguousarray(image[: rows * factor, : cols * factor])
    # Two contiguous sums are far faster than one mean over two strided axes.
    by_rows = trimmed.reshape(rows, factor, cols * factor * bands).sum(axis=1)
    coarse = by_rows.reshape(rows, cols, factor, bands).sum(axis=2) / (factor * factor)
    coarse = ndimage.uniform_filter(coarse, size=(5, 5, 1), mode="nearest")
    return coarse.astype(np.float32, copy=False)


def _norm(rgb: NDArray[np.float32]) -> NDArray[np.float32]:
    """Root-mean-square over the bands of (rows, cols, 3) float32, as (rows, cols), in one
    compiled pass (Numba is loaded on first use: see camera_reference._lit)."""
    from detection.camera_kernels import band_rms

    return band_rms(rgb)


def _edge_change(difference: NDArray[np.float32]) -> NDArray[np.float32]:
    """Local mean gradient magnitude of a (rows, cols) difference: new or lost edges, texture."""
    # Numba is loaded on first use: see camera_reference._lit.
    from detection.camera_kernels import step_sum

    return box_mean(step_sum(difference), 5)


def _block_texture(gray_image: NDArray[np.float32], block: int) -> NDArray[np.float32]:
    """Mean absolute horizontal gradient of (rows, cols) per block of ``block`` pixels."""
    gradient = np.diff(gray_image, axis=1)
    np.abs(gradient, out=gradient)
    rows, cols = gradient.shape[0] // block, gradient.shape[1] // block
    trimmed = gradient[: rows * block, : cols * block]
    return trimmed.reshape(rows, block, cols, block).mean(axis=(1, 3))


def row_medians(values: NDArray[np.float32]) -> NDArray[np.float32]:
    """Median of each row of (rows, cols) leaving out NaN, as (rows,); NaN for a row of NaN.

    The values of ``np.nanmedian(values, axis=1)``, which for small arrays goes through masked
    arrays and costs ten times more: sort each row (NaN last) and average its two middle values
    (one, taken twice, for an odd count) the way it does, in the values' own precision.
    """
    ordered = np.sort(values, axis=1)
    count = np.count_nonzero(~np.isnan(values), axis=1)
    high = count // 2
    low = np.where(count % 2 == 1, high, high - 1)
    rows = np.arange(values.shape[0])
    middle = ordered[rows, low] + ordered[rows, high]
    return middle / np.asarray(2, dtype=middle.dtype)


def seen_clearly(
    gray_now: NDArray[np.float32], gray_ref: NDArray[np.float32], *, params: CameraParams
) -> NDArray[np.bool_]:
    """Where the snapshot shows the ground as sharply as the background does, (rows, cols).

    Fog, rain and haze wash out texture across the whole width of the frame from some distance
    on; ploughing or new concrete wash it out only on their own ground. So a band of rows is
    hidden when the median block along it keeps less than ``params.clear_texture`` of the
    background's texture.
    """
    block = params.clear_block_px
    reference = _block_texture(gray_ref, block)
    ratio = _block_texture(gray_now, block) / np.maximum(reference, 1e-4)
    # Blocks with little texture in the background (sky, water) tell nothing.
    textured = np.asarray(reference > 0.25 * float(np.median(reference)), dtype=bool)
    ratio = np.where(textured, ratio, np.nan)
    has_texture = np.any(textured, axis=1).reshape(-1, 1)
    along = row_medians(np.where(has_texture, ratio, 1.0))
    clear_rows = np.repeat(~(along < params.clear_texture), block)
    out = np.ones(gray_now.shape, dtype=bool)
    out[: clear_rows.size] = clear_rows[:, None]
    return out


def _local_difference(
    matched: NDArray[np.float32], background: NDArray[np.float32], window: int, smooth: int
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    difference = matched - background
    # Only change that stands out from its surroundings counts: a whole parcel turning over
    # (ploughing, harvest, a new crop) shifts the local mean too and keeps only its edges,
    # while a building or a dug pit inside the parcel keeps its full contrast.
    local = less_upsampled(difference, _local_mean_grid(difference, window))
    if smooth > 1:
        # Averaging the signed difference before taking its length lets frame noise cancel
        # while an object's change, the same sign over all its pixels, keeps its full size.
        local = box_mean(local, smooth, mode="nearest")
    return difference, local


def local_residual(
    matched: NDArray[np.float32], background: NDArray[np.float32], window: int, smooth: int
) -> NDArray[np.float32]:
    """RGB distance (rows, cols) of the snapshot from the background, less its local mean.

    ``matched`` and ``background`` are (rows, cols, 3) in [0, 1]; the local mean is taken
    over about ``window`` pixels and the signed difference averaged over ``smooth`` × ``smooth``
    pixels before its length is taken.
    """
    return _norm(_local_difference(matched, background, window, smooth)[1])


def mask_box(mask: NDArray[np.bool_]) -> tuple[slice, slice] | None:
    """The smallest (rows, cols) box holding every True pixel of ``mask``; None when none is.

    Labelling the box instead of the frame gives the same labels (its pixels keep their
    raster order) at the cost of the box: the detector's masks are sparse.
    """
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def threshold_regions(
    score: NDArray[np.float32], *, low: float, high: float, min_area_px: int
) -> NDArray[np.bool_]:
    """Regions (rows, cols) of ``score`` above ``low`` that exceed ``high`` somewhere.

    Regions are 4-connected; those of fewer than ``min_area_px`` pixels are dropped. This is
    scikit-image's ``apply_hysteresis_threshold(score, low, high)`` followed by
    ``remove_small_objects(..., max_size=min_area_px - 1)``, with one labelling instead of
    two: a region kept by hysteresis is a whole region of the low mask, so its size is
    known from that labelling. Most snapshots have nothing above ``high`` and need none.
    """
    kept = np.zeros(score.shape, dtype=bool)
    if not (score > high).any():
        return kept
    region = score > min(low, high)
    box = mask_box(region)
    assert box is not None  # it holds the pixels above high
    labels, count = ndimage.label(region[box])
    # Numba is loaded on first use: see camera_reference._lit.
    from detection.camera_kernels import kept_regions

    kept[box] = kept_regions(labels, score[box], high=high, count=count, min_area_px=min_area_px)
    return kept


def score_change(
    matched: NDArray[np.float32],
    background: NDArray[np.float32],
    *,
    spread: NDArray[np.float32],
    noise: NDArray[np.float32],
    valid: NDArray[np.bool_],
    calibration: Calibration,
    params: CameraParams,
) -> ChangeScore:
    """Score change on colour and structure together, inside the watched region.

    Parameters
    ----------
    matched : ndarray of shape (rows, cols, 3), float32 in [0, 1]
        The registered snapshot in the background's lighting.
    background : ndarray of shape (rows, cols, 3), float32 in [0, 1]
        The preset's median background.
    spread : ndarray of shape (rows, cols), float32
        Per-pixel variability of the background (median absolute deviation), fraction.
    noise : ndarray of shape (rows, cols), float32
        Per-pixel residual noise (see :class:`~detection.camera_reference.ReferenceModel`),
        fraction.
    valid : ndarray of shape (rows, cols), bool
        Pixels the registered snapshot covers.
    calibration : Calibration
        Gives the watched farmland in the image.
    params : CameraParams
        Thresholds and minimum region size.

    Returns
    -------
    ChangeScore
    """
    difference, local = _local_difference(
        matched, background, params.object_window_px, params.signal_window_px
    )
    residual = _norm(local)
    # Pixels that vary a lot in the background (wind in trees, water, misregistered texture),
    # or whose residual keeps varying after lighting matching (parcel edges under evening
    # light and haze), need more to count; both are noisy per pixel, so they are pooled.
    variability = params.noise_factor * spread + params.residual_factor * noise
    pooled: NDArray[np.float32] = box_mean(variability, 5)
    colour_score = params.colour_threshold + pooled
    np.divide(residual, colour_score, out=colour_score)
    # The plain difference has no halo around an object: it draws the outlines and shows how
    # far a change reaches (farm work). It keeps its own threshold: seasonal drift and light
    # shift whole parcels by more than a faint object stands out locally.
    allowance = params.plain_threshold + pooled
    structure_score = _edge_change(gray(difference))
    structure_score /= params.structure_threshold
    # Colour carries the decision; agreeing structure (new edges, lost texture) adds to it.
    score = np.minimum(colour_score, structure_score, out=structure_score)
    score *= 0.5
    score += colour_score
    score = box_mean(score.astype(np.float32, copy=False), 3)
    # Pixels near the edge of the registered content see the fill through the filters.
    inner = _inset(valid, 4)
    roi = region_of_interest(calibration, shape=score.shape, params=params) & inner
    np.copyto(score, np.float32(0.0), where=~roi)
    candidates = threshold_regions(
        score, low=params.hysteresis_low, high=1.0, min_area_px=params.min_area_px
    )
    return ChangeScore(
        score=score,
        candidates=candidates,
        residual=residual,
        local=local,
        difference=difference,
        allowance=allowance,
    )


def _guess_type(new: NDArray[np.float32], area_px: int, params: Any) -> str:
    colour = new.mean(axis=0)
    saturation = float(colour.max() - colour.min())
    brightness = float(colour.mean())
    if saturation < 0.08 and brightness > 0.45:
        return "building_or_hardening"
    red, green, blue = colour
    if red > green > blue and saturation >= 0.08 and brightness < 0.6:
        return "soil_works"
    if area_px < 4 * params.min_area_px:
        return "machinery_or_object"
    return "land_change"


def _outline(component: NDArray[np.bool_], scale: float) -> shapely.geometry.base.BaseGeometry:
    polygons = [
        shape(geometry)
        for geometry, value in features.shapes(
            component.astype(np.uint8), mask=component, transform=Affine.scale(scale)
        )
        if value == 1
    ]
    return shapely.union_all(polygons).simplify(scale * 0.5)


def _tight(
    component: NDArray[np.bool_], colour: NDArray[np.float32], low: float
) -> NDArray[np.bool_]:
    # SSIM windows and smoothing widen a candidate by a few pixels on every side; the per-pixel
    # colour difference has sharp edges, so it draws the outline when it covers enough of it.
    sharp = component & (colour >= low)
    if sharp.sum() < 0.3 * component.sum():
        return component
    return ndimage.binary_fill_holes(ndimage.binary_closing(sharp, iterations=1)) & component


def _segments(background: NDArray[np.float32]) -> NDArray[np.int64]:
    """Homogeneous regions (mostly parcels) of the background, (rows, cols) labels.

    Graph-based segmentation at half resolution keeps this near 0.1 s; it only runs on
    snapshots that confirm a change.
    """
    labels = felzenszwalb(background[::2, ::2], scale=100, sigma=0.8, min_size=20)
    full = np.repeat(np.repeat(labels, 2, axis=0), 2, axis=1)
    return full[: background.shape[0], : background.shape[1]]


def _covers_whole_parcels(
    component: NDArray[np.bool_],
    segments: NDArray[np.integer],
    roi: NDArray[np.bool_],
    share: float,
) -> bool:
    """Whether a change fills the background regions it touches (farm work on whole parcels).

    A violation takes a part of a parcel; ploughing, harvest, flooding or a new crop turn the
    whole parcel over. Regions the change covers by at least ``share`` must hold most of it.
    """
    touched = segments[component]
    ids, inside = np.unique(touched, return_counts=True)
    sizes = np.bincount(segments[roi].ravel(), minlength=int(segments.max()) + 1)[ids]
    filled = inside >= share * np.maximum(sizes, 1)
    return bool(inside[filled].sum() >= 0.6 * component.sum())


def _parcels_or_segments(
    parcels: NDArray[np.int32] | None, background: NDArray[np.float32]
) -> NDArray[np.integer]:
    return parcels if parcels is not None else _segments(background)


def _parcel_moved_along(
    component: NDArray[np.bool_],
    parcels: NDArray[np.int32] | None,
    difference: NDArray[np.float32],
    roi: NDArray[np.bool_],
    share: float,
) -> bool:
    """Whether the rest of the parcel a change lies in changed the same way (farm work).

    Ploughing, harvest, flooding or a new crop turn a whole parcel over, yet only part of it
    (a rim, a strip along a road) may stand out from its surroundings enough to be confirmed.
    The parcel holding most of ``component`` is judged on its pixels outside the change (two
    pixels apart): if their mean colour difference from the background goes at least ``share``
    of the way along the change's own, the parcel turned over. A violation leaves the rest
    of its parcel as it was. A change filling nearly all of its parcel is left to the other
    tests, and without ``parcels`` (none named) this one says no.
    """
    if share <= 0 or parcels is None:
        return False
    ids, counts = np.unique(parcels[component], return_counts=True)
    parcel = ids[np.argmax(counts)]
    if parcel == 0:
        return False
    rest = (parcels == parcel) & roi & ~dilate(component, 2)
    if rest.sum() < _MIN_PARCEL_REST_PX:
        return False
    inside = difference[component].mean(axis=0)
    around = difference[rest].mean(axis=0)
    return float(np.dot(around, inside)) >= share * float(np.dot(inside, inside))


def _background_edges(background: NDArray[np.float32], level: float) -> NDArray[np.bool_]:
    """Pixels (rows, cols) on or next to a strong edge of the background (parcel boundaries).

    A step counts when it reaches ``level`` and three times the background's median step, so
    that the grain of a finely textured crop is not taken for boundaries everywhere.
    """
    brightness = gray(background)
    gradient = np.zeros_like(brightness)
    gradient[:, 1:] = np.abs(np.diff(brightness, axis=1))
    gradient[1:, :] = np.maximum(gradient[1:, :], np.abs(np.diff(brightness, axis=0)))
    threshold = max(level, 3.0 * float(np.median(gradient)))
    return dilate(gradient >= threshold, 1)


def _plain_change_regions(
    colour: NDArray[np.float32],
    candidates: NDArray[np.bool_],
    roi: NDArray[np.bool_],
    params: Any,
) -> tuple[NDArray[np.int32], NDArray[np.int64]]:
    """Connected regions of plain colour change (labels, and pixel count per label).

    A candidate kept by the local contrast test may be only the rim of a much larger change:
    a parcel ploughed or harvested in one day changes colour all over, and only its edges stand
    out from their surroundings. The plain difference shows the whole of it.
    """
    plain = ((colour >= params.hysteresis_low) & roi) | candidates
    labels, _ = ndimage.label(plain)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels, sizes


def _beside(mask: NDArray[np.bool_], reach_px: int) -> NDArray[np.bool_]:
    """`mask` grown by `reach_px` pixels (an empty mask when `reach_px` is 0)."""
    if reach_px <= 0 or not mask.any():
        return np.zeros_like(mask)
    return dilate(mask, reach_px)


def _rows_eroded(outline: BaseGeometry, rows: float) -> BaseGeometry:
    """What stays inside an image outline if its top and bottom edges move in by ``rows``."""
    up = shapely.affinity.translate(outline, yoff=-rows)
    down = shapely.affinity.translate(outline, yoff=rows)
    return outline.intersection(up).intersection(down)


def _chord_m(outline: BaseGeometry, calibration: Calibration) -> float:
    """Ground length of the image row through the outline's centre, metres."""
    col0, _, col1, _ = outline.bounds
    row = outline.centroid.y
    chord = outline.intersection(shapely.LineString([(col0 - 1, row), (col1 + 1, row)]))
    if chord.is_empty:
        return 0.0
    return ground_extent_m(calibration, image_geometry_to_lonlat(calibration, chord))[0]


def _surely_too_large(
    outline: BaseGeometry,
    ground: BaseGeometry,
    calibration: Calibration,
    watched: BaseGeometry,
    params: CameraParams,
    scale: float,
) -> bool:
    """Whether a confirmed change is larger or longer on the ground than any violation, even
    allowing for how far its outline may overstate it along the line of sight.

    The top and bottom rows of a region are only partly covered by the object, so its outline
    can overstate it by up to a working pixel in all. Across the line of sight that is under a
    metre at any range, but along it one working row spans 20–50 m of ground 700–900 m away
    (1/4 of 1080p, towers 40–60 m high): a 30 m pond two rows deep would measure 70–100 m and
    be taken for the edge of a ploughed parcel. So length is measured on the outline with half
    a working row (``scale`` / 2 full-resolution rows) taken off its top and bottom, and the
    width against which elongation is judged on the whole outline. A change thinner than that
    is unresolved along the line of sight: only its width across counts.
    """
    if ground_area_m2(calibration, ground) > params.max_object_area_m2:
        return True
    core = _rows_eroded(outline, scale / 2)
    core_ground = (
        image_geometry_to_lonlat(calibration, core).intersection(watched)
        if not core.is_empty
        else core
    )
    if core_ground.is_empty or core_ground.area == 0:
        return _chord_m(outline, calibration) > params.max_object_extent_m
    long_side = ground_extent_m(calibration, core_ground)[0]
    short_side = ground_extent_m(calibration, ground)[1]
    return (
        long_side > params.max_object_extent_m
        # A long thin band is the edge of a parcel that turned over, not an object.
        or long_side > params.max_elongation * max(short_side, 1e-6)
    )


def outline_detections(
    *,
    confirmed: NDArray[np.bool_],
    candidates: NDArray[np.bool_],
    colour: NDArray[np.float32],
    open_mask: NDArray[np.bool_],
    streak_start: NDArray[np.int64],
    score: NDArray[np.float32],
    matched: NDArray[np.float32],
    background: NDArray[np.float32],
    captured_at: datetime,
    first_id: int,
    calibration: Calibration,
    params: CameraParams,
) -> Outlines:
    """Turn confirmed pixels into detections with image outlines and map polygons.

    Each candidate region holding at least ``params.min_area_px`` confirmed pixels becomes one
    detection; its onset is the median streak start of its confirmed pixels. Regions larger on
    the ground than any violation (``params.max_object_area_m2``, ``params.max_object_extent_m``)
    are whole-parcel farm work (ploughing, harvest, flooding) or seasonal change: they are
    returned in ``farm_work`` to be learned into the background instead.
    """
    labels, _ = ndimage.label(candidates)
    scale = calibration.image_size[0] / candidates.shape[1]
    watched = watched_ground(calibration, params=params.geolocate)
    found: list[dict[str, Any]] = []
    open_mask = open_mask.copy()
    farm_work = np.zeros_like(candidates)
    # The calibration's parcels, where it names them, are the units farm work acts on;
    # otherwise homogeneous regions of the background stand in for them. Those and the
    # parcel boundaries cost more than the rest of a snapshot: they are found only once a
    # region gets as far as needing them.
    named = cache(lambda: parcel_labels(calibration, shape=candidates.shape, params=params))
    segments = cache(lambda: _parcels_or_segments(named(), background))
    difference = cache(lambda: matched - background)
    edges = cache(lambda: _background_edges(background, params.edge_level))
    roi = region_of_interest(calibration, shape=candidates.shape, params=params)
    context, context_sizes = _plain_change_regions(colour, candidates, roi, params)
    kept: list[tuple[tuple[slice, ...], NDArray[np.bool_], NDArray[np.bool_]]] = []
    for index, region in enumerate(ndimage.find_objects(labels), start=1):
        if region is None:
            continue
        component = labels[region] == index
        core = component & confirmed[region]
        if core.sum() < params.min_area_px:
            continue
        whole = np.zeros_like(candidates)
        whole[region] = component
        touched = np.unique(context[region][component])
        if (
            context_sizes[touched].sum() > params.context_ratio * component.sum()
            or _covers_whole_parcels(whole, segments(), roi | whole, params.parcel_share)
            or _parcel_moved_along(whole, named(), difference(), roi, params.parcel_along)
        ):
            # Learn the whole parcel that turned over, not only the rim that stood out.
            farm_work |= whole | np.isin(context, touched[touched > 0])
            continue
        if params.max_edge_share < 1 and edges()[region][component].mean() > params.max_edge_share:
            # Light, haze and a fraction of a pixel of sway change a boundary between parcels
            # from frame to frame; a change lying along one is not taken for an object.
            continue
        kept.append((region, component, core))
    beside_farm_work = _beside(farm_work, params.farm_work_reach_px)
    for region, component, core in kept:
        if beside_farm_work[region][component].any():
            # A strip along a parcel that turned over in this very frame is its edge, cut
            # off from it by a boundary line or a ditch; it goes with the parcel.
            farm_work[region] |= component
            continue
        full = np.zeros_like(candidates)
        reported = np.count_nonzero(open_mask[region][component])
        if reported >= params.reported_share * np.count_nonzero(component):
            # Mostly a change already reported: its newly confirmed pixels are its rim showing
            # more fully (light, sway), not a new object. They join it without a second alarm.
            full[region] = component
            open_mask |= dilate(full, 2)
            continue
        tight = _tight(component, colour[region], params.hysteresis_low)
        full[region] = tight
        outline = _outline(full, scale)
        ground = image_geometry_to_lonlat(calibration, outline).intersection(watched)
        if ground.is_empty:
            continue
        area_m2 = ground_area_m2(calibration, ground)
        if _surely_too_large(outline, ground, calibration, watched, params, scale):
            farm_work[region] |= component
            continue
        if area_m2 < params.min_object_area_m2:
            # Too small to send anyone to; it stays pending and is reported if it grows.
            continue
        onset = datetime.fromtimestamp(int(np.median(streak_start[region][core])), tz=UTC)
        mean_score = float(score[region][component].mean())
        found.append(
            {
                "detection_id": first_id + len(found),
                "onset": onset,
                "confirmed_at": captured_at,
                "type": _guess_type(matched[region][tight], int(tight.sum()), params),
                "confidence": round(float(1.0 - np.exp(-mean_score)), 3),
                "area_m2": round(area_m2, 1),
                "outline": outline,
                "ground": ground,
            }
        )
        full[region] |= component
        open_mask |= dilate(full, 2)
    return Outlines(found=found, open_mask=open_mask, farm_work=farm_work)
