"""One spatial query layer over PostGIS and SQLite's R*Tree, plus areas in m² and mu.

Index lookups run in the database on both backends (GiST `&&` on PostgreSQL, the R*Tree
virtual table on SQLite). Exact predicates run in PostGIS, or with shapely 2 on SQLite,
which has no geometry functions here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import shapely
from pyproj import CRS, Transformer
from shapely.geometry import MultiPolygon, Polygon, box
from shapely.geometry.base import BaseGeometry
from shapely.prepared import prep
from sqlalchemy import ColumnElement, Float, Integer, Select, column, func, select, table
from sqlalchemy.orm import Session

from models.geo import SRID, rtree_name

POLYGONAL = (Polygon, MultiPolygon)

M2_PER_MU = 10_000 / 15  # 1 mu = 666.67 m²


@dataclass(frozen=True)
class BBox:
    """A lon/lat box (EPSG:4326), west/south/east/north."""

    minx: float
    miny: float
    maxx: float
    maxy: float

    def __post_init__(self) -> None:
        if not (-180 <= self.minx <= self.maxx <= 180 and -90 <= self.miny <= self.maxy <= 90):
            raise ValueError(
                f"bbox {self.as_tuple()} is not minx,miny,maxx,maxy in lon/lat degrees "
                "(west <= east within -180..180, south <= north within -90..90)"
            )

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.minx, self.miny, self.maxx, self.maxy)

    @property
    def geometry(self) -> BaseGeometry:
        return box(*self.as_tuple())

    @classmethod
    def of(cls, geom: BaseGeometry) -> BBox:
        return cls(*geom.bounds)


def _rtree(model: Any) -> Any:
    return table(
        rtree_name(model.__tablename__),
        column("id", Integer),
        column("minx", Float),
        column("maxx", Float),
        column("miny", Float),
        column("maxy", Float),
    )


def bbox_clause(model: Any, bbox: BBox, dialect: str) -> ColumnElement[bool]:
    """Rows whose bounding box overlaps `bbox`, answered from the spatial index."""
    if dialect == "postgresql":
        envelope = func.ST_MakeEnvelope(*bbox.as_tuple(), SRID)
        return model.geom.bool_op("&&")(envelope)
    rtree = _rtree(model)
    candidates = select(rtree.c.id).where(
        rtree.c.minx <= bbox.maxx,
        rtree.c.maxx >= bbox.minx,
        rtree.c.miny <= bbox.maxy,
        rtree.c.maxy >= bbox.miny,
    )
    return model.id.in_(candidates)


def intersects_clause(model: Any, geom: BaseGeometry, dialect: str) -> ColumnElement[bool]:
    """The exact predicate where the database can evaluate it, else the index filter alone."""
    if dialect == "postgresql":
        shape = func.ST_GeomFromWKB(shapely.to_wkb(geom), SRID)
        return model.geom.bool_op("&&")(shape) & func.ST_Intersects(model.geom, shape)
    return bbox_clause(model, BBox.of(geom), dialect)


def iter_intersecting(
    session: Session,
    statement: Select[Any],
    model: Any,
    geom: BaseGeometry,
    *,
    limit: int | None = None,
    batch_size: int = 500,
) -> Iterator[Any]:
    """Entities of `statement` (which selects `model`) whose geometry intersects `geom`.

    The statement may carry other filters and an ORDER BY; `limit` counts exact matches,
    so on SQLite candidates are streamed and tested with shapely until enough are found.
    """
    dialect = session.get_bind().dialect.name
    statement = statement.where(intersects_clause(model, geom, dialect))
    if dialect == "postgresql":
        if limit is not None:
            statement = statement.limit(limit)
        yield from session.scalars(statement)
        return
    prepared = prep(geom)
    found = 0
    for row in session.scalars(statement.execution_options(yield_per=batch_size)):
        if prepared.intersects(row.geom):
            yield row
            found += 1
            if limit is not None and found >= limit:
                return


@lru_cache(maxsize=8)
def _to_projected(area_crs: str) -> Transformer:
    # Building a Transformer is slow (~100 ms); one per CRS per process.
    return Transformer.from_crs(CRS.from_epsg(SRID), CRS.from_user_input(area_crs), always_xy=True)


def project(geom: BaseGeometry, area_crs: str) -> BaseGeometry:
    """`geom` (lon/lat) in the projected CRS used for areas."""
    return shapely.transform(geom, _to_projected(area_crs).transform, interleaved=False)


def area_m2(geom: BaseGeometry, area_crs: str) -> float:
    return float(project(geom, area_crs).area)


def m2_to_mu(m2: float) -> float:
    return m2 / M2_PER_MU


def polygonal_part(geom: BaseGeometry) -> Polygon | MultiPolygon | None:
    """The areas of `geom` (a valid geometry), dropping lines and points; None if no area."""
    if isinstance(geom, POLYGONAL):
        return None if geom.is_empty else geom
    polygons = [
        part for part in shapely.get_parts(geom) if isinstance(part, Polygon) and not part.is_empty
    ]
    if not polygons:
        return None
    # A union, not a bare MultiPolygon: pieces of a collection may share edges.
    merged = shapely.union_all(polygons)
    return merged if isinstance(merged, POLYGONAL) else polygonal_part(merged)
