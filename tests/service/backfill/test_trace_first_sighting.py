"""A case that grew after it was first sighted is also traced over the outline of that
sighting: over the grown outline an early stage is too small a share to bracket its onset."""

from __future__ import annotations

from pathlib import Path

import shapely
from shapely import affinity
from sqlalchemy.orm import Session

from models.layer import LayerKind
from service.backfill.compute import TraceTask, trace_cases
from service.backfill.run import first_sighting
from tests.service.backfill.conftest import World
from tests.service.backfill.test_trace_growth import (
    SIDE_PX,
    _clear_corner,
    _dates,
    _outline_lonlat,
    _paint_stack,
)
from tests.service.backfill.test_trace_parts import _place
from tests.service.screening.places import FARMLAND, PLOT, add_layer_version, at

FIRST_ROWS = 6  # the stage first sighted: under a third of the stack's final square


def test_a_case_grown_since_its_first_sighting_is_bracketed_by_that_sighting(
    world: World, tmp_path: Path
) -> None:
    # The stack's first stage appears on date 2 and is sighted then; it covers all of the
    # square by date 4, and the case's outline with it.
    dates, outline = _dates(world, tmp_path, [0, 0, FIRST_ROWS, FIRST_ROWS, SIDE_PX])
    first = Path(dates[0].path)
    sighting = _outline_lonlat(first, _clear_corner(first), rows=FIRST_ROWS)
    sighted_at = dates[2].acquired_at

    [grown] = trace_cases(dates, [TraceTask(1, outline, reference_at=sighted_at)])
    [refined] = trace_cases(
        dates, [TraceTask(1, outline, reference_at=sighted_at, sighting=sighting)]
    )

    # Over the grown outline the dates before the onset are no clearly unchanged look.
    assert grown.onset_after is None
    assert refined.onset_after is not None and refined.onset_before is not None
    assert refined.onset_after.acquired_at == dates[1].acquired_at
    assert refined.onset_before.acquired_at == sighted_at
    assert refined.onset_likeliest is not None
    assert refined.onset_likeliest.acquired_at == sighted_at
    # The looks stay those of the case's own outline.
    assert refined.looks == grown.looks


def test_a_sighting_bracket_outside_the_cases_is_not_taken(world: World, tmp_path: Path) -> None:
    # The stack appears whole on date 2. The "sighting" lies on the field beside it, which
    # changed a date earlier: its trace dates that, before the case's last unchanged look,
    # so the case keeps its own bracket.
    dates, outline = _dates(world, tmp_path, [0, 0, SIDE_PX, SIDE_PX])
    corner = _clear_corner(Path(dates[0].path))
    beside = (corner[0] + 2 * SIDE_PX, corner[1])
    for dated in dates[1:]:
        _paint_stack(Path(dated.path), beside, FIRST_ROWS)
    sighting = _outline_lonlat(Path(dates[0].path), beside, rows=FIRST_ROWS)
    sighted_at = dates[2].acquired_at

    [own] = trace_cases(dates, [TraceTask(1, outline, reference_at=sighted_at)])
    [alone] = trace_cases(dates, [TraceTask(1, sighting, reference_at=sighted_at)])
    [kept] = trace_cases(dates, [TraceTask(1, outline, reference_at=sighted_at, sighting=sighting)])

    assert own.onset_after is not None and own.onset_after.acquired_at == dates[1].acquired_at
    assert alone.onset_likeliest is not None
    assert alone.onset_likeliest.acquired_at == dates[1].acquired_at
    assert (kept.onset_after, kept.onset_before, kept.onset_likeliest) == (
        own.onset_after,
        own.onset_before,
        own.onset_likeliest,
    )


def test_the_first_sighting_is_the_outline_of_the_cases_earliest_detections(
    db_session: Session,
) -> None:
    add_layer_version(db_session, LayerKind.permanent_basic_farmland, [FARMLAND])
    case = _place(db_session, PLOT, at(2024, 6, 1))
    assert first_sighting(case, session=db_session) is None  # nothing grew it yet

    grown = affinity.scale(PLOT, 1.5, 1.5)
    assert _place(db_session, grown, at(2024, 7, 1)) is case

    sighting = first_sighting(case, session=db_session)
    assert sighting is not None
    assert shapely.equals_exact(sighting, PLOT, tolerance=1e-9)
