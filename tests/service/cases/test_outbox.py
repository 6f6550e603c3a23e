"""Case changes write their alerts in the same transaction, in one growing sequence."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import AlertEvent, Case, CaseEvent
from models.detection import DetectionSource
from models.layer import LayerKind
from service.cases.workflow import open_or_update_case
from service.screening.screen import screen_detection
from tests.service.screening.places import (
    FAR_PLOT,
    FARMLAND,
    PLOT,
    PLOT_EAST,
    SETTINGS,
    add_detection,
    add_layer_version,
    at,
)


@pytest.fixture(autouse=True)
def farmland(db_session: Session) -> None:
    add_layer_version(db_session, LayerKind.permanent_basic_farmland, [FARMLAND])


def process(session: Session, geom: object, day: int, source: str = "remote_sensing") -> Case:
    detection = add_detection(session, geom, at(2024, 6, day), source=DetectionSource(source))
    result = screen_detection(detection, session=session, settings=SETTINGS)
    case = open_or_update_case(detection, result, session=session, settings=SETTINGS)
    assert case is not None
    return case


def count(session: Session, model: type) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def test_alerts_follow_changes_in_order_with_growing_ids(db_session: Session) -> None:
    near = process(db_session, PLOT, 1)
    far = process(db_session, FAR_PLOT, 2)
    process(db_session, PLOT_EAST, 3, source="camera")

    alerts = list(db_session.scalars(select(AlertEvent).order_by(AlertEvent.id)))

    assert [(a.event_type, a.case_id) for a in alerts] == [
        ("case_created", near.id),
        ("case_created", far.id),
        ("case_updated", near.id),
    ]
    ids = [a.id for a in alerts]
    assert ids == sorted(set(ids))
    update = alerts[-1]
    assert update.payload["code"] == near.code
    assert update.payload["confidence_level"] == "highest"
    assert update.payload["reason"] == "outline_grown+confidence_raised"
    assert update.priority == near.priority


def test_a_rolled_back_change_leaves_no_alert_and_no_event(db_session: Session) -> None:
    kept = process(db_session, PLOT, 1)
    before = [count(db_session, m) for m in (Case, CaseEvent, AlertEvent)]

    savepoint = db_session.begin_nested()
    process(db_session, FAR_PLOT, 2)
    assert count(db_session, AlertEvent) == before[2] + 1
    savepoint.rollback()

    assert [count(db_session, m) for m in (Case, CaseEvent, AlertEvent)] == before
    assert list(db_session.scalars(select(AlertEvent.case_id))) == [kept.id]
