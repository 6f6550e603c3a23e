"""The last clear look: a per-pixel composite of each pixel's latest cloud-free observation.

A pairwise detector compares a date with the one before it. A violation that appears under a
cloud is then never seen as change: the next pair shows it on both dates. Comparing each pixel
with its latest clear observation instead finds it as soon as it is seen.

The composite is kept up to date one date at a time (the running composite, never the stack of
dates) and in the radiometry of the newest date that contributed: before a date is added, the
older values are mapped into its units by the same IR-MAD regression the detector uses between
the two dates of a pair, so that a change of light between older dates does not show as
change where they fill in. (What the regression cannot map, such as haze that varies across
the scene, is left to the detector's own noise scale.)

A composite mixes dates, and farm work between those dates differs from one part of a parcel
to the other. `split_by_source` cuts each parcel along the borders of the dates its reference
came from, so that each part is compared with itself (see `detection.rs_standout`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from affine import Affine
from rasterio.features import shapes
from shapely import STRtree, get_parts, union_all
from shapely.geometry import MultiPolygon, Polygon, shape
from shapely.geometry.base import BaseGeometry

from detection.objects import pixel_area_m2
from detection.radiometry import Normalisation, fit_normalisation_with
from detection.rs_params import RasterDetectorParams
from detection.rs_tiles import RasterLike, buffered, lattice_step, valid_window

#: Source index of a pixel that was never seen clear.
NO_SOURCE = -1
#: Fewest pixels clear in both the composite and the new date to fit a radiometric mapping;
#: with fewer the older values are kept as they are.
MIN_FIT_PIXELS = 256


@dataclass(eq=False)
class ClearReference:
    """Per pixel, the latest clear observation of a place, in the newest contributor's units.

    Attributes
    ----------
    image : ndarray of shape (rows, cols, bands), float32
        The observation; 0 where `valid` is False.
    valid : ndarray of shape (rows, cols), bool
        True where some date saw the pixel clear.
    source : ndarray of shape (rows, cols), int32
        The index of the date each pixel comes from (`NO_SOURCE` where never clear).
    """

    image: np.ndarray
    valid: np.ndarray
    source: np.ndarray

    @classmethod
    def empty(cls, rows: int, cols: int, bands: int) -> ClearReference:
        """A composite that has seen nothing yet."""
        return cls(
            image=np.zeros((rows, cols, bands), dtype=np.float32),
            valid=np.zeros((rows, cols), dtype=bool),
            source=np.full((rows, cols), NO_SOURCE, dtype=np.int32),
        )

    @property
    def shape(self) -> tuple[int, int, int]:
        rows, cols, bands = self.image.shape
        return int(rows), int(cols), int(bands)

    def sources(self) -> list[int]:
        """The date indices that contribute at least one pixel, oldest first."""
        return [int(s) for s in np.unique(self.source) if s != NO_SOURCE]


def contribution_buffer_px(params: RasterDetectorParams, pixel_area_m2: float) -> int:
    """Pixels within `params.invalid_buffer_m` of cloud or nodata are not a clear look either:
    the detector would not compare them, and the composite should not keep them."""
    return math.ceil(params.invalid_buffer_m / math.sqrt(pixel_area_m2) - 1e-9)


def margin_px(
    params: RasterDetectorParams, transform: Affine | None, crs: Any, shape: tuple[int, ...]
) -> int:
    """`contribution_buffer_px` on a grid: how far, in pixels, the detector keeps from cloud
    and nodata."""
    rows, cols = shape[:2]
    area = pixel_area_m2(transform, crs, (rows, cols), pixel_size_m=params.pixel_size_m)
    return contribution_buffer_px(params, area)


def clear_beyond(clear: np.ndarray, radius_px: int) -> np.ndarray:
    """The pixels of `clear` at least `radius_px` from any unclear one, as the detector grows
    the invalid pixels it is given (beyond the image edge counts as clear)."""
    grown = buffered(clear, radius_px)
    return clear if grown is None else np.asarray(grown[:, :], dtype=bool)


def add_observation(
    reference: ClearReference,
    image: RasterLike,
    valid: RasterLike | None,
    index: int,
    *,
    buffer_px: int = 0,
    params: RasterDetectorParams | None = None,
) -> Normalisation | None:
    """Bring `reference` up to date with a newer observation, in place, window by window.

    Parameters
    ----------
    reference : ClearReference
        The composite of the earlier dates (same grid as `image`).
    image : ndarray of shape (rows, cols, bands), or a lazy equivalent
        The new date.
    valid : ndarray of shape (rows, cols), bool, or a lazy equivalent, optional
        False on cloud or nodata of the new date (None: all clear).
    index : int
        The new date's index, recorded in `reference.source` where it is taken.
    buffer_px : int
        Pixels this close to an invalid one are not taken (see `contribution_buffer_px`).
    params : RasterDetectorParams, optional
        Tile size, sample size and IR-MAD settings.

    Returns
    -------
    Normalisation or None
        How the older values were mapped into the new date's units (None: nothing older to
        map, or too little seen clear on both to fit; they are kept as they are).
    """
    params = params or RasterDetectorParams()
    _check_grid(reference, image, "new")
    taken = buffered(valid, buffer_px)
    mapping = _older_to_newer(reference, image, taken, params, image_is_newer=True)
    for key in _row_windows(reference, params.tile_px):
        _merge_window(reference, key, image, taken, index, mapping)
    return mapping


def fill_from_older(
    reference: ClearReference,
    image: RasterLike,
    valid: RasterLike | None,
    index: int,
    *,
    buffer_px: int = 0,
    params: RasterDetectorParams | None = None,
) -> Normalisation | None:
    """Fill what `reference` has not seen clear from an older observation, in place.

    The same composite as `add_observation` built from the newest date backwards: a reader
    that goes back in time can stop as soon as every pixel has a clear look. The older
    values are mapped into the composite's units first (None is returned, and they are
    taken as they are, when too little is seen clear on both to fit).
    """
    params = params or RasterDetectorParams()
    _check_grid(reference, image, "older")
    taken = buffered(valid, buffer_px)
    mapping = _older_to_newer(reference, image, taken, params, image_is_newer=False)
    for key in _row_windows(reference, params.tile_px):
        older = np.asarray(image[key], dtype=np.float32)
        fill = valid_window(taken, key, older.shape[:2]) & ~reference.valid[key]
        values = older[fill] if mapping is None else mapping.apply(older[fill])
        reference.image[key][fill] = values
        reference.valid[key] |= fill
        reference.source[key][fill] = index
    return mapping


def _row_windows(reference: ClearReference, tile_px: int) -> Iterator[tuple[slice, slice]]:
    """Full-width bands of `tile_px` rows covering the composite, top to bottom."""
    rows, cols, _ = reference.shape
    for top in range(0, rows, tile_px):
        yield slice(top, min(top + tile_px, rows)), slice(0, cols)


def _check_grid(reference: ClearReference, image: RasterLike, which: str) -> None:
    if tuple(image.shape) != reference.shape:
        raise ValueError(
            f"the {which} observation is {tuple(image.shape)} but the composite is "
            f"{reference.shape}; resample it onto the composite's grid first"
        )


def _older_to_newer(
    reference: ClearReference,
    image: RasterLike,
    valid: RasterLike | None,
    params: RasterDetectorParams,
    *,
    image_is_newer: bool,
) -> Normalisation | None:
    """How the older side's values map into the newer side's units, fitted on the pixels
    clear in both (None: too few). The composite is the other side."""
    common = _common_sample(reference, image, valid, params)
    if common is None:
        return None
    composite, values = common
    newer, older = (values, composite) if image_is_newer else (composite, values)
    return fit_normalisation_with(newer, older, params)


def _common_sample(
    reference: ClearReference,
    image: RasterLike,
    valid: RasterLike | None,
    params: RasterDetectorParams,
) -> tuple[np.ndarray, np.ndarray] | None:
    """(composite, image) values of a lattice of pixels clear in both, or None if too few."""
    rows, cols, _ = reference.shape
    step = lattice_step(rows, cols, params.sample_pixels)
    key = (slice(None, None, step), slice(None, None, step))
    values = np.asarray(image[key], dtype=np.float32)
    common = reference.valid[key] & valid_window(valid, key, values.shape[:2])
    if common.sum() < MIN_FIT_PIXELS:
        return None
    return reference.image[key][common], values[common]


def _merge_window(
    reference: ClearReference,
    key: tuple[slice, slice],
    image: RasterLike,
    valid: RasterLike | None,
    index: int,
    mapping: Normalisation | None,
) -> None:
    new = np.asarray(image[key], dtype=np.float32)
    seen = valid_window(valid, key, new.shape[:2])
    older = reference.image[key]
    if mapping is not None:
        kept = reference.valid[key] & ~seen
        older[kept] = mapping.apply(older[kept])
    older[seen] = new[seen]
    reference.valid[key] |= seen
    reference.source[key][seen] = index


def split_by_source(
    parcels: list[BaseGeometry], source: np.ndarray, transform: Affine | None
) -> list[BaseGeometry]:
    """Each parcel cut along the borders of the dates its reference pixels come from.

    Parcels whose reference comes from a single date are returned unchanged; pixels never
    seen clear belong to no part (they are never compared). Parts keep the parcel order.

    Parameters
    ----------
    parcels : list of shapely geometries
        Farmland parcels in the grid's CRS.
    source : ndarray of shape (rows, cols), int
        `ClearReference.source`.
    transform : Affine or None
        Pixel-to-map transform of the grid (None: pixel coordinates).
    """
    regions = source_regions(source, transform)
    if len(regions) <= 1:
        return list(parcels)
    dates = list(regions)
    tree = STRtree([regions[date] for date in dates])
    parts: list[BaseGeometry] = []
    for parcel in parcels:
        touching = tree.query(parcel, predicate="intersects")
        if len(touching) <= 1:
            parts.append(parcel)
            continue
        parts += _parts_of(parcel, [regions[dates[int(i)]] for i in touching])
    return parts


def source_regions(source: np.ndarray, transform: Affine | None) -> dict[int, BaseGeometry]:
    """Per contributing date index, the area whose reference comes from it (map units)."""
    labels = np.ascontiguousarray(source, dtype=np.int32)
    polygons: dict[int, list[BaseGeometry]] = defaultdict(list)
    for geometry, value in shapes(
        labels, mask=labels != NO_SOURCE, transform=transform or Affine.identity()
    ):
        polygons[int(value)].append(shape(geometry))
    return {date: union_all(found) for date, found in sorted(polygons.items())}


def _parts_of(parcel: BaseGeometry, regions: list[BaseGeometry]) -> list[BaseGeometry]:
    parts = []
    for region in regions:
        # Regions meeting the parcel along an edge add lines or points: keep areas only.
        polygons = [
            piece for piece in get_parts(parcel.intersection(region)) if isinstance(piece, Polygon)
        ]
        if polygons:
            parts.append(polygons[0] if len(polygons) == 1 else MultiPolygon(polygons))
    return parts or [parcel]
