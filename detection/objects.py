"""Change objects: labelled regions of the mask as map polygons with area, type and confidence."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
from affine import Affine
from pyproj import CRS, Geod
from rasterio.features import shapes
from scipy import ndimage
from shapely import STRtree
from shapely.geometry import Polygon, shape
from shapely.ops import unary_union

from detection.decide import CONNECTIVITY
from detection.rs_params import M2_PER_MU, RasterDetectorParams
from detection.rs_parcels import ParcelContext, farm_activity, stands_out
from detection.rs_standout import LIKE_PARCEL, STANDS_OUT, UNJUDGED

#: Farm work: reported so the map shows it, but never a suspected violation.
BENIGN_TYPES = frozenset({"ploughing", "harvest", "paddy_flooding"})
#: What a patch that looks like farm work but stands out from its parcel is reported as.
SUSPECT_FOR_BENIGN = {"paddy_flooding": "pond", "ploughing": "excavation"}
_GEOD = Geod(ellps="WGS84")


@dataclass(frozen=True)
class ChangeObject:
    """One connected region of change.

    Attributes
    ----------
    geometry : shapely Polygon
        Outline in map coordinates of the before grid (pixel coordinates when the image
        has no georeferencing: x = column, y = row).
    area_m2, area_mu : float
        Area in square metres and in mu (1 mu = 666.67 m²).
    change_type : str
        building, hardening, excavation, piling, pond, vegetation_loss, ploughing,
        harvest, paddy_flooding or unknown.
    benign : bool
        True for farm work (ploughing, harvest, paddy flooding): never a case.
    confidence : float
        0–1: 0.5 when the object's mean score equals the strong-change threshold,
        approaching 1 for much stronger change (below 0.5 for mostly weak, grown pixels).
    indices_before, indices_after : mapping of str to float
        Mean spectral indices over the object at each date ("ndvi", "ndwi", "bare",
        "brightness" in before units, ...).
    pixels : int
        Number of pixels.
    parcel_fraction : float or None
        Fraction of the farmland parcel under the object covered by change (all objects on
        it together; None without parcels).
    """

    geometry: Polygon
    area_m2: float
    area_mu: float
    change_type: str
    benign: bool
    confidence: float
    indices_before: Mapping[str, float]
    indices_after: Mapping[str, float]
    pixels: int
    parcel_fraction: float | None = None


@dataclass
class ObjectPiece:
    """Part of an object found in one tile; pieces on tile edges are merged later."""

    geometry: Polygon
    pixels: int
    score_sum: float
    sums_before: dict[str, float] = field(default_factory=dict)
    sums_after: dict[str, float] = field(default_factory=dict)
    on_tile_edge: bool = False
    kind: int = 0

    def absorb(self, other: ObjectPiece) -> None:
        self.pixels += other.pixels
        self.score_sum += other.score_sum
        for name in self.sums_before:
            self.sums_before[name] += other.sums_before.get(name, 0.0)
            self.sums_after[name] += other.sums_after.get(name, 0.0)


def pixel_area_m2(
    transform: Affine | None, crs: str | None, shape: tuple[int, int], *, pixel_size_m: float
) -> float:
    """Ground area of one pixel in m² (geodesic at the image centre for geographic CRSs)."""
    if transform is None:
        return pixel_size_m**2
    if crs and CRS.from_user_input(crs).is_geographic:
        rows, cols = shape
        x, y = transform @ (cols / 2, rows / 2)
        cell = Polygon([transform @ (c, r) for c, r in ((0, 0), (1, 0), (1, 1), (0, 1))])
        moved = Polygon(
            [
                (px - cell.centroid.x + x, py - cell.centroid.y + y)
                for px, py in cell.exterior.coords
            ]
        )
        return abs(_GEOD.geometry_area_perimeter(moved)[0])
    return abs(transform.determinant) * _metres_per_unit(crs) ** 2


def _metres_per_unit(crs: str | None) -> float:
    if not crs:
        return 1.0
    axis = CRS.from_user_input(crs).axis_info
    return float(axis[0].unit_conversion_factor) if axis else 1.0


def polygon_area_m2(
    geometry: Polygon, crs: str | None, *, pixel_area: float, transform: Affine | None
) -> float:
    """Area of a polygon in m²: geodesic for geographic CRSs, planar otherwise."""
    if transform is None:
        return geometry.area * pixel_area
    if crs and CRS.from_user_input(crs).is_geographic:
        return abs(_GEOD.geometry_area_perimeter(geometry)[0])
    return geometry.area * _metres_per_unit(crs) ** 2


def tile_pieces(
    mask: np.ndarray,
    score: np.ndarray,
    before_indices: Mapping[str, np.ndarray],
    after_indices: Mapping[str, np.ndarray],
    *,
    classes: np.ndarray,
    transform: Affine,
    touches_edge: tuple[bool, bool, bool, bool],
    region: tuple[slice, slice] | None = None,
) -> list[ObjectPiece]:
    """Pieces of the change objects inside one tile core.

    Parameters
    ----------
    mask, score : ndarray of shape (rows, cols)
        Decision and score of the tile core.
    before_indices, after_indices : mapping of str to ndarray of shape (rows, cols)
    transform : Affine
        Pixel-to-map transform of the tile core.
    classes : ndarray of shape (rows, cols), int
        Material class of each changed pixel (`surface_class`); objects do not span classes,
        so a pond or a slab inside a ploughed field stays an object of its own.
    touches_edge : (top, bottom, left, right)
        Which core edges border another tile (pieces there may continue).
    region : (slice, slice), optional
        The part of the core that holds all of `mask`; the indices and `classes` then cover
        just that part (what lies outside the change is never read: less work, same sums).
    """
    region = region or (slice(None), slice(None))
    part, count = _label_by_class(mask[region], classes)
    if count == 0:
        return []
    labels = np.zeros(mask.shape, dtype=np.int32)
    labels[region] = part
    kinds = ndimage.maximum(classes, part, np.arange(1, count + 1))
    index = np.arange(1, count + 1)
    pixels = ndimage.sum_labels(mask[region], part, index)
    score_sums = ndimage.sum_labels(score[region], part, index)
    before = {k: ndimage.sum_labels(v, part, index) for k, v in before_indices.items()}
    after = {k: ndimage.sum_labels(v, part, index) for k, v in after_indices.items()}
    edge = _labels_on_edges(labels, touches_edge)
    # Traced from the core's corner to the far side of the change only: the same pixel
    # coordinates under the same transform give the same vertices, and what lies beyond
    # holds no change (tracing the whole core cost more than everything else here).
    traced = (slice(0, region[0].stop), slice(0, region[1].stop))
    pieces = []
    for geometry, value in shapes(
        np.ascontiguousarray(labels[traced]),
        mask=np.ascontiguousarray(mask[traced]),
        connectivity=4,
        transform=transform,
    ):
        i = int(value) - 1
        pieces.append(
            ObjectPiece(
                geometry=shape(geometry),
                pixels=int(pixels[i]),
                score_sum=float(score_sums[i]),
                sums_before={k: float(v[i]) for k, v in before.items()},
                sums_after={k: float(v[i]) for k, v in after.items()},
                on_tile_edge=bool(edge[i + 1]),
                kind=int(kinds[i]),
            )
        )
    return pieces


#: Material classes of changed pixels (see `surface_class`).
OTHER, WATER, BRIGHT, SOIL = 0, 1, 2, 3
#: A piece's kind is its material class + this × its parcel judgement (see rs_standout).
JUDGEMENT_STRIDE = 4


def surface_class(
    before: Mapping[str, np.ndarray], after: Mapping[str, np.ndarray], *, water_ndwi: float
) -> np.ndarray:
    """What a changed pixel turned into: new water, bright grey surface, bright soil, other.

    Parameters
    ----------
    before, after : mapping of str to ndarray of shape (rows, cols)
        Spectral indices of each date (`detection.features.spectral_indices`).

    Returns
    -------
    ndarray of shape (rows, cols), int8
        WATER, BRIGHT, SOIL or OTHER.
    """
    brightening = (after["brightness"] - before["brightness"]) / np.maximum(
        np.abs(before["brightness"]), 1e-6
    )
    classes = np.full(brightening.shape, OTHER, dtype=np.int8)
    bare = after.get("bare", np.zeros_like(brightening))
    unvegetated = after.get("ndvi", np.zeros_like(brightening)) < 0.2
    classes[unvegetated & (brightening > 0.1) & (bare > 0.05)] = SOIL
    classes[unvegetated & (brightening > 0.25) & (np.abs(bare) <= 0.05)] = BRIGHT
    if "ndwi" in after:
        classes[(after["ndwi"] > water_ndwi) & (before["ndwi"] <= water_ndwi)] = WATER
    return classes


def _mean_material(
    before: Mapping[str, float], after: Mapping[str, float], *, water_ndwi: float
) -> int:
    """`surface_class` of an object's mean indices."""
    as_arrays = [{k: np.array([v]) for k, v in side.items()} for side in (before, after)]
    return int(surface_class(as_arrays[0], as_arrays[1], water_ndwi=water_ndwi)[0])


