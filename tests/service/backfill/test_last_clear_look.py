"""A date wholly under cloud: the next date is compared with the last clear look before it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import rasterio
from shapely.geometry import shape
from sqlalchemy import select
from sqlalchemy.orm import Session

from models import BackfillUnit, Detection, Scene
from models.backfill import BackfillUnitStatus
from tests.service.backfill.conftest import Loaded, World, request_for


def _all_cloud(path: Path) -> None:
    """The provider's mask says cloud or shadow everywhere (alpha 0 on every pixel)."""
    with rasterio.open(path, "r+") as tile:
        alpha = tile.colorinterp.index(rasterio.enums.ColorInterp.alpha) + 1
        tile.write(tile.read(alpha) * 0, alpha)


def _changes_of(world: World, epochs: set[int]) -> list[Any]:
    """Outlines of the injected changes (approved ones too) first shown on `epochs`."""
    truth = json.loads((world.folder / "truth" / "violations.geojson").read_text())["features"]
    return [shape(f["geometry"]) for f in truth if f["properties"]["epoch"] in epochs]


@pytest.mark.slow
def test_a_date_under_cloud_is_bridged_by_the_older_clear_look(
    world: World, tmp_path: Path, client: Any
) -> None:
    days = [epoch["date"] for epoch in world.meta["epochs"]]
    cloudy = 1
    # What appeared by the cloudy date or the next one: comparing only consecutive dates, both
    # pairs around the cloud are refused and these are never seen appearing.
    hidden = _changes_of(world, {cloudy, cloudy + 1})
    assert len(days) > cloudy + 1 and hidden
    folder = tmp_path / "imagery"
    folder.mkdir()
    for day in days:
        shutil.copy(world.products / f"{day}.tif", folder / f"{day}.tif")
    _all_cloud(folder / f"{days[cloudy]}.tif")

    loaded = Loaded.fresh(world, tmp_path, "cloud")
    summary = loaded.backfill(request_for(world, source=folder), client)

    with Session(loaded.engine) as session:
        scene_of = {s.acquired_at.date().isoformat(): s.id for s in session.scalars(select(Scene))}
        units = {
            (u.before_scene_id, u.after_scene_id): u for u in session.scalars(select(BackfillUnit))
        }
        into_cloud = units[(scene_of[days[cloudy - 1]], scene_of[days[cloudy]])]
        out_of_cloud = units[(scene_of[days[cloudy]], scene_of[days[cloudy + 1]])]
        # Nothing older can show what the cloudy date hides: that pair is refused, with why.
        assert into_cloud.status == BackfillUnitStatus.failed and into_cloud.failure_reason
        # The cloudy date is filled from the dates before it, so the next one is compared.
        assert out_of_cloud.status == BackfillUnitStatus.done, out_of_cloud.failure_reason
        found = [
            d.geom
            for d in session.scalars(
                select(Detection).where(
                    Detection.scene_id == scene_of[days[cloudy + 1]], Detection.benign.is_(False)
                )
            )
        ]
    assert out_of_cloud.objects > 0 and found
    assert any(d.intersects(v) for d in found for v in hidden), "the change under cloud is missed"
    assert summary["units_done"] == len(days) - 2 and summary["units_failed"] == 1

    # Run again: the same units with the same older dates, nothing computed twice.
    again = loaded.backfill(request_for(world, source=folder), client)
    assert again["units_done"] == summary["units_done"] and again["run_id"] == summary["run_id"]
    loaded.engine.dispose()
