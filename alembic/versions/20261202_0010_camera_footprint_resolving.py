"""camera presets' footprints end where a pixel covers more ground than the camera resolves

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 15:00:00

A data migration: each calibrated preset's stored footprint (what coverage counts as observed)
is computed again from its control points with `GeolocateParams.max_pixel_area_m2`, as a new
registration would be; the downgrade computes it again without that limit.
"""

import math
from collections.abc import Sequence
from dataclasses import replace

import sqlalchemy as sa
from alembic import op
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry

from detection.errors import CalibrationError
from detection.geolocate import (
    GeolocateParams,
    fit_calibration,
    ground_footprint,
    parse_control_points,
)
from models.base import Json
from models.geo import Geometry, bbox_values

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PRESETS = sa.table(
    "camera_preset",
    sa.column("id", sa.BigInteger),
    sa.column("image_width", sa.Integer),
    sa.column("image_height", sa.Integer),
    sa.column("control_points", Json),
    sa.column("geom", Geometry("POLYGON")),
    sa.column("minx", sa.Float),
    sa.column("miny", sa.Float),
    sa.column("maxx", sa.Float),
    sa.column("maxy", sa.Float),
)


def _footprint(row: sa.Row, params: GeolocateParams) -> Polygon | None:
    """The preset's footprint as registration stores it (its largest part); None when the
    preset resolves no ground at all."""
    calibration = fit_calibration(
        parse_control_points(row.control_points),
        camera_id=str(row.id),
        image_size=(row.image_width, row.image_height),
    )
    try:
        footprint: BaseGeometry = ground_footprint(calibration, params=params)
    except CalibrationError:
        return None
    parts = [footprint] if isinstance(footprint, Polygon) else list(getattr(footprint, "geoms", []))
    polygons = [part for part in parts if isinstance(part, Polygon) and not part.is_empty]
    return max(polygons, key=lambda part: part.area) if polygons else None


def _store_footprints(params: GeolocateParams) -> None:
    bind = op.get_bind()
    presets = sa.select(
        PRESETS.c.id, PRESETS.c.image_width, PRESETS.c.image_height, PRESETS.c.control_points
    )
    for row in bind.execute(presets).all():
        if not row.control_points:
            continue  # not calibrated: nothing to compute
        try:
            footprint = _footprint(row, params)
        except CalibrationError:
            continue  # calibrated under other limits: its footprint stays as stored
        bind.execute(
            PRESETS.update()
            .where(PRESETS.c.id == row.id)
            .values(geom=footprint, **bbox_values(footprint))
        )


def upgrade() -> None:
    _store_footprints(GeolocateParams())


def downgrade() -> None:
    _store_footprints(replace(GeolocateParams(), max_pixel_area_m2=math.inf))
