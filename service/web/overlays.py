"""Read-only map overlays for the one-map page: legal layers, cameras, jurisdictions, imagery.

Each function returns GeoJSON features limited to what the caller may see: cameras and
jurisdictions by the caller's jurisdictions, layer features and imagery footprints by the
extent of those jurisdictions (administrators see everything).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import shapely
from shapely.geometry import Polygon, shape
from shapely.geometry.base import BaseGeometry
from sqlalchemy import ColumnElement, Select, false, or_, select, true
from sqlalchemy.orm import Session

from models import Jurisdiction
from models.base import utcnow
from models.camera import Camera, CameraPreset
from models.layer import Layer, LayerFeature, LayerKind, LayerVersion
from models.scene import Scene, SceneKind, SceneStatus
from service.auth import Principal
from service.cases.schemas import geojson_geometry
from service.cases.transitions import ASSIGNING_ROLES, ROLE_TARGETS
from service.cases.workflow import TRANSITIONS
from service.errors import NotFoundError
from service.spatial import BBox, bbox_clause

MAX_FEATURES = 20_000  # per overlay response; the page says when a list was cut short


@dataclass(frozen=True)
class Overlay:
    features: list[dict[str, Any]]
    truncated: bool = False

    def collection(self) -> dict[str, Any]:
        return {
            "type": "FeatureCollection",
            "features": self.features,
            "numberReturned": len(self.features),
            "truncated": self.truncated,
        }


def feature(geom: Any, properties: dict[str, Any], feature_id: int | str) -> dict[str, Any]:
    return {
        "type": "Feature",
        "id": feature_id,
        "geometry": geojson_geometry(geom),
        "properties": properties,
    }


def _jurisdiction_clause(column: Any, principal: Principal) -> ColumnElement[bool]:
    if principal.sees_everything:
        return true()
    if not principal.jurisdiction_ids:
        return false()
    return column.in_(sorted(principal.jurisdiction_ids))


def visible_extent(principal: Principal, *, session: Session) -> BBox | None:
    """The bounding box of the caller's jurisdictions; None means no limit (administrators)."""
    if principal.sees_everything:
        return None
    geoms = list(
        session.scalars(
            select(Jurisdiction.geom).where(_jurisdiction_clause(Jurisdiction.id, principal))
        )
    )
    if not geoms:
        return BBox(0.0, 0.0, 0.0, 0.0)  # sees nothing: a degenerate box matches nothing real
    return BBox(*shapely.union_all(geoms).bounds)


def _limited(
    statement: Select[Any], model: Any, extent: BBox | None, bbox: BBox | None, dialect: str
) -> Select[Any]:
    for box_ in (extent, bbox):
        if box_ is not None:
            statement = statement.where(bbox_clause(model, box_, dialect))
    return statement


def _fetch(session: Session, statement: Select[Any]) -> tuple[list[Any], bool]:
    rows = list(session.scalars(statement.limit(MAX_FEATURES + 1)))
    return rows[:MAX_FEATURES], len(rows) > MAX_FEATURES


def current_layer_versions(*, session: Session) -> dict[LayerKind, LayerVersion]:
    """The version of each layer valid now (the latest one started, not yet ended)."""
    now = utcnow()
    statement = (
        select(Layer.kind, LayerVersion)
        .join(LayerVersion, LayerVersion.layer_id == Layer.id)
        .where(LayerVersion.valid_from <= now)
        .where(or_(LayerVersion.valid_to.is_(None), LayerVersion.valid_to > now))
        .order_by(LayerVersion.valid_from)
    )
    return {kind: version for kind, version in session.execute(statement)}  # latest wins


def list_layers(*, session: Session) -> list[dict[str, Any]]:
    versions = current_layer_versions(session=session)
    return [
        {
            "kind": str(kind),
            "version": version.version,
            "valid_from": version.valid_from.isoformat(),
            "feature_count": version.feature_count,
        }
        for kind, version in sorted(versions.items())
    ]


def layer_features(
    kind: LayerKind, principal: Principal, *, session: Session, bbox: BBox | None = None
) -> Overlay:
    version = current_layer_versions(session=session).get(kind)
    if version is None:
        raise NotFoundError(
            f"layer {kind} has no version valid now: import one with `tianxun layers import`"
        )
    dialect = session.get_bind().dialect.name
    statement = select(LayerFeature).where(LayerFeature.layer_version_id == version.id)
    extent = visible_extent(principal, session=session)
    rows, truncated = _fetch(
        session, _limited(statement.order_by(LayerFeature.id), LayerFeature, extent, bbox, dialect)
    )
    features = [feature(row.geom, _layer_properties(kind, row, version), row.id) for row in rows]
    return Overlay(features, truncated)


