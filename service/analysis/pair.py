"""Two dates of one place compared: rasters in, change objects (lon/lat) and chip pixels out.

Nothing here touches the database, the settings or the object store, so the live tile task and
batch backfills (on Dask workers, from plain file paths) find changes the same way; storing
what was found is the caller's part (`service.analysis.store`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import shapely
from numpy.typing import NDArray
from pyproj import CRS, Transformer
from rasterio.features import geometry_mask
from rasterio.windows import Window, from_bounds
from rasterio.windows import transform as window_transform
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry

from detection.align import reproject_onto_grid
from detection.io.raster import Raster, ReadLimits, read_raster
from detection.objects import ChangeObject
from detection.raster_pair import detect_changes
from detection.rs_params import RasterDetectorParams
from detection.rs_reference import (
    ClearReference,
    fill_from_older,
    margin_px,
    split_by_source,
)

CHIP_MARGIN_PX = 24
MIN_CLEAR_FRACTION = 0.5  # of a parcel's pixels, for the tile to count as a look at it

Chip = NDArray[np.uint8]  # (rows, cols, 3) true colour


@dataclass(frozen=True)
class PairChange:
    """One change object: lon/lat outline, the detector's label and its chip pixels."""

    geom: Polygon
    label: str
    benign: bool
    confidence: float
    area_m2: float
    chips: tuple[Chip, Chip] | None = None  # (before, after), one stretch for both


@dataclass(frozen=True)
class PairComparison:
    """What one comparison found; `observed` are the farmland ids seen clear on the after date."""

    changes: tuple[PairChange, ...]
    objects: int
    observed: tuple[int, ...]
    pixels: int  # pixels of the after date, for throughput


def read_tile(path: str | Path) -> Raster:
    """A tile read with the hardened reader, its alpha band turned into nodata."""
    return without_alpha(read_raster(path, limits=ReadLimits()))


def compare_files(
    before_path: str | Path | None,
    after_path: str | Path,
    *,
    parcels_lonlat: Sequence[BaseGeometry],
    farmland: Sequence[tuple[int, BaseGeometry]],
    params: RasterDetectorParams | None = None,
) -> PairComparison:
    """Compare two tile files (None before: a first look, which only records what it saw)."""
    after = read_tile(after_path)
    if before_path is None:
        pixels = after.shape[0] * after.shape[1]
        return PairComparison((), 0, tuple(clear_parcels(after, farmland)), pixels)
    before = read_tile(before_path)
    return compare_rasters(
        before, after, parcels_lonlat=parcels_lonlat, farmland=farmland, params=params
    )


def compare_rasters(
    before: Raster,
    after: Raster,
    *,
    parcels_lonlat: Sequence[BaseGeometry],
    farmland: Sequence[tuple[int, BaseGeometry]],
    params: RasterDetectorParams | None = None,
    reference_source: np.ndarray | None = None,
) -> PairComparison:
    """Run the raster detector on two dates; the after date may be on another grid or CRS.

    `before` may be a last clear look composed of several dates (`detection.rs_reference`);
    `reference_source` then says which date each of its pixels comes from, and parcels are
    cut along those dates so that each part is compared with itself.

    Raises `DetectionError` when the pair cannot be compared (e.g. all cloud where both
    overlap) and ValueError when the before date has no georeferencing.
    """
    if before.crs is None or before.transform is None:
        raise ValueError("the earlier date has no georeferencing: it cannot place changes")
    parcels = to_crs(parcels_lonlat, before.crs)
    if reference_source is not None:
        parcels = split_by_source(parcels, reference_source, before.transform)
    result = detect_changes(
        before.array,
        after.array,
        params=params or RasterDetectorParams(),
        farmland=parcels or None,
        before_valid=~before.nodata,
        after_valid=~after.nodata,
        transform=before.transform,
        crs=before.crs,
        after_transform=after.transform,
        after_crs=after.crs,
        band_roles=before.band_roles,
    )
    to_lonlat = transformer(before.crs, "EPSG:4326")
    changes = tuple(
        change for found in result.objects for change in _changes(found, to_lonlat, before, after)
    )
    observed = tuple(clear_parcels(after, farmland))
    return PairComparison(changes, len(result.objects), observed, after.shape[0] * after.shape[1])


