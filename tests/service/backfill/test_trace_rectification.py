"""For a case being rectified, the trace says what imagery after rectification began shows:
the place returned to farmland, the violation still there, or no clear look yet."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.backfill.compute import TraceTask, trace_cases
from tests.service.backfill.conftest import World
from tests.service.backfill.test_trace_growth import SIDE_PX, _clear_corner, _dates
from tests.service.backfill.test_trace_likeliest import _cloud_over_outline


@pytest.mark.parametrize(
    ("stages", "clouded", "verdict", "last_look"),
    [
        # Stack from date 1, rectification ordered after date 2, the field back on 4 and 5.
        ([0, SIDE_PX, SIDE_PX, SIDE_PX, 0, 0], (), "observed", 5),
        # The stack still there on every later date.
        ([0] + [SIDE_PX] * 5, (), "still_present", 5),
        # Removed on date 4, but cloud over every date after rectification began.
        ([0, SIDE_PX, SIDE_PX, SIDE_PX, 0, 0], (3, 4, 5), "not_observed", None),
    ],
)
def test_later_imagery_says_whether_the_place_was_restored(
    world: World,
    tmp_path: Path,
    stages: list[int],
    clouded: tuple[int, ...],
    verdict: str,
    last_look: int | None,
) -> None:
    dates, outline = _dates(world, tmp_path, stages)
    corner = _clear_corner(Path(dates[0].path))
    for index in clouded:
        _cloud_over_outline(Path(dates[index].path), corner)
    task = TraceTask(1, outline, dates[1].acquired_at, rectifying_since=dates[2].acquired_at)

    [result] = trace_cases(dates, [task])

    assert result.rectification == verdict
    if last_look is None:
        assert result.rectification_look is None and result.rectification_chips is None
    else:
        assert result.rectification_look is not None
        assert result.rectification_look.acquired_at == dates[last_look].acquired_at
        assert result.rectification_chips is not None  # the sighting beside the last look


def test_a_case_not_in_rectification_gets_no_verdict(world: World, tmp_path: Path) -> None:
    dates, outline = _dates(world, tmp_path, [0, SIDE_PX, SIDE_PX, 0])

    [result] = trace_cases(dates, [TraceTask(1, outline, dates[1].acquired_at)])

    assert result.rectification is None and result.rectification_look is None
