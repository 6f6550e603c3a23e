"""The "3+X" machine review: verdicts and layer hits on the layer versions valid at the time."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from shapely.geometry import Polygon, box
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import Case, LayerHit
from models.detection import ChangeType, Screening
from models.layer import LayerKind
from service.cases.workflow import open_or_update_case
from service.errors import InvalidInputError
from service.screening.screen import screen_detection
from service.settings import Settings
from tests.service.screening.places import (
    FARMLAND,
    OUTSIDE,
    PLOT,
    SETTINGS,
    add_detection,
    add_layer_version,
    at,
    geodesic_m2,
)

# Straddles the farmland's east edge: the western half is on farmland.
ACROSS_EDGE = box(120.1095, 30.1040, 120.1105, 30.1044)
WEST_HALF = box(120.1095, 30.1040, 120.1100, 30.1044)


def _case_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Case)) or 0


def test_detection_on_basic_farmland_is_a_suspected_violation_with_its_overlap_measured(
    db_session: Session,
) -> None:
    version = add_layer_version(db_session, LayerKind.permanent_basic_farmland, [FARMLAND])
    detection = add_detection(db_session, ACROSS_EDGE, at(2024))

    result = screen_detection(detection, session=db_session, settings=SETTINGS)

    assert result.outcome == Screening.suspected_violation
    assert detection.screening == Screening.suspected_violation
    hits = db_session.scalars(select(LayerHit).where(LayerHit.detection_id == detection.id)).all()
    assert [(h.layer_kind, h.layer_version_id) for h in hits] == [
        ("permanent_basic_farmland", version.id)
    ]
    expected_m2 = geodesic_m2(WEST_HALF)  # about 48 m × 44 m
    assert 2000 < expected_m2 < 2300
    assert hits[0].overlap_m2 == pytest.approx(expected_m2, rel=1e-3)
    assert hits[0].overlap_mu == pytest.approx(expected_m2 / 666.67, rel=1e-3)
    assert result.farmland_m2 == pytest.approx(expected_m2, rel=1e-3)


def test_x_lines_become_tags_and_the_urban_boundary_is_flagged(db_session: Session) -> None:
    add_layer_version(db_session, LayerKind.cultivated_land, [FARMLAND])
    add_layer_version(db_session, LayerKind.blue_line, [box(120.1042, 30.09, 120.1043, 30.12)])
    add_layer_version(db_session, LayerKind.urban_development_boundary, [FARMLAND])
    add_layer_version(db_session, LayerKind.purple_line, [box(120.3, 30.3, 120.31, 30.31)])
    detection = add_detection(db_session, PLOT, at(2024))

    result = screen_detection(detection, session=db_session, settings=SETTINGS)

    assert result.outcome == Screening.suspected_violation
    assert result.tags == ("blue_line",)
    assert result.in_urban_boundary
    assert result.layer_kinds == {"cultivated_land", "blue_line", "urban_development_boundary"}


def test_change_inside_an_approved_parcel_is_covered_and_opens_no_case(
    db_session: Session,
) -> None:
    add_layer_version(db_session, LayerKind.permanent_basic_farmland, [FARMLAND])
    add_layer_version(
        db_session, LayerKind.approved_construction, [box(120.1035, 30.1035, 120.105, 30.105)]
    )
    detection = add_detection(db_session, PLOT, at(2024))

    result = screen_detection(detection, session=db_session, settings=SETTINGS)
    case = open_or_update_case(detection, result, session=db_session, settings=SETTINGS)

    assert result.outcome == Screening.covered_by_approval
    assert result.approval_fraction == pytest.approx(1.0)
    assert case is None and _case_count(db_session) == 0
    # The hits are kept as the record of why: farmland and the approval both.
    assert {h.layer_kind for h in result.hits} == {
        "permanent_basic_farmland",
        "approved_construction",
    }


def test_an_approval_covering_only_part_of_the_change_does_not_cover_it(
    db_session: Session,
) -> None:
    add_layer_version(db_session, LayerKind.permanent_basic_farmland, [FARMLAND])
    # A facility-agriculture parcel over the western half of the plot only.
    add_layer_version(
        db_session, LayerKind.facility_agriculture, [box(120.1035, 30.1035, 120.10425, 30.105)]
    )
    detection = add_detection(db_session, PLOT, at(2024))

    result = screen_detection(detection, session=db_session, settings=SETTINGS)

    assert result.approval_fraction == pytest.approx(0.5, abs=0.01)
    assert result.outcome == Screening.suspected_violation


def test_change_outside_all_farmland_opens_no_case(db_session: Session) -> None:
    add_layer_version(db_session, LayerKind.permanent_basic_farmland, [FARMLAND])
    add_layer_version(
        db_session, LayerKind.urban_development_boundary, [box(120.19, 30.19, 120.21, 30.21)]
    )
    detection = add_detection(db_session, OUTSIDE, at(2024))

    result = screen_detection(detection, session=db_session, settings=SETTINGS)
    case = open_or_update_case(detection, result, session=db_session, settings=SETTINGS)

    assert result.outcome == Screening.outside_farmland
    assert [h.layer_kind for h in result.hits] == ["urban_development_boundary"]
    assert case is None and _case_count(db_session) == 0


def test_farm_activity_is_benign_even_on_farmland(db_session: Session) -> None:
    add_layer_version(db_session, LayerKind.permanent_basic_farmland, [FARMLAND])
    detection = add_detection(
        db_session, PLOT, at(2024), change_type=ChangeType.ploughing, benign=True
    )

    result = screen_detection(detection, session=db_session, settings=SETTINGS)

    assert result.outcome == Screening.benign
    assert open_or_update_case(detection, result, session=db_session, settings=SETTINGS) is None


def test_layer_versions_are_replayed_by_the_time_of_the_detection(db_session: Session) -> None:
    add_layer_version(db_session, LayerKind.permanent_basic_farmland, [FARMLAND])
    parcel = box(120.1035, 30.1035, 120.105, 30.105)
    elsewhere = box(120.3, 30.3, 120.31, 30.31)
    add_layer_version(
        db_session,
        LayerKind.approved_construction,
        [elsewhere],
        version="2023",
        valid_from=at(2023, 1, 1),
        valid_to=at(2024, 1, 1),
    )
    v2024 = add_layer_version(
        db_session,
        LayerKind.approved_construction,
        [elsewhere, parcel],
        version="2024",
        valid_from=at(2024, 1, 1),
    )
    in_2023 = add_detection(db_session, PLOT, at(2023, 6, 1))
    in_2024 = add_detection(db_session, PLOT, at(2024, 6, 1))

    before = screen_detection(in_2023, session=db_session, settings=SETTINGS)
    after = screen_detection(in_2024, session=db_session, settings=SETTINGS)

    assert before.outcome == Screening.suspected_violation
    assert after.outcome == Screening.covered_by_approval
    approval_hits = [h for h in after.hits if h.layer_kind == "approved_construction"]
    assert [h.layer_version_id for h in approval_hits] == [v2024.id]


def test_screening_again_adds_no_hits_and_gives_the_same_verdict(db_session: Session) -> None:
    add_layer_version(db_session, LayerKind.permanent_basic_farmland, [FARMLAND])
    add_layer_version(db_session, LayerKind.cultivated_land, [FARMLAND])
    detection = add_detection(db_session, PLOT, at(2024))

    first = screen_detection(detection, session=db_session, settings=SETTINGS)
    second = screen_detection(detection, session=db_session, settings=SETTINGS)

    count = select(func.count()).select_from(LayerHit).where(LayerHit.detection_id == detection.id)
    assert db_session.scalar(count) == 2
    assert first == second


@pytest.mark.parametrize(
    ("outline", "message"),
    [
        (box(120.104, 30.104, 120.104, 30.104), "no outline"),
        (Polygon([(120.10, 30.10), (120.11, 30.11), (120.11, 30.10), (120.10, 30.105)]), "Self"),
    ],
    ids=["zero-area", "bow-tie"],
)
def test_a_detection_with_an_unusable_outline_is_refused_with_a_reason(
    db_session: Session, outline: Polygon, message: str
) -> None:
    detection = add_detection(db_session, PLOT, at(2024))
    detection.geom = outline

    with pytest.raises(InvalidInputError, match=message):
        screen_detection(detection, session=db_session, settings=SETTINGS)


@pytest.mark.parametrize(
    "bad",
    [
        {"min_overlap_fraction_for_approval": 1.5},
        {"min_overlap_fraction_for_approval": 0},
        {"case_merge_buffer_m": -5},
        {"case_merge_window_days": 0},
    ],
)
def test_screening_settings_out_of_range_are_refused_by_name(bad: dict[str, float]) -> None:
    with pytest.raises(ValidationError, match=next(iter(bad))):
        Settings(**bad)
