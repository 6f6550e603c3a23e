"""The cases as one lean GeoJSON layer for the map: only what drawing and clicking need.

The full export carries every field of every case (about 780 bytes of properties each); the
map needs id, code, status and priority, so 10,000 cases travel as ~2 MB instead of ~8 MB
and are serialised without building a read model per case.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import shapely
from sqlalchemy import LargeBinary, String, type_coerce
from sqlalchemy.orm import Session

from models import Case
from service.auth import Principal
from service.cases.queries import CaseFilter, visible_cases
from service.errors import InvalidInputError
from service.spatial import BBox, bbox_clause

MAX_MAP_CASES = 50_000  # the same ceiling as the export


def case_layer_json(principal: Principal, *, session: Session, bbox: BBox | None = None) -> str:
    """A GeoJSON FeatureCollection (RFC 7946) of the caller's cases, as JSON text."""
    statement = (
        visible_cases(principal, CaseFilter(), session=session)
        .with_only_columns(
            Case.id,
            Case.code,
            # Raw values: enums and geometries are converted below for all rows at once.
            type_coerce(Case.status, String).label("status"),
            Case.priority,
            type_coerce(Case.geom, LargeBinary).label("wkb"),
        )
        .order_by(Case.priority.desc(), Case.id)
    )
    if bbox is not None:  # the index filter alone: a few extra cases at the edge do no harm
        statement = statement.where(bbox_clause(Case, bbox, session.get_bind().dialect.name))
    rows = session.connection().execute(statement.limit(MAX_MAP_CASES + 1)).all()
    if len(rows) > MAX_MAP_CASES:
        raise InvalidInputError(
            f"more than {MAX_MAP_CASES} cases are in view: zoom in or pass a smaller bbox"
        )
    return _collection(rows)


def _collection(rows: Sequence[Any]) -> str:
    if not rows:
        return '{"type":"FeatureCollection","features":[]}'
    # WKB bytes from SQLite, hex EWKB text from PostgreSQL: shapely reads both.
    geoms = shapely.from_wkb([row.wkb for row in rows])
    # RFC 7946 advises about 7 decimals (1 cm); rounding keeps the payload small.
    geoms = shapely.transform(geoms, lambda xy: np.round(xy, 7))
    geometries = shapely.to_geojson(geoms)
    bounds = np.round(shapely.bounds(geoms), 7).tolist()
    features = []
    for row, geometry, box in zip(rows, geometries, bounds, strict=True):
        properties = {"id": row.id, "code": row.code, "status": row.status}
        properties["priority"] = row.priority
        features.append(
            f'{{"type":"Feature","id":{row.id},"bbox":{json.dumps(box)},'
            f'"geometry":{geometry},"properties":{json.dumps(properties)}}}'
        )
    return '{"type":"FeatureCollection","features":[' + ",".join(features) + "]}"
