"""Geometry columns that work on PostGIS and on plain SQLite, and the spatial index DDL for each.

Geometries are stored in EPSG:4326 (lon, lat). PostgreSQL keeps them as PostGIS `geometry` with a
GiST index. SQLite cannot load SpatiaLite here, so geometries are WKB blobs and a built-in R*Tree
virtual table, kept in step by triggers from the row's bbox columns, is the spatial index.
"""

from __future__ import annotations

from typing import Any

import shapely
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry
from sqlalchemy import Float, LargeBinary, event
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import TypeDecorator, TypeEngine, UserDefinedType

SRID = 4326


class PostGISGeometry(UserDefinedType[Any]):
    """The PostGIS column type alone, for DDL; values are converted by `Geometry`."""

    cache_ok = True

    def __init__(self, geometry_type: str) -> None:
        self.geometry_type = geometry_type

    def get_col_spec(self, **kw: Any) -> str:
        return f"geometry({self.geometry_type},{SRID})"


class Geometry(TypeDecorator[BaseGeometry]):
    """A shapely geometry in EPSG:4326: PostGIS `geometry` on PostgreSQL, WKB on SQLite."""

    impl = LargeBinary
    cache_ok = True

    def __init__(self, geometry_type: str = "GEOMETRY") -> None:
        super().__init__()
        self.geometry_type = geometry_type

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            # The GiST index is created by the migration, so that it has a name we control.
            return dialect.type_descriptor(PostGISGeometry(self.geometry_type))
        return dialect.type_descriptor(LargeBinary())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.geometry_type!r})"

    def process_bind_param(self, value: BaseGeometry | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, BaseGeometry):
            raise TypeError(f"expected a shapely geometry, got {type(value).__name__}")
        if self.geometry_type == "MULTIPOLYGON" and isinstance(value, Polygon):
            value = MultiPolygon([value])  # PostGIS enforces the declared type
        if dialect.name == "postgresql":
            # PostGIS parses hex EWKB text straight into geometry.
            return shapely.to_wkb(shapely.set_srid(value, SRID), hex=True, include_srid=True)
        return shapely.to_wkb(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> BaseGeometry | None:
        if value is None:
            return None
        return shapely.from_wkb(value)


def bbox_values(geom: BaseGeometry | None) -> dict[str, float | None]:
    """The bbox columns for a geometry, for Core inserts that bypass the ORM."""
    if geom is None or geom.is_empty:
        return {"minx": None, "miny": None, "maxx": None, "maxy": None}
    minx, miny, maxx, maxy = geom.bounds
    return {"minx": minx, "miny": miny, "maxx": maxx, "maxy": maxy}


class Spatial:
    """Mixin for tables with a `geom` column: bbox columns feed SQLite's R*Tree."""

    minx: Mapped[float | None] = mapped_column(Float)
    miny: Mapped[float | None] = mapped_column(Float)
    maxx: Mapped[float | None] = mapped_column(Float)
    maxy: Mapped[float | None] = mapped_column(Float)


@event.listens_for(Spatial, "before_insert", propagate=True)
@event.listens_for(Spatial, "before_update", propagate=True)
def _sync_bbox(mapper: Any, connection: Any, target: Any) -> None:
    for name, value in bbox_values(target.geom).items():
        setattr(target, name, value)


def rtree_name(table: str) -> str:
    return f"{table}_rtree"


def gist_index_name(table: str) -> str:
    return f"ix_{table}_geom_gist"


def sqlite_rtree_ddl(table: str) -> list[str]:
    """R*Tree virtual table for `table` plus the triggers that keep it in step with the rows.

    The R*Tree stores 32-bit floats rounded outward, so it is a candidate filter; exact
    predicates are evaluated on the geometries afterwards.
    """
    rtree = rtree_name(table)
    insert = (
        f"INSERT INTO {rtree} (id, minx, maxx, miny, maxy) "
        "SELECT NEW.id, NEW.minx, NEW.maxx, NEW.miny, NEW.maxy WHERE NEW.minx IS NOT NULL;"
    )
    return [
        f"CREATE VIRTUAL TABLE {rtree} USING rtree(id, minx, maxx, miny, maxy)",
        f"INSERT INTO {rtree} (id, minx, maxx, miny, maxy) "
        f'SELECT id, minx, maxx, miny, maxy FROM "{table}" WHERE minx IS NOT NULL',
        f'CREATE TRIGGER {rtree}_ai AFTER INSERT ON "{table}" BEGIN {insert} END',
        f'CREATE TRIGGER {rtree}_au AFTER UPDATE OF minx, miny, maxx, maxy ON "{table}" BEGIN '
        f"DELETE FROM {rtree} WHERE id = OLD.id; {insert} END",
        f'CREATE TRIGGER {rtree}_ad AFTER DELETE ON "{table}" BEGIN '
        f"DELETE FROM {rtree} WHERE id = OLD.id; END",
    ]


def sqlite_rtree_drop_ddl(table: str) -> list[str]:
    rtree = rtree_name(table)
    return [f"DROP TRIGGER IF EXISTS {rtree}_{s}" for s in ("ai", "au", "ad")] + [
        f"DROP TABLE IF EXISTS {rtree}"
    ]
