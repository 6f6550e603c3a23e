"""The remote-sensing change detector: a raster pair in, change mask and change objects out."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from affine import Affine
from shapely.geometry.base import BaseGeometry

from detection import align, decide, features, objects
from detection.errors import InvalidRasterError
from detection.objects import ChangeObject
from detection.radiometry import Normalisation, fit_normalisation_with
from detection.rs_params import RasterDetectorParams
from detection.rs_parcels import parcel_contexts
from detection.rs_reference import contribution_buffer_px
from detection.rs_standout import LOG_OFFSET_FRACTION, STANDS_OUT, judge_parcels, parcel_windows
from detection.rs_tiles import (
    Grid,
    RasterLike,
    ScoreModel,
    Source,
    buffered,
    check_finite,
    collect_objects,
    decide_image,
    lattice_step,
    score_image,
    thresholds,
    valid_window,
    without_invalid,
)

ACCEPTED_DTYPES = ("uint8", "uint16", "int16", "float32")
MIN_SIDE_PX = 8


@dataclass(frozen=True, eq=False)
class ChangeResult:
    """What the detector found, on the before grid.

    Attributes
    ----------
    mask : ndarray of shape (rows, cols), bool
        True where change was detected.
    score : ndarray of shape (rows, cols), float16
        Change evidence (noise units without a model, probability with one); 0 on nodata.
    objects : tuple of ChangeObject
        Connected change regions with polygons, areas, types and confidence.
    threshold : float
        Strong-change threshold used on `score`.
    shift_px : (float, float)
        Residual (row, col) shift applied to the after image, in pixels.
    normalisation : Normalisation
        Radiometric mapping of the after image into before units.
    """

    mask: np.ndarray
    score: np.ndarray
    objects: tuple[ChangeObject, ...]
    threshold: float
    shift_px: tuple[float, float]
    normalisation: Normalisation


def detect_changes(
    before: RasterLike,
    after: RasterLike,
    *,
    params: RasterDetectorParams | None = None,
    farmland: Sequence[BaseGeometry] | None = None,
    before_valid: RasterLike | None = None,
    after_valid: RasterLike | None = None,
    transform: Affine | None = None,
    crs: str | None = None,
    after_transform: Affine | None = None,
    after_crs: str | None = None,
    band_roles: Sequence[str | None] | None = None,
    model: ScoreModel | None = None,
    threads: int = 1,
    normalisation: Normalisation | None = None,
) -> ChangeResult:
    """Detect change between two dates of the same place.

    Parameters
    ----------
    before, after : ndarray of shape (rows, cols, bands), or a lazy equivalent
        Image values (uint8, uint16, int16 or float32). `after` may be on another grid
        (then it must be an in-memory array with `after_transform`) and is reprojected.
    params : RasterDetectorParams, optional
    farmland : sequence of shapely geometries, optional
        Farmland parcels (one polygon each) in the before CRS. Change outside them is
        dropped; change over most of one parcel is farm work (benign), since farming acts
        on whole parcels and violations on part of one.
    before_valid, after_valid : ndarray of shape (rows, cols), bool, optional
        False on nodata or cloud; such pixels are never change.
    transform, crs : optional
        Georeferencing of the before grid (None: an ungeoreferenced image,
        `params.pixel_size_m` gives the pixel size).
    after_transform, after_crs : optional
        Georeferencing of the after image when it differs from the before grid.
    band_roles : sequence of str or None, optional
        "blue", "green", "red", "nir", "swir1", ... per band; guessed when absent.
    model : ScoreModel, optional
        A trained scorer replacing the unsupervised score.
    threads : int
        Tiles processed at once (the result does not depend on it). Keep 1 where processes
        already share the cores, as the backfill's Dask workers do.
    normalisation : Normalisation, optional
        The after date's radiometry mapped into the before date's, fitted elsewhere (over a
        larger area of the same two dates) instead of on these pixels: a small window that
        one changing field fills would fit the change itself.

    Returns
    -------
    ChangeResult

    Raises
    ------
    InvalidRasterError
        Unsupported dtype, too small, different band counts, NaN/inf, all nodata, bad
        geotransform or a CRS on one date only.
    RegistrationError
        The dates do not overlap, or differ in size without georeferencing.
    """
    params = params or RasterDetectorParams()
    grid = _check_pair(
        before,
        after,
        transform=transform,
        crs=crs,
        after_transform=after_transform,
        after_crs=after_crs,
    )
    after, after_valid = _align(after, after_valid, grid, after_transform, after_crs)
    roles = features.resolve_roles(band_roles, before.shape[2])
    pixel_area = objects.pixel_area_m2(
        grid.transform, grid.crs, (grid.rows, grid.cols), pixel_size_m=params.pixel_size_m
    )
    buffer_px = contribution_buffer_px(params, pixel_area)
    before_valid, after_valid = buffered(before_valid, buffer_px), buffered(after_valid, buffer_px)
    if normalisation is None:
        normalisation = _fit_radiometry(before, after, before_valid, after_valid, params)
    shift = _estimate_shift(before, after, before_valid, after_valid, normalisation, params)
    mmu_px = decide.mmu_pixels(params.min_mapping_unit_m2, pixel_area)
    source = Source(before, after, before_valid, after_valid, normalisation, shift)
    score = score_image(source, grid, roles, params, model, threads=threads)
    strong, weak = thresholds(score, params, model)
    mask = decide_image(
        score, source, grid, farmland, strong, weak, mmu_px, params, threads=threads
    )
    judged = None
    if farmland:
        judged = _judge_parcels(source, grid, farmland, before, before_valid, mmu_px, params)
        mask |= judged == STANDS_OUT
    pieces = collect_objects(mask, score, source, grid, roles, params, judged, threads=threads)
    # Splitting objects by material can leave slivers below the mapping unit.
    pieces = [piece for piece in pieces if piece.pixels >= mmu_px]
    contexts = (
        parcel_contexts(
            [p.geometry for p in pieces],
            [p.pixels for p in pieces],
            [p.sums_after for p in pieces],
            list(farmland),
        )
        if farmland
        else [None] * len(pieces)
    )
    found = [
        objects.finish_object(
            piece,
            strong=strong,
            params=params,
            crs=grid.crs,
            transform=grid.transform,
            pixel_area=pixel_area,
            context=context,
        )
        for piece, context in zip(pieces, contexts, strict=True)
    ]
    return ChangeResult(
        mask=mask,
        score=score,
        objects=tuple(found),
        threshold=strong,
        shift_px=shift,
        normalisation=normalisation,
    )


# --- input checks and alignment -------------------------------------------------------------


def _check_pair(
    before: RasterLike,
    after: RasterLike,
    *,
    transform: Affine | None,
    crs: str | None,
    after_transform: Affine | None,
    after_crs: str | None,
) -> Grid:
    for name, image in (("before", before), ("after", after)):
        _check_image(name, image)
    if before.shape[2] != after.shape[2]:
        raise InvalidRasterError(
            f"before has {before.shape[2]} bands and after has {after.shape[2]}; "
            "supply the same bands in the same order for both dates"
        )
    if transform is not None:
        align.check_transform(transform, name="the before image")
    if after_transform is not None:
        align.check_transform(after_transform, name="the after image")
    align.check_georeferencing(crs, after_crs if after_transform is not None else crs)
    return Grid(int(before.shape[0]), int(before.shape[1]), transform, crs)


def _check_image(name: str, image: RasterLike) -> None:
    if len(image.shape) != 3:
        raise InvalidRasterError(
            f"the {name} image has shape {tuple(image.shape)}; expected (rows, cols, bands): "
            "add a band axis to single-band images"
        )
    dtype = np.dtype(image.dtype).name
    if dtype not in ACCEPTED_DTYPES:
        raise InvalidRasterError(
            f"the {name} image is {dtype}; accepted are {', '.join(ACCEPTED_DTYPES)}: "
            "convert reflectance to float32 or scaled DN to uint16 first"
        )
    if min(image.shape[:2]) < MIN_SIDE_PX:
        raise InvalidRasterError(
            f"the {name} image is only {image.shape[0]}×{image.shape[1]} pixels; change "
            f"detection needs at least {MIN_SIDE_PX}×{MIN_SIDE_PX}: send a larger area"
        )


def _align(
    after: RasterLike,
    after_valid: RasterLike | None,
    grid: Grid,
    after_transform: Affine | None,
    after_crs: str | None,
) -> tuple[RasterLike, RasterLike | None]:
    same_grid = after_transform is None or (
        after_transform == grid.transform
        and (after_crs or grid.crs) == grid.crs
        and tuple(after.shape[:2]) == (grid.rows, grid.cols)
    )
    if same_grid:
        if tuple(after.shape[:2]) != (grid.rows, grid.cols):
            raise align.RegistrationError(
                f"before is {grid.rows}×{grid.cols} pixels and after is "
                f"{after.shape[0]}×{after.shape[1]}, and without georeferencing they cannot "
                "be aligned: crop both to the same area and size, or supply GeoTIFFs"
            )
        return after, after_valid
    assert after_transform is not None
    before_transform = grid.transform or Affine.identity()
    align.check_overlap(
        before_transform,
        (grid.rows, grid.cols),
        after_transform,
        (int(after.shape[0]), int(after.shape[1])),
        before_crs=grid.crs,
        after_crs=after_crs,
    )
    pixels = np.asarray(after[:, :], dtype=np.float32)
    valid = (
        np.ones(pixels.shape[:2], dtype=bool)
        if after_valid is None
        else np.asarray(after_valid[:, :], dtype=bool)
    )
    return align.reproject_onto_grid(
        pixels,
        valid,
        src_transform=after_transform,
        src_crs=after_crs,
        dst_transform=before_transform,
        dst_crs=grid.crs,
        dst_shape=(grid.rows, grid.cols),
    )


def _fit_radiometry(
    before: RasterLike,
    after: RasterLike,
    before_valid: RasterLike | None,
    after_valid: RasterLike | None,
    params: RasterDetectorParams,
) -> Normalisation:
    step = lattice_step(before.shape[0], before.shape[1], params.sample_pixels)
    key = (slice(None, None, step), slice(None, None, step))
    b = np.asarray(before[key], dtype=np.float32)
    a = np.asarray(after[key], dtype=np.float32)
    valid = valid_window(before_valid, key, b.shape[:2]) & valid_window(
        after_valid, key, b.shape[:2]
    )
    check_finite(b, a, valid)
    if not valid.any():
        raise InvalidRasterError(
            "no pixel has data at both dates (all nodata, cloud or outside the after "
            "image); pick another pair or check the nodata value"
        )
    return fit_normalisation_with(b[valid], a[valid], params)


def _estimate_shift(
    before: RasterLike,
    after: RasterLike,
    before_valid: RasterLike | None,
    after_valid: RasterLike | None,
    normalisation: Normalisation,
    params: RasterDetectorParams,
) -> tuple[float, float]:
    key = align.central_window((int(before.shape[0]), int(before.shape[1])))
    b = np.asarray(before[key], dtype=np.float32)
    a = normalisation.apply(np.asarray(after[key], dtype=np.float32))
    valid = valid_window(before_valid, key, b.shape[:2]) & valid_window(
        after_valid, key, b.shape[:2]
    )
    if valid.mean() < 0.5:  # mostly cloud or nodata: no reliable shift to measure
        return 0.0, 0.0
    b, a = without_invalid(b, a, valid)
    gray_before, gray_after = b.mean(axis=2), a.mean(axis=2)
    return align.estimate_shift(
        gray_before, gray_after, max_shift_px=params.max_shift_px, min_shift_px=params.min_shift_px
    )


def _judge_parcels(
    source: Source,
    grid: Grid,
    farmland: Sequence[BaseGeometry],
    before: RasterLike,
    before_valid: RasterLike | None,
    mmu_px: int,
    params: RasterDetectorParams,
) -> np.ndarray:
    """Per pixel, whether its change is like its parcel's or stands out (rs_standout)."""
    windows = parcel_windows(
        farmland,
        grid.transform,
        (grid.rows, grid.cols),
        margin_px=math.ceil(max(abs(s) for s in source.shift)) + 1,
    )
    step = lattice_step(grid.rows, grid.cols, params.sample_pixels)
    key = (slice(None, None, step), slice(None, None, step))
    sample = np.asarray(before[key], dtype=np.float32)
    valid = valid_window(before_valid, key, sample.shape[:2])
    low, high = np.percentile(sample[valid], [2.0, 98.0], axis=0)
    return judge_parcels(
        source.read,
        windows,
        offset=np.maximum(LOG_OFFSET_FRACTION * (high - low), 1e-3),
        shape=(grid.rows, grid.cols),
        mmu_px=mmu_px,
        params=params,
    )


def change_method(
    *, params: RasterDetectorParams | None = None, model: ScoreModel | None = None
) -> Callable[..., np.ndarray]:
    """The detector as an evaluation method: (before, after, *, valid, metadata) → mask.

    `metadata` may carry "band_roles", "crs" and "transform" (see
    `detection.baselines.ChangeMethod`).
    """

    def method(
        before: np.ndarray,
        after: np.ndarray,
        *,
        valid: np.ndarray | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> np.ndarray:
        known = metadata or {}
        result = detect_changes(
            before.astype(np.float32, copy=False),
            after.astype(np.float32, copy=False),
            params=params,
            before_valid=valid,
            transform=known.get("transform"),
            crs=known.get("crs"),
            band_roles=known.get("band_roles"),
            model=model,
        )
        return result.mask

    return method
