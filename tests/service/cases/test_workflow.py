"""One case per place: detections join, open, reopen and are suppressed as field practice needs."""

from __future__ import annotations

import math
import threading
from datetime import timedelta

import pytest
from shapely.geometry import Polygon, box
from sqlalchemy import Engine, Integer, cast, func, select
from sqlalchemy.orm import Session

from models import AlertEvent, Case, CaseEvent, Detection, LayerHit
from models.case import CaseStatus, ConfidenceLevel
from models.detection import ChangeType, DetectionSource, Screening
from models.jurisdiction import JurisdictionLevel
from models.layer import LayerKind
from service.cases.workflow import (
    DISMISSAL_REASONS,
    PLACE_CELL_DEG,
    TRANSITIONS,
    lock_places,
    open_or_update_case,
)
from service.errors import InvalidInputError, InvalidTransitionError
from service.screening.screen import SUPPRESSING_DISMISSALS, screen_detection
from tests.service.cases.moves import transition_case
from tests.service.screening.places import (
    FAR_PLOT,
    FARMLAND,
    OUTSIDE,
    PLOT,
    PLOT_EAST,
    SETTINGS,
    add_detection,
    add_jurisdiction,
    add_layer_version,
    at,
    geodesic_m2,
)

S = CaseStatus


@pytest.fixture
def farmland(db_session: Session) -> None:
    add_layer_version(db_session, LayerKind.permanent_basic_farmland, [FARMLAND])


def process(session: Session, detection: Detection) -> Case | None:
    result = screen_detection(detection, session=session, settings=SETTINGS)
    return open_or_update_case(
        detection, result, session=session, settings=SETTINGS, now=detection.observed_at
    )


def count(session: Session, model: type) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def alert_types(session: Session) -> list[str]:
    return list(session.scalars(select(AlertEvent.event_type).order_by(AlertEvent.id)))


def move(session: Session, case: Case, *path: CaseStatus, reason: str | None = None) -> None:
    for step, status in enumerate(path, start=1):
        when = case.last_seen_at + timedelta(days=step)
        transition_case(
            case,
            status,
            session=session,
            settings=SETTINGS,
            actor="inspector-7",
            role="inspector",
            reason=reason if status == S.dismissed else None,
            at=when,
        )


@pytest.mark.usefixtures("farmland")
def test_a_new_suspected_violation_opens_a_case_with_code_deadline_and_alert(
    db_session: Session,
) -> None:
    detection = add_detection(db_session, PLOT, at(2024, 6, 1))

    case = process(db_session, detection)

    assert case is not None and detection.case_id == case.id
    assert case.code == "TX-2024-000001"
    assert case.status == S.new and case.version == 1
    assert case.area_m2 == pytest.approx(geodesic_m2(PLOT), rel=1e-3)
    assert case.change_types == ["building"] and case.sources == ["remote_sensing"]
    assert case.first_seen_at == case.last_seen_at == at(2024, 6, 1)
    assert case.due_at == at(2024, 6, 1) + timedelta(hours=24)
    assert case.confidence_level == ConfidenceLevel.nominal
    assert 0 < case.priority <= 100
    assert alert_types(db_session) == ["case_created"]


@pytest.mark.usefixtures("farmland")
def test_camera_and_satellite_on_one_place_make_one_case_of_highest_confidence(
    db_session: Session,
) -> None:
    from_space = add_detection(db_session, PLOT, at(2024, 6, 1), confidence=0.6)
    from_tower = add_detection(
        db_session,
        PLOT_EAST,
        at(2024, 6, 3),
        source=DetectionSource.camera,
        change_type=ChangeType.machinery,
        confidence=0.7,
    )

    first = process(db_session, from_space)
    assert first is not None
    first_priority = first.priority
    second = process(db_session, from_tower)

    assert second is first and count(db_session, Case) == 1
    assert from_tower.case_id == first.id
    assert first.confidence_level == ConfidenceLevel.highest
    assert first.confidence > 0.7
    assert first.sources == ["camera", "remote_sensing"]
    assert first.change_types == ["building", "machinery"]
    assert first.area_m2 == pytest.approx(geodesic_m2(PLOT.union(PLOT_EAST)), rel=1e-3)
    assert first.area_m2 > geodesic_m2(PLOT) * 1.5
    assert first.last_seen_at == at(2024, 6, 3) and first.version == 2
    assert first.priority > first_priority
    assert alert_types(db_session) == ["case_created", "case_updated"]


