"""A case that grew in places apart, begun at different times, is traced place by place: a
place sighted after its case keeps the onset of its own first stage, not the case's."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import shapely
from shapely import affinity
from shapely.geometry import box
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import Case, CaseEvent
from models.layer import LayerKind
from service.backfill.compute import (
    DateLook,
    PartOnset,
    TracePart,
    TraceResult,
    TraceTask,
    trace_cases,
)
from service.backfill.run import case_parts
from service.backfill.write import write_trace
from service.cases.queries import case_reads
from service.cases.workflow import open_or_update_case
from service.screening.screen import screen_detection
from tests.service.backfill.conftest import World
from tests.service.backfill.test_trace_growth import (
    SIDE_PX,
    _clear_corner,
    _dates,
    _outline_lonlat,
    _paint_stack,
)
from tests.service.screening.places import (
    FARMLAND,
    PLOT,
    SETTINGS,
    add_detection,
    add_layer_version,
    at,
)

BESIDE_PX = 2 * SIDE_PX  # the second place's offset: 20 px of field between the two
FIRST, SECOND = 1, 2  # the places a date shows, as bits of its stage


def _paint_places(path: Path, corner: tuple[int, int], places: int) -> None:
    row, col = corner
    if places & FIRST:
        _paint_stack(path, corner, SIDE_PX)
    if places & SECOND:
        _paint_stack(path, (row, col + BESIDE_PX), SIDE_PX)


def test_a_place_sighted_after_its_case_is_dated_from_its_own_first_stage(
    world: World, tmp_path: Path
) -> None:
    # The first stack stands from date 1; the second, 20 m beside it, from date 4.
    stages = [0, FIRST, FIRST, FIRST, FIRST | SECOND, FIRST | SECOND]
    dates, first = _dates(world, tmp_path, stages, paint=_paint_places)
    row, col = _clear_corner(Path(dates[0].path))
    second = _outline_lonlat(Path(dates[0].path), (row, col + BESIDE_PX))
    parts = (
        TracePart(first, reference_at=dates[1].acquired_at),
        TracePart(second, reference_at=dates[4].acquired_at),
    )
    task = TraceTask(1, shapely.union(first, second), dates[1].acquired_at, parts=parts)

    [result] = trace_cases(dates, [task])

    assert [p.outline for p in result.parts] == [first, second]
    with_case, beside = result.parts
    # The place the case was sighted on keeps the case's own bracket.
    bracket = (result.onset_after, result.onset_before, result.onset_likeliest)
    assert (with_case.onset_after, with_case.onset_before, with_case.onset_likeliest) == bracket
    # Over the case's outline it would take the case's bracket, which begins before date 4.
    assert beside.onset_after is not None and beside.onset_before is not None
    assert beside.onset_after.acquired_at == dates[3].acquired_at
    assert beside.onset_before.acquired_at == dates[4].acquired_at
    assert result.onset_before is not None
    assert result.onset_before.acquired_at < dates[4].acquired_at


# About 10 m east of PLOT, not touching it: within the 20 m merge buffer.
BESIDE_PLOT = box(120.1046, 30.1040, 120.1050, 30.1044)


def _place(session: Session, geom: shapely.Polygon, when: datetime) -> Case:
    detection = add_detection(session, geom, when)
    result = screen_detection(detection, session=session, settings=SETTINGS)
    case = open_or_update_case(detection, result, session=session, settings=SETTINGS, now=when)
    assert case is not None
    return case


def _look(scene_id: int, when: datetime) -> DateLook:
    return DateLook(scene_id, when, "same", 0.0)


def test_a_case_grown_in_two_places_records_the_onset_of_each(db_session: Session) -> None:
    add_layer_version(db_session, LayerKind.permanent_basic_farmland, [FARMLAND])
    case = _place(db_session, PLOT, at(2024, 6, 1))
    assert _place(db_session, BESIDE_PLOT, at(2024, 6, 20)) is case
    # The first place grows: it stays one place, first seen on its first detection.
    assert _place(db_session, affinity.scale(PLOT, 1.2, 1.0), at(2024, 7, 1)) is case

    parts = case_parts(case, session=db_session)

    assert [p.reference_at for p in parts] == [at(2024, 6, 1), at(2024, 6, 20)]
    assert parts[1].outline.equals(BESIDE_PLOT)
    assert parts[0].outline.contains(PLOT) and not parts[0].outline.intersects(BESIDE_PLOT)

    traced = TraceResult(
        case.id,
        looks=(),
        onset_after=_look(1, datetime(2024, 4, 1, tzinfo=UTC)),
        onset_before=_look(2, datetime(2024, 5, 1, tzinfo=UTC)),
        onset_chips=None,
        onset_likeliest=_look(2, datetime(2024, 5, 1, tzinfo=UTC)),
        parts=tuple(
            PartOnset(p.outline, p.reference_at, _look(1, after), _look(2, before), None)
            for p, (after, before) in zip(
                parts,
                [(at(2024, 4, 1), at(2024, 5, 1)), (at(2024, 5, 1), at(2024, 6, 1))],
                strict=True,
            )
        ),
    )
    assert write_trace(traced, session=db_session, settings=SETTINGS)
    db_session.flush()
    events = db_session.scalar(select(func.count()).where(CaseEvent.case_id == case.id))

    [read] = case_reads([case], session=db_session)
    assert [(p.first_seen, p.last_unchanged, p.first_visible) for p in read.onset_parts] == [
        (at(2024, 6, 1), at(2024, 4, 1), at(2024, 5, 1)),
        (at(2024, 6, 20), at(2024, 5, 1), at(2024, 6, 1)),
    ]
    assert shapely.geometry.shape(read.onset_parts[1].outline).equals(BESIDE_PLOT)

    # Read back from the database, the same trace changes nothing and adds no event.
    db_session.expire_all()
    assert not write_trace(traced, session=db_session, settings=SETTINGS)
    db_session.flush()
    assert db_session.scalar(select(func.count()).where(CaseEvent.case_id == case.id)) == events


def test_a_case_of_one_place_has_no_parts(db_session: Session) -> None:
    add_layer_version(db_session, LayerKind.permanent_basic_farmland, [FARMLAND])
    case = _place(db_session, PLOT, at(2024, 6, 1))
    _place(db_session, affinity.translate(PLOT, 0.00002), at(2024, 6, 15))

    assert case_parts(case, session=db_session) == ()


def test_the_trace_command_prints_each_place_under_its_case() -> None:
    from scripts.backfill import _trace_line

    def look(day: int) -> DateLook:
        return _look(day, datetime(2024, 1, day, tzinfo=UTC))

    parts = (
        PartOnset(PLOT, datetime(2024, 1, 3, tzinfo=UTC), look(1), look(2), look(2)),
        PartOnset(BESIDE_PLOT, datetime(2024, 1, 9, tzinfo=UTC), None, look(8), look(8)),
    )
    result = TraceResult(7, (), look(1), look(2), None, look(2), parts=parts)

    assert _trace_line(result).splitlines() == [
        "case 7: last clearly unchanged 2024-01-01, first visible 2024-01-02, "
        "likeliest onset 2024-01-02",
        "  place 1 (first seen 2024-01-03): last clearly unchanged 2024-01-01, "
        "first visible 2024-01-02, likeliest onset 2024-01-02",
        "  place 2 (first seen 2024-01-09): last clearly unchanged before the imagery, "
        "first visible 2024-01-08, likeliest onset 2024-01-08",
    ]
