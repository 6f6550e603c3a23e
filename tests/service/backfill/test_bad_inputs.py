"""Bad input to a backfill is reported with its reason, and the rest of the run completes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import pytest
import rasterio
import shapely
from rasterio.enums import Resampling
from rasterio.warp import calculate_default_transform, reproject

from service.backfill.inputs import read_area
from tests.service.backfill.conftest import Loaded, World, request_for


def _warped(source: Path, target: Path, *, crs: str | None = None, scale: float = 1.0) -> Path:
    """`source` reprojected to `crs` and/or resampled to `scale` times its pixel size."""
    with rasterio.open(source) as src:
        dst_crs = crs or src.crs
        transform, width, height = calculate_default_transform(
            src.crs, dst_crs, src.width, src.height, *src.bounds, resolution=None
        )
        if scale != 1.0:
            transform = transform @ transform.scale(scale)
            width, height = int(width / scale), int(height / scale)
        profile = src.profile | {
            "crs": dst_crs,
            "transform": transform,
            "width": width,
            "height": height,
        }
        with rasterio.open(target, "w", **profile) as dst:
            for band in range(1, src.count + 1):
                data = np.zeros((height, width), dtype=src.dtypes[0])
                reproject(
                    rasterio.band(src, band),
                    data,
                    dst_transform=transform,
                    dst_crs=dst_crs,
                    resampling=Resampling.nearest,
                )
                dst.write(data, band)
            dst.descriptions = src.descriptions
            dst.colorinterp = src.colorinterp
    return target


def _item(path: Path, day: str) -> pystac.Item:
    with rasterio.open(path) as src:
        bounds = rasterio.warp.transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    item = pystac.Item(
        id=path.stem,
        geometry=shapely.geometry.mapping(shapely.box(*bounds)),
        bbox=list(bounds),
        datetime=pystac.utils.str_to_datetime(f"{day}T02:30:00Z"),
        properties={},
    )
    item.add_asset("data", pystac.Asset(href=str(path), media_type=pystac.MediaType.GEOTIFF))
    return item


@pytest.mark.slow
def test_bad_inputs_are_reported_and_the_rest_completes(
    world: World, tmp_path: Path, client: Any
) -> None:
    days = [epoch["date"] for epoch in world.meta["epochs"]][:3]
    folder = tmp_path / "imagery"
    folder.mkdir()
    files = [shutil.copy(world.products / f"{day}.tif", folder / f"{day}.tif") for day in days]
    # The third date delivered in CGCS2000 / GK zone 40 instead of UTM 51N.
    other_crs = _warped(Path(files[2]), folder / "other-crs.tif", crs="EPSG:4549")
    coarse = _warped(Path(files[1]), folder / "coarse.tif", scale=2.0)
    items = [
        _item(Path(files[0]), days[0]),
        _item(Path(files[1]), days[1]),
        _item(other_crs, days[2]),
        _item(coarse, days[1]),
    ]
    missing = _item(Path(files[0]), days[2])
    missing.id = "lost-scene"
    missing.assets["data"].href = str(folder / "gone.tif")
    catalog = tmp_path / "items.json"
    catalog.write_text(json.dumps(pystac.ItemCollection([*items, missing]).to_dict()))

    loaded = Loaded.fresh(world, tmp_path, "bad")
    summary = loaded.backfill(request_for(world, source=catalog), client)

    reasons = {(p["input"], p["action"]): p["reason"] for p in summary["problems"]}
    assert "gone.tif does not exist" in reasons[("STAC item lost-scene", "skipped")]
    assert "reprojected" in reasons[("STAC item other-crs", "reprojected")]
    assert "EPSG:4549" in reasons[("STAC item other-crs", "reprojected")]
    assert "different resolution" in reasons[("STAC item coarse", "skipped")]
    assert summary["units"] == 2 and summary["units_done"] == 2
    assert summary["status"] == "done"
    loaded.engine.dispose()


def test_an_area_outside_all_imagery_is_reported(world: World, tmp_path: Path, client: Any) -> None:
    far = tmp_path / "far.geojson"
    far.write_text(json.dumps(shapely.geometry.mapping(shapely.box(100.0, 20.0, 100.01, 20.01))))
    loaded = Loaded.fresh(world, tmp_path, "far")
    request = request_for(world)
    request = type(request)(read_area(far), request.since, request.until, request.source)
    summary = loaded.backfill(request, client)
    assert summary["units"] == 0 and summary["cases_new"] == 0
    assert any("outside all imagery" in p["reason"] for p in summary["problems"])
    loaded.engine.dispose()
