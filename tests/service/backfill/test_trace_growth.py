"""The trace dates a violation by when the place first departed from its unchanged look, also
when the violation kept changing after onset."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import rasterio
from pyproj import Transformer
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from service.backfill.compute import AROUND_PX, DatedScene, TraceTask, trace_cases
from tests.service.backfill.conftest import World

SIDE_PX = 20  # the full stack: 400 m² at the world's 1 m
STACK_BANDS = (2600, 2500, 2400, 1500)  # blue, green, red, nir: bare material, not crop
ROOF_BANDS = (900, 1000, 1300, 1100)  # a dark roof over the whole square
ROOFED = -1  # a stage: the square under a roof instead of material
FIRST_DAY = datetime(2025, 3, 1, tzinfo=UTC)


def _clear_corner(path: Path) -> tuple[int, int]:
    """The top-left pixel of a window, well inside the tile, clear of cloud on `path`."""
    with rasterio.open(path) as tile:
        alpha = tile.read(5)
    side = SIDE_PX + 80
    for row in range(100, alpha.shape[0] - side, 50):
        for col in range(100, alpha.shape[1] - side, 50):
            if alpha[row : row + side, col : col + side].all():
                return row + 40, col + 40
    raise AssertionError("no clear window in the tile")


def _fill(path: Path, window: tuple[slice, slice], values: tuple[int, ...]) -> None:
    """Band by band, `values` over `window` of the tile at `path`."""
    with rasterio.open(path, "r+") as tile:
        for band, value in enumerate(values, start=1):
            data = tile.read(band)
            data[window] = value
            tile.write(data, band)


def _paint_stack(path: Path, corner: tuple[int, int], rows_covered: int) -> None:
    """The first `rows_covered` rows of the stack's square covered with material (ROOFED: all
    of the square under a roof)."""
    row, col = corner
    values = ROOF_BANDS if rows_covered == ROOFED else STACK_BANDS
    rows_covered = SIDE_PX if rows_covered == ROOFED else rows_covered
    _fill(path, (slice(row, row + rows_covered), slice(col, col + SIDE_PX)), values)


def _cover_around(path: Path, corner: tuple[int, int], reach: int, values: tuple[int, ...]) -> None:
    """The stack's square and `reach` px around it covered with `values`."""
    row, col = corner
    window = (slice(row - reach, row + SIDE_PX + reach), slice(col - reach, col + SIDE_PX + reach))
    _fill(path, window, values)


def _outline_lonlat(
    path: Path, corner: tuple[int, int], side: int = SIDE_PX, rows: int | None = None
) -> BaseGeometry:
    """The `side`-px square at `corner` of the tile at `path` (its first `rows` rows only,
    when given), in lon/lat."""
    row, col = corner
    with rasterio.open(path) as tile:
        x0, y0 = tile.transform @ (col, row)
        x1, y1 = tile.transform @ (col + side, row + (side if rows is None else rows))
        to_lonlat = Transformer.from_crs(tile.crs, "EPSG:4326", always_xy=True)
    lon0, lat0 = to_lonlat.transform(x0, y0)
    lon1, lat1 = to_lonlat.transform(x1, y1)
    return box(min(lon0, lon1), min(lat0, lat1), max(lon0, lon1), max(lat0, lat1))


def _dates(
    world: World,
    folder: Path,
    stages: list[int],
    paint: Callable[[Path, tuple[int, int], int], None] = _paint_stack,
) -> tuple[list[DatedScene], BaseGeometry]:
    """One file per entry of `stages` (rows of the stack covered on that date; `paint` says
    what a non-zero stage draws), all cut from the same clear delivered tile so that only the
    stack changes from date to date."""
    source = world.products / f"{world.meta['epochs'][0]['date']}.tif"
    corner = _clear_corner(source)
    dates = []
    for index, stage in enumerate(stages):
        path = folder / f"date{index}.tif"
        shutil.copy(source, path)
        if stage:
            paint(path, corner, stage)
        dates.append(DatedScene(index + 1, FIRST_DAY + timedelta(days=15 * index), str(path)))
    return dates, _outline_lonlat(source, corner)


