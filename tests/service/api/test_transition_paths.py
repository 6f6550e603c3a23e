"""Transitions on PostgreSQL go through the driver (`transitions_pg`), elsewhere through the
session (`apply_transition`): the same request must leave the same rows and get the same
answer, and the driver's errors must be answered as the session's are."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import create_engine, delete, select, text
from sqlalchemy.engine import make_url

from models import (
    AlertEvent,
    CaseEvent,
    Detection,
    Layer,
    LayerFeature,
    LayerHit,
    LayerVersion,
    Scene,
)
from models.case import CaseStatus
from models.detection import ChangeType, DetectionSource
from models.layer import LayerKind
from models.scene import SceneKind
from service.auth import authenticate
from service.cases.events import verify_chain
from service.cases.queries import case_reads
from service.cases.schemas import InspectorTransitionCreate
from service.cases.transitions import apply_transition
from service.cases.transitions_pg import APPLICATION_NAME, connection_pool
from service.db import transaction
from service.rls import apply_scope
from tests.conftest import POSTGRES_URL
from tests.service.api.conftest import PLACES, SEEN, World
from tests.service.api.test_transitions import transition
from tests.service.screening.places import add_layer_version

DISMISSAL = {"to": "dismissed", "reason_code": "duplicate", "note": "same shed as the last one"}
# Fields that name the case or the moment, not what the transition did.
OWN_FIELDS = {"id", "code", "case_id", "hash", "prev_hash", "created_at", "request_id"}


@dataclass
class Made:
    """Rows a test added beside the world's cases, to take away again (shared database)."""

    scenes: list[int] = field(default_factory=list)
    layers: list[int] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)


def add_layer_hits(world: World, case_id: int, kinds: list[LayerKind], made: Made) -> None:
    """A detection of the case over one feature of a new version of each of `kinds`."""
    with transaction(world.factory) as session:
        scene = Scene(
            kind=SceneKind.rs_tile, sha256=uuid.uuid4().hex * 2, storage_uri="file:///t.tif",
            size_bytes=1, media_type="image/tiff", acquired_at=SEEN,
        )  # fmt: skip
        session.add(scene)
        session.flush()
        made.scenes.append(scene.id)
        detection = Detection(
            scene_id=scene.id, source=DetectionSource.remote_sensing, detector_version="test-1",
            object_index=0, change_type=ChangeType.building, confidence=0.7, area_m2=10_000.0,
            observed_at=SEEN, case_id=case_id, geom=PLACES["in"],
        )  # fmt: skip
        session.add(detection)
        session.flush()
        for kind in kinds:
            existing = session.scalars(select(Layer.id).where(Layer.kind == kind)).first()
            version = add_layer_version(session, kind, [PLACES["in"]], version=uuid.uuid4().hex)
            made.versions.append(version.id)
            if existing is None:
                made.layers.append(version.layer_id)
            feature_id = session.scalars(
                select(LayerFeature.id).where(LayerFeature.layer_version_id == version.id)
            ).one()
            session.add(
                LayerHit(
                    detection_id=detection.id, layer_version_id=version.id,
                    layer_feature_id=feature_id, layer_kind=kind.value, overlap_m2=10.0,
                    overlap_mu=0.015,
                )
            )  # fmt: skip


def remove(world: World, made: Made) -> None:
    """Take the test's own rows away (the world's clean-up removes cases, not these)."""
    with transaction(world.factory) as session:
        detections = select(Detection.id).where(Detection.scene_id.in_(made.scenes))
        session.execute(delete(LayerHit).where(LayerHit.detection_id.in_(detections)))
        session.execute(delete(Detection).where(Detection.scene_id.in_(made.scenes)))
        session.execute(delete(Scene).where(Scene.id.in_(made.scenes)))
        versions = LayerFeature.layer_version_id.in_(made.versions)
        session.execute(delete(LayerFeature).where(versions))
        session.execute(delete(LayerVersion).where(LayerVersion.id.in_(made.versions)))
        session.execute(delete(Layer).where(Layer.id.in_(made.layers)))


def through_the_session(world: World, case_id: int, body: dict[str, Any]) -> dict[str, Any]:
    """The transition as `apply_transition` makes it, answered as the API would."""
    with transaction(world.factory) as session:
        principal = authenticate(world.keys["inspector_a"], session=session)
        apply_scope(session, principal)
        case = apply_transition(
            case_id, InspectorTransitionCreate.model_validate(body), session=session,
            settings=world.settings, principal=principal, version=1,
        )  # fmt: skip
        return case_reads([case], session=session)[0].model_dump(mode="json")


def last_rows(world: World, case_id: int) -> tuple[dict[str, Any], dict[str, Any]]:
    with world.factory() as session:
        event = session.scalars(
            select(CaseEvent).where(CaseEvent.case_id == case_id).order_by(CaseEvent.seq.desc())
        ).first()
        alert = session.scalars(select(AlertEvent).where(AlertEvent.case_id == case_id)).one()
        assert event is not None and verify_chain(session, case_id).ok
        return _columns(event), _columns(alert)