@pytest.mark.usefixtures("farmland")
def test_repeated_sightings_by_one_sensor_raise_confidence_to_high(db_session: Session) -> None:
    case = process(db_session, add_detection(db_session, PLOT, at(2024, 6, 1)))
    process(db_session, add_detection(db_session, PLOT, at(2024, 6, 11)))

    assert case is not None and case.confidence_level == ConfidenceLevel.high
    assert count(db_session, Case) == 1


@pytest.mark.usefixtures("farmland")
def test_an_older_sighting_joining_a_traced_case_keeps_its_onset_no_later_than_it(
    db_session: Session,
) -> None:
    case = process(db_session, add_detection(db_session, PLOT, at(2024, 6, 20)))
    assert case is not None
    case.onset_after, case.onset_likeliest = at(2024, 5, 1), at(2024, 6, 10)
    process(db_session, add_detection(db_session, PLOT, at(2024, 6, 5)))

    assert case.onset_before == at(2024, 6, 5)
    assert case.onset_likeliest == at(2024, 6, 5)
    process(db_session, add_detection(db_session, PLOT, at(2024, 6, 25)))
    assert (case.onset_before, case.onset_likeliest) == (at(2024, 6, 5), at(2024, 6, 5))


@pytest.mark.usefixtures("farmland")
def test_a_detection_far_away_opens_a_second_case(db_session: Session) -> None:
    near = process(db_session, add_detection(db_session, PLOT, at(2024, 6, 1)))
    far = process(db_session, add_detection(db_session, FAR_PLOT, at(2024, 6, 2)))

    assert near is not None and far is not None and near.id != far.id
    assert far.code == "TX-2024-000002"


@pytest.mark.usefixtures("farmland")
def test_a_detection_just_beyond_the_case_but_within_the_buffer_joins_it(
    db_session: Session,
) -> None:
    # About 10 m east of PLOT: apart, but inside the 20 m merge buffer.
    nearby = box(120.1046, 30.1040, 120.1050, 30.1044)
    case = process(db_session, add_detection(db_session, PLOT, at(2024, 6, 1)))
    joined = process(db_session, add_detection(db_session, nearby, at(2024, 6, 2)))

    assert joined is case and count(db_session, Case) == 1


@pytest.mark.usefixtures("farmland")
def test_the_same_place_after_the_time_window_opens_a_new_case(db_session: Session) -> None:
    first = process(db_session, add_detection(db_session, PLOT, at(2024, 1, 1)))
    later = process(db_session, add_detection(db_session, PLOT, at(2024, 3, 1)))

    assert first is not None and later is not None and later.id != first.id


@pytest.mark.usefixtures("farmland")
def test_a_pass_compared_with_the_cases_last_look_joins_it_after_weeks_of_cloud(
    db_session: Session,
) -> None:
    first = process(db_session, add_detection(db_session, PLOT, at(2024, 1, 1)))
    # Cloud over February: the March pass is compared with the January one.
    later = process(
        db_session, add_detection(db_session, PLOT, at(2024, 3, 1), compared_with=at(2024, 1, 1))
    )
    # Compared with a look from long after the case was last seen: another case.
    apart = process(
        db_session, add_detection(db_session, PLOT, at(2024, 6, 1), compared_with=at(2024, 5, 1))
    )

    assert first is not None and later is first and first.last_seen_at == at(2024, 3, 1)
    assert apart is not None and apart.id != first.id


@pytest.mark.usefixtures("farmland")
def test_a_detection_over_a_closed_case_reopens_it_as_an_escalated_rebound(
    db_session: Session,
) -> None:
    case = process(db_session, add_detection(db_session, PLOT, at(2024, 1, 1)))
    assert case is not None
    move(
        db_session,
        case,
        S.dispatched,
        S.verifying,
        S.confirmed,
        S.rectifying,
        S.rectified,
        S.closed,
    )
    events_before = count(db_session, CaseEvent)

    rebound = add_detection(db_session, PLOT, at(2024, 9, 1), source=DetectionSource.camera)
    reopened = process(db_session, rebound)

    assert reopened is case and count(db_session, Case) == 1
    assert case.status == S.new and case.reopen_count == 1 and case.escalated
    assert "rebound" in (case.escalation_reason or "")
    assert rebound.case_id == case.id and case.last_seen_at == at(2024, 9, 1)
    assert count(db_session, CaseEvent) == events_before + 1
    last = db_session.scalars(select(CaseEvent).order_by(CaseEvent.id.desc())).first()
    assert last is not None
    assert (last.action, last.from_status, last.to_status) == ("reopened", "closed", "new")
    assert alert_types(db_session)[-1] == "case_reopened"