@pytest.mark.parametrize(
    ("stages", "first_visible"),
    [
        # Three fifths of the square covered, then four fifths, then all (detected on the last).
        ([0, 0, SIDE_PX * 3 // 5, SIDE_PX * 4 // 5, SIDE_PX], 2),
        # Started at under a third of its final size, then a quarter more on each date: each
        # step changes less than half of the final outline.
        ([0, 0, 6, 11, 16, SIDE_PX], 2),
        # Material over three fifths, then a roof over all: the earlier stage unlike the last.
        ([0, 0, 0, SIDE_PX * 3 // 5, ROOFED], 3),
        # All of it at once: dated on the date it appears, not earlier.
        ([0, 0, 0, 0, SIDE_PX], 4),
    ],
)
def test_a_violation_growing_after_onset_is_dated_from_its_first_stage(
    world: World, tmp_path: Path, stages: list[int], first_visible: int
) -> None:
    dates, outline = _dates(world, tmp_path, stages)
    last = dates[-1].acquired_at
    [result] = trace_cases(dates, [TraceTask(1, outline, reference_at=last)])
    assert result.onset_before is not None and result.onset_after is not None
    assert result.onset_before.acquired_at == dates[first_visible].acquired_at
    assert result.onset_after.acquired_at == dates[first_visible - 1].acquired_at
    assert all(look.state != "unobserved" for look in result.looks)


def _recolour_around(path: Path, corner: tuple[int, int], reach: int, gains: tuple[float, ...]):
    """Every band of the square `reach` px around the outline's corner scaled by its gain: a
    field that fills all of the trace's view turned over (bare soil for crop)."""
    row, col = corner
    with rasterio.open(path, "r+") as tile:
        for band, gain in enumerate(gains, start=1):
            data = tile.read(band)
            square = data[row - reach : row + SIDE_PX + reach, col - reach : col + SIDE_PX + reach]
            square[:] = (square * gain).clip(0, 65535).astype(data.dtype)
            tile.write(data, band)


def test_a_change_filling_the_whole_view_is_judged_against_the_tile_radiometry(
    world: World, tmp_path: Path
) -> None:
    # Fitted on the view alone, the turned-over field would read as a change of light: all of
    # the view moved together. The rest of the tile says the light did not change.
    dates, outline = _dates(world, tmp_path, [0, 0, 0])
    corner = _clear_corner(Path(dates[0].path))
    _recolour_around(Path(dates[2].path), corner, reach=120, gains=(1.6, 1.5, 1.5, 0.6))
    [result] = trace_cases(dates, [TraceTask(1, outline, reference_at=dates[2].acquired_at)])
    assert [look.state for look in result.looks[:2]] == ["differs", "differs"]
    assert result.onset_before is not None
    assert result.onset_before.acquired_at == dates[2].acquired_at


def _turn_over_beside(path: Path, corner: tuple[int, int], near: int, far: int) -> None:
    """The strips from `near` to `far` px left and right of the stack's square, all rows of
    the view: fields beside the stack's own, turned over (bare soil for crop)."""
    row, col = corner
    with rasterio.open(path, "r+") as tile:
        for band, gain in enumerate((1.6, 1.5, 1.5, 0.6), start=1):
            data = tile.read(band)
            rows = slice(row - far, row + SIDE_PX + far)
            for cols in (
                slice(col - far, col - near),
                slice(col + SIDE_PX + near, col + SIDE_PX + far),
            ):
                data[rows, cols] = (data[rows, cols] * gain).clip(0, 65535).astype(data.dtype)
            tile.write(data, band)


def test_farm_work_in_the_next_fields_does_not_hide_a_first_stage(
    world: World, tmp_path: Path
) -> None:
    # The stack's first stage (under a third of it) comes on the date the fields on either
    # side are turned over: over a third of the view changes, not the stack's own surroundings.
    dates, outline = _dates(world, tmp_path, [0, 0, 6, SIDE_PX])
    corner = _clear_corner(Path(dates[0].path))
    for dated in dates[2:]:
        _turn_over_beside(Path(dated.path), corner, near=AROUND_PX + 4, far=60)
    [result] = trace_cases(dates, [TraceTask(1, outline, reference_at=dates[3].acquired_at)])
    assert result.onset_before is not None and result.onset_after is not None
    assert result.onset_before.acquired_at == dates[2].acquired_at
    assert result.onset_after.acquired_at == dates[1].acquired_at


def _bare_soil_around(path: Path, corner: tuple[int, int], reach: int) -> None:
    """Bare soil of the stack's own colour over its square and `reach` px around: on that
    date nothing in the view stands out from the field."""
    _cover_around(path, corner, reach, STACK_BANDS)


def test_a_growth_walked_back_to_the_first_date_is_dated_after_it(
    world: World, tmp_path: Path
) -> None:
    # The stack grows over dates 1 to 3 and is sighted on 3, when the field around has
    # turned to bare soil of its own colour. Each step back differs from the one before, and
    # date 0, the first, is unlike date 1: the stack came after it, though no date before it
    # shows the place the same.
    dates, outline = _dates(world, tmp_path, [0, SIDE_PX * 7 // 20, SIDE_PX * 14 // 20, SIDE_PX])
    _bare_soil_around(Path(dates[3].path), _clear_corner(Path(dates[0].path)), AROUND_PX + 8)

    [result] = trace_cases(dates, [TraceTask(1, outline, reference_at=dates[3].acquired_at)])

    assert result.onset_after is not None and result.onset_before is not None
    assert result.onset_after.acquired_at == dates[0].acquired_at
    assert result.onset_before.acquired_at == dates[1].acquired_at
