"""Coverage: when each farmland parcel was last observed, per kind of sensor.

An empty map means "no violation" only where the parcel was actually seen recently: a healthy
camera snapshot or a tile covering it. Unobserved parcels are told apart from clean ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import shapely
from shapely.geometry.base import BaseGeometry
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.detection import DetectionSource
from models.layer import FarmlandObservation, Layer, LayerFeature, LayerKind
from models.scene import Scene
from service.layers.importer import layer_versions_valid_at
from service.screening.screen import FARMLAND_KINDS
from service.spatial import iter_intersecting


def farmland_features(
    geom: BaseGeometry,
    *,
    at: datetime,
    session: Session,
    kinds: frozenset[LayerKind] = FARMLAND_KINDS,
) -> list[LayerFeature]:
    """Parcels of the `kinds` layers (default: all farmland) valid at `at` that touch `geom`."""
    versions = [
        version.id
        for version in layer_versions_valid_at(session, at)
        if _kind(session, version.layer_id) in kinds
    ]
    if not versions:
        return []
    statement = (
        select(LayerFeature)
        .where(LayerFeature.layer_version_id.in_(versions))
        .order_by(LayerFeature.id)
    )
    return [
        feature
        for feature in iter_intersecting(session, statement, LayerFeature, geom)
        if feature.geom.intersects(geom)
    ]


def _kind(session: Session, layer_id: int) -> str:
    layer = session.get(Layer, layer_id)
    return str(layer.kind) if layer is not None else ""


def farmland_in(geom: BaseGeometry, *, at: datetime, session: Session) -> BaseGeometry | None:
    """The farmland inside `geom` (lon/lat), or None when no farmland layer is loaded."""
    features = farmland_features(geom, at=at, session=session)
    if not features:
        return None
    return shapely.union_all([f.geom for f in features]).intersection(geom)


def record_observation(
    geom: BaseGeometry, *, source: DetectionSource, scene: Scene, session: Session
) -> int:
    """Mark every farmland parcel touching `geom` as seen by `scene`; returns how many."""
    features = farmland_features(geom, at=scene.acquired_at, session=session)
    return record_feature_observations(
        [f.id for f in features], source=source, scene=scene, session=session
    )


def record_feature_observations(
    feature_ids: Sequence[int], *, source: DetectionSource, scene: Scene, session: Session
) -> int:
    """Mark the farmland parcels `feature_ids` as seen by `scene`; returns how many."""
    if not feature_ids:
        return 0
    existing = {
        row.layer_feature_id: row
        for row in session.scalars(
            select(FarmlandObservation).where(
                FarmlandObservation.source == str(source),
                FarmlandObservation.layer_feature_id.in_(feature_ids),
            )
        )
    }
    for feature_id in feature_ids:
        row = existing.get(feature_id)
        if row is None:
            session.add(
                FarmlandObservation(
                    layer_feature_id=feature_id,
                    source=str(source),
                    last_observed_at=scene.acquired_at,
                    scene_id=scene.id,
                )
            )
        elif row.last_observed_at < scene.acquired_at:
            row.last_observed_at, row.scene_id = scene.acquired_at, scene.id
    session.flush()
    return len(feature_ids)


def last_observed(feature_id: int, *, session: Session) -> dict[str, datetime]:
    """When parcel `feature_id` was last seen, per source ("camera", "remote_sensing")."""
    rows = session.scalars(
        select(FarmlandObservation).where(FarmlandObservation.layer_feature_id == feature_id)
    )
    return {row.source: row.last_observed_at for row in rows}