def last_clear_look(
    reference: Raster, older: Iterable[Raster], params: RasterDetectorParams | None = None
) -> tuple[Raster, np.ndarray | None]:
    """The reference with its cloud and nodata filled from older dates (newest first), and
    per pixel which look it came from (0 the reference, 1 the date before it, ...): pass
    both to `compare_rasters` (`reference_source`).

    Older dates are read only while some pixel still lacks a clear look, and resampled onto
    the reference grid; one with other bands is skipped. A reference without nodata is
    returned as it is, with None.
    """
    if not reference.nodata.any() or reference.transform is None:
        return reference, None
    params = params or RasterDetectorParams()
    buffer_px = margin_px(params, reference.transform, reference.crs, reference.shape)
    composite = ClearReference.empty(*reference.array.shape)
    fill_from_older(composite, reference.array, ~reference.nodata, 0, buffer_px=buffer_px)
    for age, raster in enumerate(older, start=1):
        if raster.band_roles == reference.band_roles and raster.transform is not None:
            image, valid = _on_grid(raster, reference)
            fill_from_older(composite, image, valid, age, buffer_px=buffer_px, params=params)
        if composite.valid.all():
            break
    if composite.sources() == [0]:
        return reference, None  # nothing older filled anything
    filled = dataclasses.replace(reference, array=composite.image, nodata=~composite.valid)
    return filled, composite.source


def _on_grid(raster: Raster, like: Raster) -> tuple[np.ndarray, np.ndarray]:
    assert raster.transform is not None and like.transform is not None
    if (raster.transform, raster.crs, raster.shape) == (like.transform, like.crs, like.shape):
        return raster.array, ~raster.nodata
    return reproject_onto_grid(
        raster.array.astype(np.float32, copy=False),
        ~raster.nodata,
        src_transform=raster.transform,
        src_crs=raster.crs,
        dst_transform=like.transform,
        dst_crs=like.crs,
        dst_shape=like.shape,
    )


def clear_parcels(raster: Raster, farmland: Sequence[tuple[int, BaseGeometry]]) -> list[int]:
    """Parcels (id, lon/lat outline) of which the tile shows at least half clear of cloud,
    shadow and nodata: only those count as observed."""
    if raster.crs is None or raster.transform is None:
        return []
    forward = transformer("EPSG:4326", raster.crs)
    observed = []
    for feature_id, geom in farmland:
        local = shapely.transform(geom, forward.transform, interleaved=False)
        fraction = clear_fraction(raster, local)
        if fraction is not None and fraction >= MIN_CLEAR_FRACTION:
            observed.append(feature_id)
    return observed


def clear_fraction(raster: Raster, local: BaseGeometry) -> float | None:
    """Share of the pixels inside `local` (raster CRS) that are valid; None when none lie inside."""
    assert raster.transform is not None
    rows, cols = raster.shape
    window = from_bounds(*local.bounds, transform=raster.transform).round_offsets()
    window = window.round_lengths().intersection(Window(0, 0, cols, rows))
    if window.width < 1 or window.height < 1:
        return None
    inside = ~geometry_mask(
        [local],
        out_shape=(int(window.height), int(window.width)),
        transform=window_transform(window, raster.transform),
    )
    if not inside.any():
        return None
    return float((~raster.nodata[window.toslices()][inside]).mean())


