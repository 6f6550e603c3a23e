"""Farm parcels as context for change objects: farming is parcel-wide and uniform."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from shapely import STRtree
from shapely.geometry.base import BaseGeometry

#: A piece differs from the rest of its parcel's change by more than these margins:
#: relative visible brightness, NDVI (index units).
BRIGHTNESS_MARGIN = 0.25
NDVI_MARGIN = 0.15


@dataclass(frozen=True)
class ParcelContext:
    """Where a change piece sits among its parcel's change.

    Attributes
    ----------
    changed_fraction : float
        Fraction of the parcel covered by all change pieces in it.
    own_fraction : float
        Fraction of the parcel covered by this piece.
    others_after : mapping of str to float, or None
        Pixel-weighted mean after-date indices of the other pieces in the parcel.
    """

    changed_fraction: float
    own_fraction: float
    others_after: Mapping[str, float] | None


def parcel_contexts(
    geometries: Sequence[BaseGeometry],
    pixels: Sequence[int],
    sums_after: Sequence[Mapping[str, float]],
    parcels: Sequence[BaseGeometry],
) -> list[ParcelContext | None]:
    """The parcel context of each piece (None for a piece on no parcel).

    Parameters
    ----------
    geometries : sequence of shapely geometries
        Piece outlines, in the parcels' CRS.
    pixels : sequence of int
        Pixels per piece.
    sums_after : sequence of mappings
        Per piece, the sum over its pixels of each after-date index.
    parcels : sequence of shapely geometries
    """
    tree = STRtree(list(parcels))
    homes: list[tuple[int, float] | None] = []
    for geometry in geometries:
        best: tuple[int, float] | None = None
        for index in tree.query(geometry, predicate="intersects"):
            overlap = parcels[int(index)].intersection(geometry).area
            if overlap > 0 and (best is None or overlap > best[1]):
                best = (int(index), overlap)
        homes.append(best)
    covered: dict[int, float] = {}
    totals: dict[int, tuple[int, dict[str, float]]] = {}
    for home, count, sums in zip(homes, pixels, sums_after, strict=True):
        if home is None:
            continue
        covered[home[0]] = covered.get(home[0], 0.0) + home[1]
        total_pixels, total_sums = totals.get(home[0], (0, {}))
        merged = {k: total_sums.get(k, 0.0) + v for k, v in sums.items()}
        totals[home[0]] = (total_pixels + count, merged)
    contexts: list[ParcelContext | None] = []
    for home, count, sums in zip(homes, pixels, sums_after, strict=True):
        if home is None:
            contexts.append(None)
            continue
        area = max(parcels[home[0]].area, 1e-12)
        total_pixels, total_sums = totals[home[0]]
        others = total_pixels - count
        others_after = {k: (total_sums[k] - sums[k]) / others for k in sums} if others > 0 else None
        contexts.append(
            ParcelContext(
                changed_fraction=min(covered[home[0]] / area, 1.0),
                own_fraction=min(home[1] / area, 1.0),
                others_after=others_after,
            )
        )
    return contexts


def stands_out(
    after: Mapping[str, float], others_after: Mapping[str, float] | None, *, water_ndwi: float
) -> bool:
    """Whether a piece turned into something else than the rest of its parcel did."""
    if others_after is None:
        return False
    if "ndwi" in after and (after["ndwi"] > water_ndwi) != (others_after["ndwi"] > water_ndwi):
        return True
    reference = max(abs(others_after["brightness"]), 1e-6)
    if abs(after["brightness"] - others_after["brightness"]) / reference > BRIGHTNESS_MARGIN:
        return True
    return "ndvi" in after and abs(after["ndvi"] - others_after["ndvi"]) > NDVI_MARGIN


def farm_activity(before: Mapping[str, float], after: Mapping[str, float]) -> str:
    """Which farm work a parcel-wide change most resembles (unknown when none fits)."""
    if after.get("ndwi", -1.0) > 0.0 >= before.get("ndwi", -1.0):
        return "paddy_flooding"
    brightening = (after["brightness"] - before["brightness"]) / max(
        abs(before["brightness"]), 1e-6
    )
    if before.get("ndvi", 0.0) - after.get("ndvi", 0.0) > 0.1:
        return "harvest" if brightening > 0.05 else "ploughing"
    return "unknown"
