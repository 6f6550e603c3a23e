"""Remote-sensing tiles: GeoTIFF metadata, cloud masks, and truth masks that match the polygons."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from pyproj import Transformer
from rasterio import features
from shapely.geometry import shape

from simulator import build_world, render_tile
from tests.simulator.worlds import TINY


def test_tiles_are_four_band_uint16_geotiffs_on_the_world_grid(
    tiny_world_dir: Path, tiny_world_json: dict
) -> None:
    for epoch in tiny_world_json["epochs"]:
        with rasterio.open(tiny_world_dir / epoch["tile"]) as tile:
            assert tile.crs.to_string() == "EPSG:32651"
            assert tile.count == 4 and tile.dtypes == ("uint16",) * 4
            assert tile.descriptions == ("blue", "green", "red", "nir")
            assert tile.nodata == 0
            assert tile.res == (TINY.pixel_size_m, TINY.pixel_size_m)
            assert list(tile.bounds) == pytest.approx(tiny_world_json["bounds"])
            structure = tile.tags(ns="IMAGE_STRUCTURE")
            assert structure["COMPRESSION"] in ("ZSTD", "DEFLATE") and structure["PREDICTOR"] == "2"
            assert tile.profile["tiled"]
            data = tile.read()
            transform = tile.transform
        valid = data[0] > 0
        assert valid.mean() > 0.5
        assert 300 < np.median(data[3][valid]) < 6000  # NIR reflectance × 10000 of farmland
        with rasterio.open(tiny_world_dir / epoch["cloud_mask"]) as cloud:
            assert cloud.dtypes == ("uint8",) and cloud.transform == transform
            assert set(np.unique(cloud.read(1))) <= {0, 1, 255}


def test_bright_clouds_are_flagged_in_the_cloud_mask() -> None:
    world = build_world(TINY)
    tiles = [render_tile(world, e) for e in range(TINY.epochs)]
    flagged = [t for t in tiles if (t.cloud == 1).mean() > 0.02]
    if not flagged:
        pytest.skip("no cloudy epoch in this tiny world")
    for tile in flagged:
        very_bright = tile.data[0] > 4000  # blue reflectance > 0.4: only clouds are that bright
        assert very_bright.any()
        assert (tile.cloud[very_bright] == 1).mean() > 0.99


def _rasterise_truth(collection: dict, epoch: int | None, world: dict, path: Path) -> np.ndarray:
    to_crs = Transformer.from_crs("EPSG:4326", world["crs"], always_xy=True)
    shapes = []
    for feature in collection["features"]:
        props = feature["properties"]
        if epoch is not None and props["epoch"] != epoch:
            continue
        geom = shapely.transform(
            shape(feature["geometry"]),
            lambda xy: np.column_stack(to_crs.transform(xy[:, 0], xy[:, 1])),
        )
        shapes.append((geom, 2 if props["in_approved"] else 1))
    with rasterio.open(path) as mask:
        grid = mask.transform, mask.shape
    if not shapes:
        return np.zeros(grid[1], np.uint8)
    return features.rasterize(shapes, out_shape=grid[1], transform=grid[0], fill=0, dtype="uint8")


def test_tile_truth_masks_agree_with_the_truth_polygons(
    tiny_world_dir: Path, tiny_world_json: dict
) -> None:
    extents = json.loads((tiny_world_dir / "truth" / "violation_extents.geojson").read_text())
    final = json.loads((tiny_world_dir / "truth" / "violations.geojson").read_text())
    epochs = tiny_world_json["epochs"]
    painted = 0
    for epoch in epochs:
        path = tiny_world_dir / epoch["truth_mask"]
        with rasterio.open(path) as src:
            written = src.read(1)
        expected = _rasterise_truth(extents, epoch["index"], tiny_world_json, path)
        # Lon/lat rounding moves vertices by < 1 mm, which may flip a pixel centre on an edge.
        assert np.count_nonzero(written != expected) <= max(2, 0.001 * np.count_nonzero(expected))
        painted += np.count_nonzero(written)
    assert painted > 0
    last = tiny_world_dir / epochs[-1]["truth_mask"]
    with rasterio.open(last) as src:
        assert (
            np.count_nonzero(src.read(1) != _rasterise_truth(final, None, tiny_world_json, last))
            <= 2
        )


def test_written_tiles_are_what_render_tile_returns(
    tiny_world_dir: Path, tiny_world_json: dict
) -> None:
    world = build_world(TINY)
    epoch = tiny_world_json["epochs"][-1]

    rendered = render_tile(world, epoch["index"])

    with rasterio.open(tiny_world_dir / epoch["tile"]) as tile:
        assert np.array_equal(tile.read(), rendered.data)
    with rasterio.open(tiny_world_dir / epoch["truth_mask"]) as mask:
        assert np.array_equal(mask.read(1), rendered.truth)


def test_violations_appear_at_onset_and_persist(
    tiny_world_dir: Path, tiny_world_json: dict
) -> None:
    masks = []
    for epoch in tiny_world_json["epochs"]:
        with rasterio.open(tiny_world_dir / epoch["truth_mask"]) as src:
            masks.append(src.read(1) > 0)

    assert not masks[0].any()  # onsets fall after the first epoch: there is always a "before"
    for earlier, later in itertools.pairwise(masks):
        assert not (earlier & ~later).any()
    assert masks[-1].any()