@pytest.mark.usefixtures("farmland")
def test_a_detection_from_before_the_rectification_does_not_reopen(db_session: Session) -> None:
    case = process(db_session, add_detection(db_session, PLOT, at(2024, 1, 1)))
    assert case is not None
    move(db_session, case, S.dispatched, S.verifying, S.confirmed, S.rectifying, S.rectified)
    # Imagery from before the rectification, processed late (a backfill).
    late = process(db_session, add_detection(db_session, PLOT, at(2024, 1, 3)))

    assert case.status == S.rectified and case.reopen_count == 0
    assert late is not None and late.id != case.id


@pytest.mark.usefixtures("farmland")
def test_a_dismissal_as_farming_suppresses_that_alarm_there_within_the_window_only(
    db_session: Session,
) -> None:
    case = process(
        db_session, add_detection(db_session, PLOT, at(2024, 1, 1), change_type=ChangeType.piling)
    )
    assert case is not None
    move(db_session, case, S.dismissed, reason="farming_activity")
    dismissed_at = at(2024, 1, 2)

    soon = add_detection(
        db_session, PLOT, dismissed_at + timedelta(days=30), change_type=ChangeType.piling
    )
    other_kind = add_detection(db_session, PLOT, dismissed_at + timedelta(days=30))
    much_later = add_detection(
        db_session, PLOT, dismissed_at + timedelta(days=120), change_type=ChangeType.piling
    )

    assert process(db_session, soon) is None
    assert soon.screening == Screening.suppressed
    assert process(db_session, other_kind) is not None  # a building is not farm work
    assert process(db_session, much_later) is not None
    assert much_later.screening == Screening.suspected_violation


@pytest.mark.usefixtures("farmland")
def test_a_dismissal_as_detector_error_suppresses_nothing(db_session: Session) -> None:
    case = process(db_session, add_detection(db_session, PLOT, at(2024, 1, 1)))
    assert case is not None
    move(db_session, case, S.dispatched, S.verifying, S.dismissed, reason="detector_error")

    again = add_detection(db_session, PLOT, at(2024, 1, 20))
    assert process(db_session, again) is not None


@pytest.mark.usefixtures("farmland")
def test_processing_a_detection_twice_changes_nothing(db_session: Session) -> None:
    detection = add_detection(db_session, PLOT, at(2024, 6, 1))
    case = process(db_session, detection)
    assert case is not None
    snapshot = (case.version, case.area_m2, case.priority, case.confidence)
    totals = [count(db_session, m) for m in (Case, CaseEvent, AlertEvent, LayerHit)]

    again = process(db_session, detection)

    assert again is case
    assert (case.version, case.area_m2, case.priority, case.confidence) == snapshot
    assert [count(db_session, m) for m in (Case, CaseEvent, AlertEvent, LayerHit)] == totals


@pytest.mark.usefixtures("farmland")
def test_a_detection_touching_two_open_cases_joins_the_oldest_and_names_the_other(
    db_session: Session,
) -> None:
    east_plot = box(120.1052, 30.1040, 120.1057, 30.1044)  # about 65 m east of PLOT
    west = process(db_session, add_detection(db_session, PLOT, at(2024, 6, 1)))
    east = process(db_session, add_detection(db_session, east_plot, at(2024, 6, 2)))
    assert west is not None and east is not None and west.id != east.id

    bridge = add_detection(db_session, box(120.1044, 30.1041, 120.1053, 30.1043), at(2024, 6, 3))
    joined = process(db_session, bridge)

    assert joined is west and count(db_session, Case) == 2
    event = db_session.scalars(select(CaseEvent).order_by(CaseEvent.id.desc())).first()
    assert event is not None and event.payload["also_overlaps_case_ids"] == [east.id]


