"""A violation that grew by steps each under the detector's mapping unit is dated from its
first stage by the run of looks where the outline stands out from the field around it, each
look judged on its own date: no comparison of two dates can see such a step."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import rasterio
from pyproj import Transformer
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from service.backfill.compute import DatedScene, TraceTask, trace_cases
from tests.service.backfill.conftest import World
from tests.service.backfill.test_trace_growth import (
    FIRST_DAY,
    STACK_BANDS,
    _clear_corner,
)

FINAL_SIDE_PX = 10  # a pile of 100 m² at the world's 1 m; the mapping unit is 50 m²


def _square(corner: tuple[int, int], side: int) -> tuple[slice, slice]:
    """The `side`-px square centred in the final pile's place."""
    start_row = corner[0] + (FINAL_SIDE_PX - side) // 2
    start_col = corner[1] + (FINAL_SIDE_PX - side) // 2
    return slice(start_row, start_row + side), slice(start_col, start_col + side)


def _pile_dates(world: World, folder: Path, sides: list[int]) -> list[DatedScene]:
    """One file per entry of `sides` (the pile's side that date, 0: none), all cut from the
    same clear delivered tile so that only the pile changes from date to date."""
    source = world.products / f"{world.meta['epochs'][0]['date']}.tif"
    corner = _clear_corner(source)
    dates = []
    for index, side in enumerate(sides):
        path = folder / f"date{index}.tif"
        shutil.copy(source, path)
        with rasterio.open(path, "r+") as tile:
            for band, value in enumerate(STACK_BANDS, start=1):
                data = tile.read(band)
                data[_square(corner, side)] = value
                tile.write(data, band)
        dates.append(DatedScene(index + 1, FIRST_DAY + timedelta(days=30 * index), str(path)))
    return dates


def _pile_outline(world: World) -> BaseGeometry:
    source = world.products / f"{world.meta['epochs'][0]['date']}.tif"
    rows, cols = _square(_clear_corner(source), FINAL_SIDE_PX)
    with rasterio.open(source) as tile:
        x0, y0 = tile.transform @ (cols.start, rows.start)
        x1, y1 = tile.transform @ (cols.stop, rows.stop)
        to_lonlat = Transformer.from_crs(tile.crs, "EPSG:4326", always_xy=True)
    lon0, lat0 = to_lonlat.transform(x0, y0)
    lon1, lat1 = to_lonlat.transform(x1, y1)
    return box(min(lon0, lon1), min(lat0, lat1), max(lon0, lon1), max(lat0, lat1))


def test_a_pile_grown_by_steps_under_the_mapping_unit_is_dated_from_its_first_stage(
    world: World, tmp_path: Path
) -> None:
    # 49 m² on date 2, 64 on 3, 100 on 4, when it is sighted: every step adds less than the
    # 50 m² mapping unit, the first stage included, but the pile stands out from the field
    # on each of those dates and on date 1 nothing does.
    dates = _pile_dates(world, tmp_path, [0, 0, 7, 8, FINAL_SIDE_PX, FINAL_SIDE_PX])

    [result] = trace_cases(dates, [TraceTask(1, _pile_outline(world), dates[4].acquired_at)])

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
    dates = _pile_dates(world, tmp_path, [0] + [FINAL_SIDE_PX] * 5)

    [result] = trace_cases(dates, [TraceTask(1, _pile_outline(world), dates[5].acquired_at)])

    assert result.onset_after is not None and result.onset_before is not None
    assert result.onset_after.acquired_at == dates[4].acquired_at
    assert result.onset_before.acquired_at == dates[5].acquired_at
