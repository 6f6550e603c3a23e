"""Where cloud hid the dates before the first visible one, the trace names the likeliest onset:
the later middle of the dates the change may have begun on, not the last of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.backfill.compute import AROUND_PX, TraceTask, trace_cases
from tests.service.backfill.conftest import World
from tests.service.backfill.test_trace_growth import (
    SIDE_PX,
    STACK_BANDS,
    _clear_corner,
    _cover_around,
    _dates,
    _paint_stack,
)
from tests.service.backfill.test_trace_margin import MARGIN_PX, _cloud


def _cloud_over_outline(path: Path, corner: tuple[int, int]) -> None:
    row, col = corner
    reach = MARGIN_PX + 4
    _cloud(
        path, slice(row - reach, row + SIDE_PX + reach), slice(col - reach, col + SIDE_PX + reach)
    )


@pytest.mark.parametrize(
    ("clouded", "likeliest"),
    [
        # The stack is there from date 4 on. Nothing hidden: it began on its first visible date.
        ((), 4),
        # Date 3 hidden: it began on 3 or 4, and either is within one date of both.
        ((3,), 4),
        # Dates 2 and 3 hidden: it began on 2, 3 or 4; 3 is at most one date from each.
        ((2, 3), 3),
        # Dates 1, 2 and 3 hidden: four dates possible, the later middle one.
        ((1, 2, 3), 3),
    ],
)
def test_the_likeliest_onset_is_the_middle_of_the_dates_cloud_hid(
    world: World, tmp_path: Path, clouded: tuple[int, ...], likeliest: int
) -> None:
    dates, outline = _dates(world, tmp_path, [0, 0, 0, 0, SIDE_PX, SIDE_PX])
    corner = _clear_corner(Path(dates[0].path))
    for index in clouded:
        _cloud_over_outline(Path(dates[index].path), corner)

    [result] = trace_cases(dates, [TraceTask(1, outline, reference_at=dates[5].acquired_at)])

    assert [i for i, look in enumerate(result.looks) if look.state == "unobserved"] == list(clouded)
    assert result.onset_before is not None and result.onset_after is not None
    assert result.onset_before.acquired_at == dates[4].acquired_at
    assert result.onset_after.acquired_at == dates[min(clouded, default=4) - 1].acquired_at
    assert result.onset_likeliest is not None
    assert result.onset_likeliest.acquired_at == dates[likeliest].acquired_at


def test_a_look_between_the_bracket_and_the_hidden_dates_bounds_the_likeliest_onset(
    world: World, tmp_path: Path
) -> None:
    # Date 1 is hidden, date 2 sees the place without the stack, date 3 is hidden and the
    # stack shows on date 4: it began on 3 or 4, whatever date 1 hid.
    dates, outline = _dates(world, tmp_path, [0, 0, 0, 0, SIDE_PX, SIDE_PX])
    corner = _clear_corner(Path(dates[0].path))
    for index in (1, 3):
        _cloud_over_outline(Path(dates[index].path), corner)

    [result] = trace_cases(dates, [TraceTask(1, outline, reference_at=dates[5].acquired_at)])

    assert result.onset_after is not None and result.onset_likeliest is not None
    assert result.onset_after.acquired_at == dates[2].acquired_at
    assert result.onset_likeliest.acquired_at == dates[4].acquired_at


def _cloud_over_most_of_outline(path: Path, corner: tuple[int, int]) -> None:
    """Cloud over the outline's left three fifths and all around them: the cloud's margin
    covers the rest, so no pixel of the outline is one the detector compares, but two fifths
    of it are clear."""
    row, col = corner
    reach = MARGIN_PX + 4
    clouded_cols = slice(col - reach, col + SIDE_PX * 3 // 5)
    _cloud(path, slice(row - reach, row + SIDE_PX + reach), clouded_cols)


@pytest.mark.parametrize("onset", [1, 2, 4])
def test_dates_cloud_hid_in_part_date_the_change_where_it_stands_out(
    world: World, tmp_path: Path, onset: int
) -> None:
    # Dates 1–3 are clouded over most of the outline: none is a look. Where they leave it
    # clear, the stack stands out from the field around it from its onset on, and before it
    # the place blends into the field. Judged on the clear dates alone, the change began on
    # one of dates 1–4, likeliest on 3.
    dates, outline = _dates(world, tmp_path, [0] * onset + [SIDE_PX] * (6 - onset))
    corner = _clear_corner(Path(dates[0].path))
    for index in (1, 2, 3):
        _cloud_over_most_of_outline(Path(dates[index].path), corner)

    [result] = trace_cases(dates, [TraceTask(1, outline, reference_at=dates[5].acquired_at)])

    glimpsed = ["glimpsed" if index == onset else "unobserved" for index in (1, 2, 3)]
    assert [look.state for look in result.looks[1:4]] == glimpsed
    assert result.onset_after is not None and result.onset_after.acquired_at == dates[0].acquired_at
    assert result.onset_before is not None and result.onset_likeliest is not None
    assert result.onset_before.acquired_at == dates[onset].acquired_at
    assert result.onset_likeliest.acquired_at == dates[onset].acquired_at


def test_a_glimpse_standing_out_before_one_blending_in_does_not_date_the_change(
    world: World, tmp_path: Path
) -> None:
    # Something like the stack stands out on date 1 where cloud leaves the place clear, but
    # on date 2 the place blends into its field again: a violation does not come and go, so
    # date 1 showed something else. The stack stands out again on date 3, its onset.
    dates, outline = _dates(world, tmp_path, [0, SIDE_PX, 0, SIDE_PX, SIDE_PX, SIDE_PX])
    corner = _clear_corner(Path(dates[0].path))
    for index in (1, 2, 3):
        _cloud_over_most_of_outline(Path(dates[index].path), corner)

    [result] = trace_cases(dates, [TraceTask(1, outline, reference_at=dates[5].acquired_at)])

    assert [look.state for look in result.looks[1:4]] == ["unobserved", "unobserved", "glimpsed"]
    assert result.onset_before is not None and result.onset_likeliest is not None
    assert result.onset_before.acquired_at == dates[3].acquired_at
    assert result.onset_likeliest.acquired_at == dates[3].acquired_at


def test_a_change_there_from_the_first_date_is_likeliest_on_it(
    world: World, tmp_path: Path
) -> None:
    # No look without the stack: it may predate the imagery, and nothing says when. Sighted
    # on the second date, the first the detector could compare with an earlier one.
    dates, outline = _dates(world, tmp_path, [SIDE_PX, SIDE_PX, SIDE_PX])

    [result] = trace_cases(dates, [TraceTask(1, outline, reference_at=dates[1].acquired_at)])

    assert result.onset_after is None
    assert result.onset_before is not None and result.onset_likeliest is not None
    assert result.onset_likeliest.acquired_at == result.onset_before.acquired_at


def _rubble_around(path: Path, corner: tuple[int, int], reach: int) -> None:
    """Pale rubble over the square `reach` px around the outline: the place's surroundings
    disturbed on the same date (no farm work, which the detector leaves out)."""
    _cover_around(path, corner, reach, (3200, 3200, 3200, 3000))


def test_a_first_stage_amid_disturbed_surroundings_is_dated_by_standing_out(
    world: World, tmp_path: Path
) -> None:
    # Date 3 shows three fifths of the stack with rubble all around it: unlike the unchanged
    # place, but not a change of the place alone (its surroundings changed too), so the
    # comparisons cannot say whether the stack was there. Date 4 is hidden and the whole
    # stack shows on date 5, the rubble gone. On date 3 the stack stands out from the rubble
    # around it, and on date 2 nothing stands out: it was visible on 3.
    dates, outline = _dates(world, tmp_path, [0, 0, 0, 0, 0, SIDE_PX, SIDE_PX])
    corner = _clear_corner(Path(dates[0].path))
    _rubble_around(Path(dates[3].path), corner, reach=AROUND_PX + 4)
    _paint_stack(Path(dates[3].path), corner, SIDE_PX * 3 // 5)
    _cloud_over_outline(Path(dates[4].path), corner)

    [result] = trace_cases(dates, [TraceTask(1, outline, reference_at=dates[6].acquired_at)])

    assert [look.state for look in result.looks[2:5]] == ["differs", "unclear", "unobserved"]
    assert result.onset_after is not None and result.onset_before is not None
    assert result.onset_after.acquired_at == dates[2].acquired_at
    assert result.onset_before.acquired_at == dates[3].acquired_at
    assert result.onset_likeliest is not None
    assert result.onset_likeliest.acquired_at == dates[3].acquired_at


def test_a_look_like_the_violation_only_because_the_field_was_too_is_unclear(
    world: World, tmp_path: Path
) -> None:
    # On date 2 the field all around the place is bare, of the stack's own colour: the place
    # looks like the stack that stands on date 3, but it blends into a field that looks the
    # same (a flooded paddy looks like a pond). That look shows nothing of the stack, and the
    # detector sighted it against that look on date 3: it came after date 2.
    dates, outline = _dates(world, tmp_path, [0, 0, 0, SIDE_PX])
    corner = _clear_corner(Path(dates[0].path))
    _cover_around(Path(dates[2].path), corner, AROUND_PX + 8, STACK_BANDS)

    [result] = trace_cases(dates, [TraceTask(1, outline, reference_at=dates[3].acquired_at)])

    assert result.looks[2].state == "blends_in"
    assert result.onset_after is not None and result.onset_before is not None
    assert result.onset_after.acquired_at == dates[2].acquired_at
    assert result.onset_before.acquired_at == dates[3].acquired_at
    assert result.onset_likeliest is not None
    assert result.onset_likeliest.acquired_at == dates[3].acquired_at