def _label_by_class(mask: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, int]:
    labels = np.zeros(mask.shape, dtype=np.int32)
    count = 0
    for kind in np.unique(classes[mask]):
        part, found = ndimage.label(mask & (classes == kind), CONNECTIVITY)
        labels[part > 0] = part[part > 0] + count
        count += found
    return labels, count


def _labels_on_edges(labels: np.ndarray, touches: tuple[bool, bool, bool, bool]) -> np.ndarray:
    flags = np.zeros(labels.max() + 1, dtype=bool)
    strips = (labels[0], labels[-1], labels[:, 0], labels[:, -1])
    for strip, touching in zip(strips, touches, strict=True):
        if touching:
            flags[strip] = True
    flags[0] = False
    return flags


def merge_pieces(pieces: Iterable[ObjectPiece]) -> list[ObjectPiece]:
    """Join pieces that share a tile edge into one piece per object."""
    pieces = list(pieces)
    inner = [p for p in pieces if not p.on_tile_edge]
    edge = [p for p in pieces if p.on_tile_edge]
    if not edge:
        return inner
    parent = list(range(len(edge)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    tree = STRtree([p.geometry for p in edge])
    left, right = tree.query([p.geometry for p in edge], predicate="intersects")
    for a, b in zip(left, right, strict=True):
        # Pieces touching only at a corner are separate under 4-connectivity.
        if (
            a != b
            and edge[a].kind == edge[b].kind
            and edge[a].geometry.intersection(edge[b].geometry).length > 0
        ):
            parent[root(int(a))] = root(int(b))
    groups: dict[int, list[ObjectPiece]] = {}
    for i, piece in enumerate(edge):
        groups.setdefault(root(i), []).append(piece)
    merged = []
    for members in groups.values():
        first = members[0]
        for other in members[1:]:
            first.absorb(other)
        first.geometry = unary_union([m.geometry for m in members])
        merged.append(first)
    return inner + merged


def classify_change(
    before: Mapping[str, float],
    after: Mapping[str, float],
    *,
    params: RasterDetectorParams,
    kind: int = OTHER,
    parcel_fraction: float | None = None,
) -> str:
    """Change type from the material class and mean indices before and after.

    New water is a pond, or paddy flooding when it fills a parcel (or, without parcels,
    lies on bare soil). A bright grey surface is hardening, or a building when the
    brightening is strong. Bright bare soil is excavation, or piling when much brighter.
    Otherwise: vegetation turning into darker soil is ploughing; into cover that is still
    partly green or only slightly brighter, harvest; a smaller loss of greenness is
    vegetation loss.
    """
    brightening = (after["brightness"] - before["brightness"]) / max(
        abs(before["brightness"]), 1e-6
    )
    after_ndvi = after.get("ndvi", 0.0)
    ndvi_drop = before.get("ndvi", 0.0) - after_ndvi
    if kind == WATER:
        if parcel_fraction is not None:
            return "paddy_flooding" if parcel_fraction >= params.parcel_fraction_farming else "pond"
        return "paddy_flooding" if before.get("ndvi", 1.0) < 0.2 else "pond"
    if kind == BRIGHT:
        return "building" if brightening > 1.0 else "hardening"
    if kind == SOIL:
        return "piling" if brightening > 0.5 else "excavation"
    if ndvi_drop > params.ndvi_drop:
        if brightening < 0.05:
            return "ploughing"
        if after_ndvi > 0.15 or brightening < 0.25:
            return "harvest"
        return "excavation"
    if brightening > 0.25:
        return "hardening"
    if "ndvi" in after and ndvi_drop > params.ndvi_drop / 2:
        return "vegetation_loss"
    return "unknown"


def finish_object(
    piece: ObjectPiece,
    *,
    strong: float,
    params: RasterDetectorParams,
    crs: str | None,
    transform: Affine | None,
    pixel_area: float,
    context: ParcelContext | None = None,
) -> ChangeObject:
    """Turn a merged piece into a reported object.

    With farmland parcels, change over most of a parcel is farm work (benign) whatever its
    spectra (bare, flooded or film-covered fields look like excavation, ponds or
    concrete), unless the piece turned into something else than the rest of its parcel:
    farming acts on whole parcels alike, a violation stands out on part of one.
    """
    count = max(piece.pixels, 1)
    before = {k: v / count for k, v in piece.sums_before.items()}
    after = {k: v / count for k, v in piece.sums_after.items()}
    judgement, material = divmod(piece.kind, JUDGEMENT_STRIDE)
    if judgement == STANDS_OUT:
        material = _mean_material(before, after, water_ndwi=params.water_ndwi)
    if judgement == UNJUDGED:
        farm_wide = (
            context is not None
            and context.changed_fraction >= params.parcel_fraction_farming
            and not stands_out(after, context.others_after, water_ndwi=params.water_ndwi)
        )
    else:
        # The parcel was compared with itself pixel by pixel: change like the rest of the
        # parcel is farming or season, whatever its spectra.
        farm_wide = judgement == LIKE_PARCEL
    if farm_wide:
        change_type, benign = farm_activity(before, after), True
    else:
        change_type = classify_change(
            before,
            after,
            params=params,
            kind=material,
            parcel_fraction=None if context is None else context.own_fraction,
        )
        if judgement == STANDS_OUT and change_type in BENIGN_TYPES:
            # Farming acts on whole parcels: a patch unlike the rest of its parcel is not it.
            change_type = SUSPECT_FOR_BENIGN.get(change_type, "vegetation_loss")
        benign = change_type in BENIGN_TYPES
    area = polygon_area_m2(piece.geometry, crs, pixel_area=pixel_area, transform=transform)
    mean_score = piece.score_sum / count
    confidence = 1.0 - 0.5 ** (mean_score / strong) if strong > 0 else 1.0
    return ChangeObject(
        geometry=piece.geometry,
        area_m2=float(area),
        area_mu=float(area / M2_PER_MU),
        change_type=change_type,
        benign=benign,
        confidence=float(min(max(confidence, 0.0), 1.0)),
        indices_before={k: round(v, 4) for k, v in before.items()},
        indices_after={k: round(v, 4) for k, v in after.items()},
        pixels=piece.pixels,
        parcel_fraction=None if context is None else round(context.changed_fraction, 3),
    )