def _layer_properties(kind: LayerKind, row: LayerFeature, version: LayerVersion) -> dict[str, Any]:
    return {"kind": str(kind), "source_ref": row.source_ref, "version": version.version}


def camera_features(principal: Principal, *, session: Session) -> Overlay:
    """Towers as points and their presets' viewsheds as polygons, with health and last contact."""
    scope = _jurisdiction_clause(Camera.jurisdiction_id, principal)
    statement = select(Camera).where(scope).order_by(Camera.id)
    cameras, truncated = _fetch(session, statement)
    presets = session.scalars(
        select(CameraPreset)
        .where(CameraPreset.camera_id.in_([c.id for c in cameras]))
        .where(CameraPreset.geom.is_not(None))
    )
    by_id = {camera.id: camera for camera in cameras}
    features = [feature(c.geom, _camera_properties(c, "tower"), f"camera-{c.id}") for c in cameras]
    for preset in presets:
        properties = _camera_properties(by_id[preset.camera_id], "viewshed") | {
            "preset": preset.preset
        }
        features.append(feature(preset.geom, properties, f"preset-{preset.id}"))
    return Overlay(features, truncated)


def _camera_properties(camera: Camera, part: str) -> dict[str, Any]:
    return {
        "part": part,
        "code": camera.code,
        "name": camera.name,
        "health": str(camera.health),
        "last_seen_at": camera.last_seen_at.isoformat() if camera.last_seen_at else None,
    }


def jurisdiction_features(principal: Principal, *, session: Session) -> Overlay:
    statement = (
        select(Jurisdiction)
        .where(_jurisdiction_clause(Jurisdiction.id, principal))
        .order_by(Jurisdiction.id)
    )
    rows, truncated = _fetch(session, statement)
    features = [
        feature(j.geom, {"code": j.code, "name": j.name, "level": str(j.level)}, j.id) for j in rows
    ]
    return Overlay(features, truncated)


def _visible_scenes(principal: Principal, *, session: Session) -> tuple[list[Scene], bool]:
    """Usable remote-sensing scenes with a footprint in the caller's area, newest first."""
    dialect = session.get_bind().dialect.name
    statement = (
        select(Scene)
        .where(Scene.kind == SceneKind.rs_tile, Scene.status != SceneStatus.failed)
        .where(Scene.geom.is_not(None))
        .order_by(Scene.acquired_at.desc(), Scene.id.desc())
    )
    extent = visible_extent(principal, session=session)
    return _fetch(session, _limited(statement, Scene, extent, None, dialect))


def scene_features(principal: Principal, *, session: Session) -> Overlay:
    """Footprints of usable remote-sensing scenes with their dates, newest first."""
    rows, truncated = _visible_scenes(principal, session=session)
    features = [
        feature(s.geom, {"scene_id": s.id, "acquired_at": s.acquired_at.isoformat()}, s.id)
        for s in rows
    ]
    return Overlay(features, truncated)


def unobserved_features(principal: Principal, *, session: Session, days: float) -> Overlay:
    """Ground whose newest imagery is older than `days`, one polygon per last-observed scene.

    An empty map there means "not looked at", not "no violations"; the page shades it.
    """
    rows, truncated = _visible_scenes(principal, session=session)
    cutoff = utcnow() - timedelta(days=days)
    covered: BaseGeometry = Polygon()  # ground already seen by a newer scene
    features = []
    for scene in rows:  # newest first, so each place keeps its latest observation
        if scene.geom is None:
            continue
        if scene.acquired_at < cutoff:
            part = scene.geom.difference(covered)
            if not part.is_empty:
                properties = {
                    "scene_id": scene.id,
                    "last_observed_at": scene.acquired_at.isoformat(),
                }
                features.append(feature(part, properties, scene.id))
        covered = covered.union(scene.geom)
    return Overlay(features, truncated)


def data_extent(principal: Principal, *, session: Session) -> list[float] | None:
    """Where the page should open: the caller's jurisdictions, else the imagery, else None."""
    extent = visible_extent(principal, session=session)
    if extent is not None and extent.as_tuple() != (0.0, 0.0, 0.0, 0.0):
        return list(extent.as_tuple())
    footprints = [f["geometry"] for f in scene_features(principal, session=session).features]
    if not footprints:
        return None
    shapes = [shape(g) for g in footprints]
    return list(shapely.union_all(shapes).bounds)


def caller_summary(principal: Principal) -> dict[str, Any]:
    """Who the page is signed in as and which status moves that role may ask for."""
    targets = ROLE_TARGETS.get(principal.role, frozenset())
    moves = {
        str(current): sorted(str(t) for t in allowed & targets)
        for current, allowed in TRANSITIONS.items()
    }
    return {
        "name": principal.name,
        "role": str(principal.role),
        "may_assign": principal.role in ASSIGNING_ROLES,
        "moves": moves,
    }
