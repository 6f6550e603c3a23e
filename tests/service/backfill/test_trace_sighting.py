"""Looks "the same as the violation" do not carry the trace past the last look before the
case's first sighting: the detector compared that look with the sighting and found the change
only then, while a crop that merely looks alike may be a bare field of another season. Unless
that look stood out from the field around it as the violation does: then it held the
violation already."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.backfill.compute import AROUND_PX, TraceTask, trace_cases
from tests.service.backfill.conftest import World
from tests.service.backfill.test_trace_growth import (
    SIDE_PX,
    _bare_soil_around,
    _clear_corner,
    _dates,
)

BARE = -2  # a stage: no stack, the whole view bare soil of the stack's colour


@pytest.mark.parametrize(
    ("stages", "sighted", "last_unchanged", "first_visible"),
    [
        # Sighted on date 2: the look before it (date 1) may still hold the violation, one
        # look the detector missed, and date 0 shows the place without it.
        ([0, SIDE_PX, SIDE_PX, SIDE_PX, SIDE_PX], 2, 0, 1),
        # Sighted on date 4: dates 1 to 3 show bare soil of the stack's colour all around
        # and look the same as it, but the detector compared date 3 with date 4 and found
        # the change only then.
        ([0, BARE, BARE, BARE, SIDE_PX], 4, 3, 4),
        # Sighted on date 4 only, though the whole stack stood out from its field on dates 2
        # and 3, after a faint first stage on date 1 (two rows, too little to stand out):
        # the look before the sighting already held it, so the sighting does not hold the
        # onset there. (A longer run is held: see test_trace_standing.py.)
        ([0, 2, SIDE_PX, SIDE_PX, SIDE_PX], 4, 1, 2),
    ],
)
def test_the_first_sighting_bounds_how_far_back_alike_looks_date_a_case(
    world: World,
    tmp_path: Path,
    stages: list[int],
    sighted: int,
    last_unchanged: int,
    first_visible: int,
) -> None:
    dates, outline = _dates(world, tmp_path, [max(rows, 0) for rows in stages])
    corner = _clear_corner(Path(dates[0].path))
    for dated, rows in zip(dates, stages, strict=True):
        if rows == BARE:
            _bare_soil_around(Path(dated.path), corner, AROUND_PX + 8)

    [result] = trace_cases(dates, [TraceTask(1, outline, reference_at=dates[sighted].acquired_at)])

    # Bare soil all around blends the place into its field: like the stack, but no sign of it.
    # Two rows of it are not like the whole stack.
    states = {BARE: "blends_in", SIDE_PX: "same", 2: "differs"}
    assert [look.state for look in result.looks[1:sighted]] == [
        states[rows] for rows in stages[1:sighted]
    ]
    assert result.onset_after is not None and result.onset_before is not None
    assert result.onset_after.acquired_at == dates[last_unchanged].acquired_at
    assert result.onset_before.acquired_at == dates[first_visible].acquired_at
    assert result.onset_likeliest is not None
    assert result.onset_likeliest.acquired_at == dates[first_visible].acquired_at
