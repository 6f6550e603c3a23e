"""A violation that grew by steps each under the detector's mapping unit is dated from its
first stage by the run of looks where the outline stands out from the field around it, each
look judged on its own date: no comparison of two dates can see such a step."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from shapely.geometry.base import BaseGeometry

from service.backfill.compute import DatedScene, TraceTask, trace_cases
from tests.service.backfill.conftest import World
from tests.service.backfill.test_trace_growth import (
    ROOF_BANDS,
    STACK_BANDS,
    _clear_corner,
    _dates,
    _fill,
    _outline_lonlat,
)

FINAL_SIDE_PX = 10  # a pile of 100 m² at the world's 1 m; the mapping unit is 50 m²
BARE, COVERED = 1, 2  # the pile's two looks: its material, or a dark sheet over it


def _paint_pile(path: Path, corner: tuple[int, int], side: int) -> None:
    """A pile `side` px square, centred in the final pile's place."""
    start_row = corner[0] + (FINAL_SIDE_PX - side) // 2
    start_col = corner[1] + (FINAL_SIDE_PX - side) // 2
    window = (slice(start_row, start_row + side), slice(start_col, start_col + side))
    _fill(path, window, STACK_BANDS)


def _pile_dates(
    world: World, folder: Path, sides: list[int]
) -> tuple[list[DatedScene], BaseGeometry]:
    """The dates of `_dates` with the pile's side on each (0: none), and the final pile's
    outline."""
    dates, _ = _dates(world, folder, sides, paint=_paint_pile)
    corner = _clear_corner(Path(dates[0].path))
    return dates, _outline_lonlat(Path(dates[0].path), corner, FINAL_SIDE_PX)


def _covered_pile_dates(
    world: World, folder: Path, looks: list[int]
) -> tuple[list[DatedScene], BaseGeometry]:
    """The dates of `_dates` with the whole pile on each, BARE or COVERED, and its outline."""

    def paint(path: Path, corner: tuple[int, int], look: int) -> None:
        window = (
            slice(corner[0], corner[0] + FINAL_SIDE_PX),
            slice(corner[1], corner[1] + FINAL_SIDE_PX),
        )
        _fill(path, window, STACK_BANDS if look == BARE else ROOF_BANDS)

    dates, _ = _dates(world, folder, looks, paint=paint)
    corner = _clear_corner(Path(dates[0].path))
    return dates, _outline_lonlat(Path(dates[0].path), corner, FINAL_SIDE_PX)


def test_a_pile_grown_by_steps_under_the_mapping_unit_is_dated_from_its_first_stage(
    world: World, tmp_path: Path
) -> None:
    # 49 m² on date 2, 64 on 3, 100 on 4, when it is sighted: every step adds less than the
    # 50 m² mapping unit, the first stage included, but the pile stands out from the field
    # on each of those dates and on date 1 nothing does.
    dates, outline = _pile_dates(world, tmp_path, [0, 0, 7, 8, FINAL_SIDE_PX, FINAL_SIDE_PX])

    [result] = trace_cases(dates, [TraceTask(1, outline, dates[4].acquired_at)])

    assert result.onset_after is not None and result.onset_before is not None
    assert result.onset_after.acquired_at == dates[1].acquired_at
    assert result.onset_before.acquired_at == dates[2].acquired_at
    assert result.onset_likeliest is not None
    assert result.onset_likeliest.acquired_at == dates[2].acquired_at


def test_a_run_standing_out_longer_than_a_late_sighting_leaves_the_bracket(
    world: World, tmp_path: Path
) -> None:
    # The pile stands out on the four looks before its sighting on date 5. The detector
    # compares every date, so it would have sighted a pile standing that long; a run this
    # long is more likely something of the place itself (a strip of another crop, say) and
    # leaves the bracket the comparisons give: bound at the look before the sighting.
    dates, outline = _pile_dates(world, tmp_path, [0] + [FINAL_SIDE_PX] * 5)

    [result] = trace_cases(dates, [TraceTask(1, outline, dates[5].acquired_at)])

    assert result.onset_after is not None and result.onset_before is not None
    assert result.onset_after.acquired_at == dates[4].acquired_at
    assert result.onset_before.acquired_at == dates[5].acquired_at


