"""Cutting large or sprawling polygons into parts so that bounding-box lookups stay selective."""

from __future__ import annotations

from dataclasses import dataclass

import shapely
from shapely.geometry import MultiPolygon, Polygon, box
from shapely.geometry.base import BaseGeometry

from service.spatial import polygonal_part


@dataclass(frozen=True)
class SubdivisionParams:
    """When a polygon is split so that the spatial index (bounding boxes) stays selective."""

    max_vertices: int = 2_000
    # bbox area / polygon area above this marks long thin or sprawling shapes (rivers, roads).
    max_bbox_ratio: float = 20.0
    # ...but parts smaller than this (degrees, ~1 km) are selective enough already.
    min_cell_degrees: float = 0.01
    max_depth: int = 24  # guards against endless splitting of pathological vertex clusters


def subdivide(
    geom: Polygon | MultiPolygon, *, params: SubdivisionParams
) -> list[Polygon | MultiPolygon]:
    """`geom` cut into parts along a recursive halving grid of its bounding box.

    A part is split again while it has more than `params.max_vertices` vertices, or while its
    bounding box is much larger than its area and wider than `params.min_cell_degrees`. The
    parts do not overlap and their union is `geom`.
    """
    return _subdivide(geom, params, depth=0)


def _subdivide(
    geom: Polygon | MultiPolygon, params: SubdivisionParams, *, depth: int
) -> list[Polygon | MultiPolygon]:
    if depth >= params.max_depth or not _needs_split(geom, params):
        return [geom]
    minx, miny, maxx, maxy = geom.bounds
    if maxx - minx >= maxy - miny:
        middle = (minx + maxx) / 2
        halves = (box(minx, miny, middle, maxy), box(middle, miny, maxx, maxy))
    else:
        middle = (miny + maxy) / 2
        halves = (box(minx, miny, maxx, middle), box(minx, middle, maxx, maxy))
    parts: list[Polygon | MultiPolygon] = []
    for half in halves:
        piece = polygonal_part(shapely.intersection(geom, half))
        if piece is not None:
            parts.extend(_subdivide(piece, params, depth=depth + 1))
    return parts


def _needs_split(geom: BaseGeometry, params: SubdivisionParams) -> bool:
    if shapely.get_num_coordinates(geom) > params.max_vertices:
        return True
    minx, miny, maxx, maxy = geom.bounds
    if max(maxx - minx, maxy - miny) <= params.min_cell_degrees:
        return False
    return (maxx - minx) * (maxy - miny) > params.max_bbox_ratio * geom.area