def without_alpha(raster: Raster) -> Raster:
    """The raster without its alpha band, whose zeros (cloud, shadow, nodata: the producer's
    mask, GDAL's convention) become nodata, so that they are never called change."""
    if "alpha" not in raster.band_roles:
        return raster
    index = raster.band_roles.index("alpha")
    keep = [i for i, role in enumerate(raster.band_roles) if role != "alpha"]
    return dataclasses.replace(
        raster,
        array=raster.array[:, :, keep],
        nodata=raster.nodata | (raster.array[:, :, index] == 0),
        band_roles=tuple(raster.band_roles[i] for i in keep),
    )


@lru_cache(maxsize=8)
def transformer(source: str, target: str) -> Transformer:
    """A cached coordinate transformer (x, y order); building one costs far more than using it."""
    return Transformer.from_crs(
        CRS.from_user_input(source), CRS.from_user_input(target), always_xy=True
    )


def to_crs(geoms: Sequence[BaseGeometry], crs: str) -> list[BaseGeometry]:
    """Lon/lat geometries in `crs`."""
    forward = transformer("EPSG:4326", crs)
    return [shapely.transform(g, forward.transform, interleaved=False) for g in geoms]


def polygon_parts(geom: BaseGeometry) -> list[Polygon]:
    """The polygon parts of a geometry, largest first."""
    parts = [geom] if isinstance(geom, Polygon) else list(getattr(geom, "geoms", []))
    polygons = [p for p in parts if isinstance(p, Polygon) and not p.is_empty and p.area > 0]
    return sorted(polygons, key=lambda p: -p.area)


def _changes(
    found: ChangeObject, to_lonlat: Transformer, before: Raster, after: Raster
) -> list[PairChange]:
    lonlat = shapely.transform(found.geometry, to_lonlat.transform, interleaved=False)
    parts = polygon_parts(shapely.make_valid(lonlat))
    total = sum(part.area for part in parts) or 1.0
    chips = None if found.benign else chip_pair(found.geometry, before, after)
    return [
        PairChange(
            geom=part,
            label=found.change_type,
            benign=found.benign,
            confidence=float(found.confidence),
            area_m2=float(found.area_m2) * part.area / total,
            chips=chips,
        )
        for part in parts
    ]


def chip_pair(geometry: BaseGeometry, before: Raster, after: Raster) -> tuple[Chip, Chip] | None:
    """True-colour crops around `geometry` (before CRS) from both dates, on the before grid;
    None when the after date is on another grid (no pixel-aligned pair)."""
    assert before.transform is not None
    inverse = ~before.transform
    minx, miny, maxx, maxy = geometry.bounds
    cols, rows = zip(inverse @ (minx, maxy), inverse @ (maxx, miny), strict=True)
    height, width = before.shape
    r0, r1 = max(0, int(min(rows)) - CHIP_MARGIN_PX), min(height, int(max(rows)) + CHIP_MARGIN_PX)
    c0, c1 = max(0, int(min(cols)) - CHIP_MARGIN_PX), min(width, int(max(cols)) + CHIP_MARGIN_PX)
    if r1 <= r0 or c1 <= c0 or after.shape != before.shape:
        return None
    window = (slice(r0, r1), slice(c0, c1))
    first, second = stretched([true_colour(before, window), true_colour(after, window)])
    return first, second


def stretched(images: list[NDArray[np.float32]]) -> list[Chip]:
    """8-bit images with one 2–98 % stretch for all, so a brighter surface shows as such."""
    low, high = np.percentile(np.concatenate([image.ravel() for image in images]), (2, 98))
    scale = max(float(high - low), 1e-6)
    return [(np.clip((image - low) / scale, 0, 1) * 255).astype(np.uint8) for image in images]


def true_colour(raster: Raster, window: tuple[slice, slice]) -> NDArray[np.float32]:
    """Red, green and blue of `raster` inside `window` (the first three bands if unnamed)."""
    roles = list(raster.band_roles)
    bands = [roles.index(r) if r in roles else i for i, r in enumerate(("red", "green", "blue"))]
    return raster.array[window][..., bands].astype(np.float32)
