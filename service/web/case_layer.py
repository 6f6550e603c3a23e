"""The cases as lean GeoJSON layers for the map: only what drawing and clicking need.

The full export carries every field of every case (about 780 bytes of properties each); the
map needs id, code, status and priority, so 10,000 outlines travel as ~3 MB instead of ~8 MB
and are serialised without building a read model per case. Zoomed out, the map draws points
only: `case_points_json` gives each case's bbox centre from the indexed bbox columns, without
reading a geometry, so 10,000 cases are ~1.5 MB built in a tenth of the outlines' time.
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


def case_points_json(principal: Principal, *, session: Session) -> str:
    """A GeoJSON FeatureCollection of the caller's cases as points (bbox centres), as JSON text."""
    statement = (
        visible_cases(principal, CaseFilter(), session=session)
        .with_only_columns(
            Case.id,
            type_coerce(Case.status, String).label("status"),
            Case.priority,
            ((Case.minx + Case.maxx) / 2).label("x"),
            ((Case.miny + Case.maxy) / 2).label("y"),
        )
        .where(Case.minx.is_not(None))  # kept by the ORM for every case with an outline
        .order_by(Case.priority.desc(), Case.id)
    )
    rows = session.connection().execute(statement.limit(MAX_MAP_CASES + 1)).all()
    if len(rows) > MAX_MAP_CASES:
        raise InvalidInputError(
            f"more than {MAX_MAP_CASES} cases are visible: filter by jurisdiction to draw them"
        )
    # Numbers and enum words only, so nothing needs escaping: formatting the text directly
    # skips building 10,000 dicts for json. Seven decimals (1 cm), as for the outlines.
    features = ",".join(
        f'{{"type":"Feature","id":{id_},"geometry":{{"type":"Point","coordinates":'
        f'[{x:.7f},{y:.7f}]}},"properties":{{"id":{id_},'
        f'"status":"{status}","priority":{priority}}}}}'
        for id_, status, priority, x, y in rows
    )
    return '{"type":"FeatureCollection","features":[' + features + "]}"


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