@pytest.mark.usefixtures("farmland")
def test_the_case_belongs_to_the_smallest_jurisdiction_holding_it(db_session: Session) -> None:
    district = add_jurisdiction(
        db_session, JurisdictionLevel.district, box(120.0, 30.0, 120.2, 30.2)
    )
    township = add_jurisdiction(
        db_session, JurisdictionLevel.township, box(120.1, 30.1, 120.15, 30.15), parent=district
    )
    village = add_jurisdiction(
        db_session,
        JurisdictionLevel.village,
        box(120.103, 30.103, 120.106, 30.106),
        parent=township,
    )
    add_jurisdiction(
        db_session,
        JurisdictionLevel.village,
        box(120.107, 30.107, 120.109, 30.109),
        parent=township,
    )

    in_village = process(db_session, add_detection(db_session, PLOT, at(2024, 6, 1)))
    in_township = process(
        db_session,
        add_detection(db_session, box(120.1011, 30.1011, 120.1015, 30.1015), at(2024, 6, 1)),
    )

    assert in_village is not None and in_village.jurisdiction_id == village.id
    assert in_township is not None and in_township.jurisdiction_id == township.id


def test_every_status_has_a_row_in_the_transition_table() -> None:
    assert set(TRANSITIONS) == set(CaseStatus)
    assert S.new in TRANSITIONS[S.closed]  # a rebound reopens a closed case
    assert SUPPRESSING_DISMISSALS <= DISMISSAL_REASONS


@pytest.mark.usefixtures("farmland")
def test_a_screening_result_of_another_detection_is_refused(db_session: Session) -> None:
    screened = add_detection(db_session, PLOT, at(2024, 6, 1))
    other = add_detection(db_session, FAR_PLOT, at(2024, 6, 1))
    result = screen_detection(screened, session=db_session, settings=SETTINGS)

    with pytest.raises(InvalidInputError, match="screen this detection first"):
        open_or_update_case(other, result, session=db_session, settings=SETTINGS)
    assert count(db_session, Case) == 0


@pytest.mark.usefixtures("farmland")
def test_a_transition_the_table_forbids_is_refused_and_names_the_allowed_ones(
    db_session: Session,
) -> None:
    case = process(db_session, add_detection(db_session, PLOT, at(2024, 6, 1)))
    assert case is not None

    with pytest.raises(InvalidTransitionError, match=r"from new to closed.*dispatched"):
        move(db_session, case, S.closed)
    assert case.status == S.new and case.version == 1


def test_two_workers_placing_one_place_at_once_open_one_case(
    fresh_postgresql_engine: Engine,
) -> None:
    engine = fresh_postgresql_engine
    with Session(engine) as setup:
        add_layer_version(setup, LayerKind.permanent_basic_farmland, [FARMLAND])
        setup.commit()
    with Session(engine) as first, Session(engine) as second:
        # Two cameras' detections of overlapping plots, stored before either is placed.
        later = add_detection(second, PLOT_EAST, at(2024, 6, 1))
        second.commit()
        opened = process(first, add_detection(first, PLOT, at(2024, 6, 1)))
        assert opened is not None
        placed: list[Case | None] = []
        # The first worker has not committed: the second must wait for it, not open its own.
        worker = threading.Thread(target=lambda: placed.append(process(second, later)))
        worker.start()
        worker.join(timeout=1.0)
        assert worker.is_alive()
        first.commit()
        worker.join(timeout=30)
        second.commit()
        assert placed and placed[0] is not None and placed[0].id == opened.id
    with Session(engine) as check:
        assert count(check, Case) == 1


def test_placing_several_detections_holds_the_cells_of_all_of_them(
    fresh_postgresql_engine: Engine,
) -> None:
    engine = fresh_postgresql_engine
    with Session(engine) as holder, Session(engine) as other:
        lock_places([PLOT, OUTSIDE], session=holder, settings=SETTINGS)

        def free(geom: Polygon) -> bool:
            point = geom.representative_point()
            column, row = (math.floor(v / PLACE_CELL_DEG) for v in (point.x, point.y))
            lock = func.pg_try_advisory_xact_lock(cast(column, Integer), cast(row, Integer))
            return bool(other.scalar(select(lock)))

        assert not free(PLOT) and not free(OUTSIDE)
        assert free(box(120.3, 30.3, 120.3005, 30.3004))  # a cell neither needed
        holder.rollback()
        assert free(PLOT) and free(OUTSIDE)
