"""Coverage: when each farmland parcel was last observed, per kind of sensor.

An empty map means "no violation" only where the parcel was actually seen recently: a healthy
camera snapshot or a tile covering it. Unobserved parcels are told apart from clean ones.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import shapely
from shapely.geometry.base import BaseGeometry
from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from models.base import table_of
from models.detection import DetectionSource
from models.layer import FarmlandObservation, Layer, LayerFeature, LayerKind, LayerVersion
from models.scene import Scene
from service.screening.screen import FARMLAND_KINDS
from service.spatial import iter_intersecting, polygonal_part

# Views whose farmland is kept in memory: a camera preset asks for its own view with every
# snapshot, and the answer only changes when a farmland layer gets a new version.
CACHED_VIEWS = 256


@dataclass(frozen=True)
class FarmlandView:
    """The farmland parcels that touch a view, and the farmland inside it (lon/lat)."""

    feature_ids: tuple[int, ...]
    geometry: BaseGeometry | None  # None when no farmland layer is loaded or none touches it
    # The cultivated-land parcels inside the view, one geometry each: the units farm work acts
    # on, for the camera detector to tell a parcel turning over from a violation on part of one.
    parcels: tuple[BaseGeometry, ...] = ()


# Keyed by the view's WKB and the (id, import time, kind) of each farmland version in force.
_ViewKey = tuple[bytes, tuple[tuple[int, datetime, LayerKind], ...]]
_views: OrderedDict[_ViewKey, FarmlandView] = OrderedDict()
_views_lock = threading.Lock()


def farmland_features(
    geom: BaseGeometry,
    *,
    at: datetime,
    session: Session,
    kinds: frozenset[LayerKind] = FARMLAND_KINDS,
) -> list[LayerFeature]:
    """Parcels of the `kinds` layers (default: all farmland) valid at `at` that touch `geom`."""
    versions = _versions_valid_at(session, at, kinds)
    return _features_of([version for version, _, _ in versions], geom, session=session)


def farmland_view(geom: BaseGeometry, *, at: datetime, session: Session) -> FarmlandView:
    """The farmland touching `geom` at `at`, computed once per view and farmland versions.

    The layer versions in force are looked up every time (one query), so a new version is
    seen at once; a version's features never change after its import, and the version's
    import time in the key keeps apart databases that reuse ids (tests roll back).
    """
    versions = _versions_valid_at(session, at, FARMLAND_KINDS)
    if not versions:
        return FarmlandView((), None)
    key: _ViewKey = (shapely.to_wkb(geom), versions)
    with _views_lock:
        view = _views.get(key)
        if view is not None:
            _views.move_to_end(key)
            return view
    features = _features_of([version for version, _, _ in versions], geom, session=session)
    cultivated = {version for version, _, kind in versions if kind == LayerKind.cultivated_land}
    view = FarmlandView(
        tuple(feature.id for feature in features),
        shapely.union_all([f.geom for f in features]).intersection(geom) if features else None,
        _parcels_within(features, geom, cultivated),
    )
    with _views_lock:
        _views[key] = view
        while len(_views) > CACHED_VIEWS:
            _views.popitem(last=False)
    return view


def _parcels_within(
    features: Sequence[LayerFeature], geom: BaseGeometry, cultivated: set[int]
) -> tuple[BaseGeometry, ...]:
    """The parts inside `geom` of those `features` that belong to the `cultivated` versions."""
    # A parcel touching the view's edge meets it in lines or points too; only areas count.
    inside = [
        polygonal_part(feature.geom.intersection(geom))
        for feature in features
        if feature.layer_version_id in cultivated
    ]
    return tuple(part for part in inside if part is not None)


def _versions_valid_at(
    session: Session, at: datetime, kinds: frozenset[LayerKind]
) -> tuple[tuple[int, datetime, LayerKind], ...]:
    """(id, import time, kind) of the versions of the `kinds` layers in force at `at`, by id."""
    rows = session.execute(_VERSIONS_VALID, {"kinds": sorted(kinds), "at": at})
    return tuple((version_id, imported_at, kind) for version_id, imported_at, kind in rows)


# A camera job asks with every snapshot: built once, as building it cost more than running it.
_VERSIONS_VALID = (
    select(LayerVersion.id, LayerVersion.imported_at, Layer.kind)
    .join(Layer, Layer.id == LayerVersion.layer_id)
    .where(
        Layer.kind.in_(bindparam("kinds", expanding=True)),
        LayerVersion.valid_from <= bindparam("at"),
        or_(LayerVersion.valid_to.is_(None), LayerVersion.valid_to > bindparam("at")),
    )
    .order_by(LayerVersion.id)
)


def _features_of(
    versions: list[int], geom: BaseGeometry, *, session: Session
) -> list[LayerFeature]:
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
    """Mark the farmland parcels `feature_ids` as seen by `scene`; returns how many.

    One UPDATE moves the parcels last seen earlier; parcels already seen at that time or
    later are not written again, and parcels never seen by `source` get their row. That insert
    is an upsert: two workers seeing a parcel for the first time at once would otherwise both
    insert its row, and the second job would fail and run again.
    """
    if not feature_ids:
        return 0
    ids = sorted(set(feature_ids))
    moved = session.execute(
        _SEEN_LATER,
        {"seen_by": str(source), "ids": ids, "seen_at": scene.acquired_at, "seen_in": scene.id},
    )
    if moved.rowcount == len(ids):  # type: ignore[attr-defined]
        return len(feature_ids)  # every parcel had its row: the usual case, a camera's next look
    existing = set(
        session.scalars(
            select(FarmlandObservation.layer_feature_id).where(
                FarmlandObservation.source == str(source),
                FarmlandObservation.layer_feature_id.in_(ids),
            )
        )
    )
    missing = [feature_id for feature_id in ids if feature_id not in existing]
    if missing:
        _insert_observations(missing, source=source, scene=scene, session=session)
    return len(feature_ids)


# Every camera job runs it: built once, as building it cost more than executing it. On the
# table, not the mapped class, so rows loaded in the session are left as they were: matching
# the update against them cost more than the update itself.
_observations = table_of(FarmlandObservation)
_SEEN_LATER = (
    update(_observations)
    .where(
        _observations.c.source == bindparam("seen_by"),
        _observations.c.layer_feature_id.in_(bindparam("ids", expanding=True)),
        _observations.c.last_observed_at < bindparam("seen_at"),
    )
    .values(last_observed_at=bindparam("seen_at"), scene_id=bindparam("seen_in"))
)


def _insert_observations(
    feature_ids: list[int], *, source: DetectionSource, scene: Scene, session: Session
) -> None:
    """Rows for parcels first seen now; a row another worker has just written for one of them
    is updated instead where this look is later."""
    rows = [
        {
            "layer_feature_id": feature_id,
            "source": str(source),
            "last_observed_at": scene.acquired_at,
            "scene_id": scene.id,
        }
        for feature_id in feature_ids
    ]
    dialect = session.get_bind().dialect.name
    insert = (postgresql_insert if dialect == "postgresql" else sqlite_insert)(FarmlandObservation)
    statement = insert.values(rows)
    newer = statement.excluded
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[FarmlandObservation.layer_feature_id, FarmlandObservation.source],
            set_={"last_observed_at": newer.last_observed_at, "scene_id": newer.scene_id},
            where=FarmlandObservation.last_observed_at < newer.last_observed_at,
        )
    )


def last_observed(feature_id: int, *, session: Session) -> dict[str, datetime]:
    """When parcel `feature_id` was last seen, per source ("camera", "remote_sensing")."""
    rows = session.scalars(
        select(FarmlandObservation).where(FarmlandObservation.layer_feature_id == feature_id)
    )
    return {row.source: row.last_observed_at for row in rows}