@pytest.mark.parametrize(
    ("quiet", "standing", "dated_from"),
    [
        # Six standing-out looks before the sighting, after four on which the place blended
        # into its field, more than a run the rule trusts: no strip of another crop is like
        # its field that long and then unlike it on every look. The place changed when the
        # run began, however long the detector took to sight it.
        (4, 7, 4),
        # Three quiet looks are no more than a run the rule trusts: the longer run says
        # nothing, and the bracket stays at the look before the sighting.
        (3, 5, 7),
    ],
)
def test_a_long_run_standing_out_dates_the_case_where_it_began_only_after_a_quiet_one(
    world: World, tmp_path: Path, quiet: int, standing: int, dated_from: int
) -> None:
    dates, outline = _pile_dates(world, tmp_path, [0] * quiet + [FINAL_SIDE_PX] * standing)

    [result] = trace_cases(dates, [TraceTask(1, outline, dates[-1].acquired_at)])

    assert result.onset_after is not None and result.onset_before is not None
    assert result.onset_after.acquired_at == dates[dated_from - 1].acquired_at
    assert result.onset_before.acquired_at == dates[dated_from].acquired_at


@pytest.mark.parametrize(
    ("looks", "sighted"),
    [
        # Sighted on date 3 (say, when its cover changed): it stands out from the field on
        # every look and every look is like it.
        (5, 3),
        # Sighted only on date 6: a run longer than the standing rule trusts, but no step
        # from one look to the next changed the place.
        (7, 6),
    ],
)
def test_a_pile_standing_from_the_first_look_is_dated_on_it(
    world: World, tmp_path: Path, looks: int, sighted: int
) -> None:
    # The pile is on every date. No earlier look can show it coming, so no comparison could
    # have sighted it sooner: it stood on the first look, and the likeliest onset is that look.
    dates, outline = _pile_dates(world, tmp_path, [FINAL_SIDE_PX] * looks)

    [result] = trace_cases(dates, [TraceTask(1, outline, dates[sighted].acquired_at)])

    assert result.onset_after is None
    assert result.onset_before is not None and result.onset_likeliest is not None
    assert result.onset_before.acquired_at == dates[0].acquired_at
    assert result.onset_likeliest.acquired_at == dates[0].acquired_at


def test_a_run_from_the_first_look_leaves_the_bracket_when_a_comparison_disagrees(
    world: World, tmp_path: Path
) -> None:
    # A smaller pile on date 0 stands out as the full one does on dates 1–3, but compared
    # with the pile sighted on date 3 it is unlike it: the comparisons do not say the pile
    # stood from the first look, so the run alone does not date it there.
    dates, outline = _pile_dates(world, tmp_path, [5] + [FINAL_SIDE_PX] * 4)

    [result] = trace_cases(dates, [TraceTask(1, outline, dates[3].acquired_at)])

    assert result.onset_before is not None
    assert result.onset_before.acquired_at != dates[0].acquired_at


@pytest.mark.parametrize(
    ("a_year_on", "dated_on_first_look"),
    [
        # A year after the first look, at the same time of year, the pile is covered again:
        # the comparisons find the pile itself unlike its sighting then, so their finding
        # the first look unlike it is the season's doing, and the pile standing out from the
        # first look dates it there.
        (COVERED, True),
        # Bare a year on: at that time of year the comparisons do know the pile, and the
        # first look unlike it is a witness against its standing there.
        (BARE, False),
    ],
)
def test_a_run_from_the_first_look_against_a_comparison_unlike_it_for_the_season(
    world: World, tmp_path: Path, a_year_on: int, dated_on_first_look: bool
) -> None:
    dates, outline = _covered_pile_dates(world, tmp_path, [COVERED, BARE, a_year_on])
    first = dates[0].acquired_at
    days = [0, 30, 365]
    dates = [
        replace(d, acquired_at=first + timedelta(days=n)) for d, n in zip(dates, days, strict=True)
    ]

    [result] = trace_cases(dates, [TraceTask(1, outline, dates[1].acquired_at)])

    assert result.looks[0].state == "differs"
    assert result.onset_before is not None
    assert (result.onset_before.acquired_at == dates[0].acquired_at) is dated_on_first_look