def _columns(row: Any) -> dict[str, Any]:
    values = {c.name: getattr(row, c.name) for c in row.__table__.c if c.name not in OWN_FIELDS}
    if isinstance(values.get("payload"), dict):
        values["payload"] = {k: v for k, v in values["payload"].items() if k != "code"}
    return values


def test_the_driver_and_the_session_leave_the_same_rows_and_answer_alike(world: World) -> None:
    twins = [world.add_case(status=CaseStatus.verifying) for _ in range(2)]
    made = Made()
    try:
        for case_id in twins:
            kinds = [LayerKind.permanent_basic_farmland, LayerKind.cultivated_land]
            add_layer_hits(world, case_id, kinds, made)
        by_api = transition(world, "inspector_a", twins[0], DISMISSAL)
        assert by_api.status_code == 200, by_api.text
        by_session = through_the_session(world, twins[1], DISMISSAL)

        assert {k: v for k, v in by_api.json().items() if k not in OWN_FIELDS} == {
            k: v for k, v in by_session.items() if k not in OWN_FIELDS
        }
        api_event, api_alert = last_rows(world, twins[0])
        session_event, session_alert = last_rows(world, twins[1])
        assert api_event == session_event
        assert api_event["payload"]["after"]["status"] == "dismissed"
        assert api_alert == session_alert
        assert api_alert["payload"]["layers"] == ["cultivated_land", "permanent_basic_farmland"]
        assert api_alert["payload"]["bbox"] == list(PLACES["in"].bounds)
    finally:
        remove(world, made)


def test_a_dropped_driver_connection_is_one_503_and_the_retry_goes_through(
    world: World,
) -> None:
    if not world.url.startswith("postgresql"):
        pytest.skip("the driver path is PostgreSQL's")
    warm_up, case_id = world.add_case(), world.add_case()
    assert transition(world, "admin", warm_up, {"to": "dispatched"}).status_code == 200
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        dropped = connection.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = :name AND usename = :role"
            ),
            {"name": APPLICATION_NAME, "role": make_url(world.url).username},
        ).scalar_one()
    admin.dispose()
    assert dropped == 1  # the pool held one connection: requests came one at a time

    refused = transition(world, "admin", case_id, {"to": "dispatched"})
    assert refused.status_code == 503, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["retry-after"] == "1"
    retried = transition(world, "admin", case_id, {"to": "dispatched"})
    assert retried.status_code == 200, retried.text  # the pool dropped the broken connection
    again = transition(world, "admin", case_id, {"to": "dispatched"})
    assert again.status_code == 412, again.text  # it went through once, at version 1
    shown = world.http.get(f"/v1/cases/{case_id}", headers=world.auth("admin")).json()
    assert shown["status"] == "dispatched" and shown["version"] == 2


def test_a_value_postgresql_refuses_is_422_and_changes_nothing(world: World) -> None:
    if not world.url.startswith("postgresql"):
        pytest.skip("SQLite stores a NUL character in text")
    case_id = world.add_case(status=CaseStatus.verifying)
    body = {"to": "dismissed", "reason_code": "duplicate", "note": "nul \x00 inside"}
    response = transition(world, "inspector_a", case_id, body)
    assert response.status_code == 422, response.text
    shown = world.http.get(f"/v1/cases/{case_id}", headers=world.auth("admin")).json()
    assert shown["status"] == "verifying" and shown["version"] == 1


def test_text_that_is_not_unicode_is_422_and_changes_nothing(world: World) -> None:
    case_id = world.add_case(status=CaseStatus.verifying)
    body = '{"to": "dismissed", "reason_code": "duplicate", "note": "half \\ud800 a pair"}'
    headers = world.auth("inspector_a") | {"If-Match": '"1"', "Content-Type": "application/json"}
    response = world.http.post(f"/v1/cases/{case_id}/transitions", content=body, headers=headers)
    assert response.status_code == 422, response.text
    shown = world.http.get(f"/v1/cases/{case_id}", headers=world.auth("admin")).json()
    assert shown["status"] == "verifying" and shown["version"] == 1


def test_no_driver_connection_within_the_pool_timeout_is_503(world: World) -> None:
    if not world.url.startswith("postgresql"):
        pytest.skip("the driver path is PostgreSQL's")
    case_id = world.add_case()
    state = world.http.app.state  # type: ignore[attr-defined]
    # A pool of connections to a port nothing listens on: no connection will come.
    nowhere = make_url(world.url).set(port=1).render_as_string(hide_password=False)
    unreachable = connection_pool(nowhere, max_size=1, timeout_s=0.5)
    kept, state.transition_pool = state.transition_pool, unreachable
    try:
        world.http.portal.call(unreachable.open)  # type: ignore[union-attr]
        refused = transition(world, "admin", case_id, {"to": "dispatched"})
    finally:
        state.transition_pool = kept
        world.http.portal.call(unreachable.close)  # type: ignore[union-attr]
    assert refused.status_code == 503, refused.text
    assert refused.headers["retry-after"] == "1"
    shown = world.http.get(f"/v1/cases/{case_id}", headers=world.auth("admin")).json()
    assert shown["status"] == "new" and shown["version"] == 1
