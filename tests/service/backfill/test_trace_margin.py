"""The trace looks at a place only where the detector compares it: clear, and beyond the
detector's margin of cloud (`invalid_buffer_m`) on both dates. A pixel near a cloud is never
called change, so counting it as unchanged would date a violation on a date that saw nothing."""

from __future__ import annotations

from pathlib import Path

import rasterio

from detection.rs_params import RasterDetectorParams
from service.backfill.compute import TraceTask, trace_cases
from tests.service.backfill.conftest import World
from tests.service.backfill.test_trace_growth import SIDE_PX, _clear_corner, _dates

ALPHA_BAND = 5  # of a delivered product: 0 where cloud
MARGIN_PX = int(RasterDetectorParams().invalid_buffer_m)  # the world's pixels are 1 m


def _cloud(path: Path, rows: slice, cols: slice) -> None:
    """Cloud over `rows` × `cols` of the tile at `path` (its alpha band 0 there)."""
    with rasterio.open(path, "r+") as tile:
        alpha = tile.read(ALPHA_BAND)
        alpha[rows, cols] = 0
        tile.write(alpha, ALPHA_BAND)


def _cloud_beside(path: Path, corner: tuple[int, int], side: str, reach_px: int) -> None:
    """A band of cloud left or right of the outline whose margin reaches `reach_px` columns
    into the outline (0: it ends just short of it); the outline itself stays clear."""
    row, col = corner
    rows = slice(row - 2 * MARGIN_PX, row + SIDE_PX + 2 * MARGIN_PX)
    if side == "left":
        edge = col - MARGIN_PX - 1 + reach_px  # the last cloudy column
        _cloud(path, rows, slice(edge - 10, edge + 1))
    else:
        edge = col + SIDE_PX + MARGIN_PX - reach_px  # the first cloudy column
        _cloud(path, rows, slice(edge, edge + 11))


def test_a_date_clear_over_the_outline_but_within_the_cloud_margin_is_no_look(
    world: World, tmp_path: Path
) -> None:
    # The stack comes on date 3. Date 2 is clear over the outline, but cloud lies a few pixels
    # away on both sides: the detector compares none of the outline on that date.
    dates, outline = _dates(world, tmp_path, [0, 0, 0, SIDE_PX, SIDE_PX])
    corner = _clear_corner(Path(dates[0].path))
    row, col = corner
    rows = slice(row - 5, row + SIDE_PX + 5)
    _cloud(Path(dates[2].path), rows, slice(col - 8, col - 3))
    _cloud(Path(dates[2].path), rows, slice(col + SIDE_PX + 3, col + SIDE_PX + 8))

    [result] = trace_cases(dates, [TraceTask(1, outline, reference_at=dates[3].acquired_at)])

    assert result.looks[2].state == "unobserved"
    assert result.onset_before is not None and result.onset_after is not None
    assert result.onset_before.acquired_at == dates[3].acquired_at
    assert result.onset_after.acquired_at == dates[1].acquired_at


def test_two_dates_that_each_see_the_outline_but_compare_little_of_it_are_unclear(
    world: World, tmp_path: Path
) -> None:
    # Date 2 (before the stack) sees the left 11 of the outline's 20 columns beyond the cloud
    # margin, date 3 (the stack, the reference) the right 11: each is a look, but the
    # detector compares only the middle two columns between them, too little to call date 2
    # like the stack (which it is not).
    dates, outline = _dates(world, tmp_path, [0, 0, 0, SIDE_PX, SIDE_PX])
    corner = _clear_corner(Path(dates[0].path))
    reach = SIDE_PX - 11
    _cloud_beside(Path(dates[2].path), corner, "right", reach_px=reach)
    _cloud_beside(Path(dates[3].path), corner, "left", reach_px=reach)

    [result] = trace_cases(dates, [TraceTask(1, outline, reference_at=dates[3].acquired_at)])

    assert result.looks[2].state == "unclear"
    assert result.onset_before is not None and result.onset_after is not None
    assert result.onset_before.acquired_at == dates[3].acquired_at
    assert result.onset_after.acquired_at == dates[1].acquired_at
