"""Camera registry, calibration files, snapshots, and masks that match the projected polygons."""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import shapely
from affine import Affine
from PIL import Image
from pyproj import Transformer
from rasterio import features
from shapely.geometry import Polygon, shape
from skimage.transform import ProjectiveTransform

from simulator import build_world, render_snapshot
from simulator.camera_timeline import _epoch_ground, _switch_canvas, seasonal_ground
from simulator.snapshot import LOCAL, capture_time
from simulator.view import preset_view
from tests.simulator.worlds import TINY

STEM = re.compile(r"^\d{8}T\d{6}Z$")


def _registry(root: Path) -> list[dict]:
    return json.loads((root / "cameras" / "registry.json").read_text())


def test_calibration_files_have_the_agreed_form(tiny_world_dir: Path) -> None:
    registry = _registry(tiny_world_dir)
    assert len(registry) == TINY.cameras
    for camera in registry:
        assert 40 <= camera["height_m"] <= 60
        for preset in camera["presets"]:
            path = tiny_world_dir / "cameras" / camera["camera_id"] / preset["preset"]
            calibration = json.loads((path / "calibration.json").read_text())
            assert set(calibration) == {
                "camera_id",
                "image_size",
                "control_points",
                "farmland",
                "parcels",
            }
            assert calibration["image_size"] == list(TINY.image_size)
            points = calibration["control_points"]
            assert len(points) >= 6
            width, height = TINY.image_size
            for point in points:
                col, row = point["pixel"]
                assert 0 <= col < width and preset["horizon_row"] < row < height
            assert len({round(p["pixel"][1]) for p in points}) >= 2  # not all on one line
            assert shape(calibration["farmland"]).geom_type in ("Polygon", "MultiPolygon")
            # One geometry per cultivated parcel in view, together the farmland, none overlapping.
            farmland = shape(calibration["farmland"])
            parcels = [shape(parcel) for parcel in calibration["parcels"]]
            assert len(parcels) > 1
            assert {p.geom_type for p in parcels} <= {"Polygon", "MultiPolygon"}
            assert sum(p.area for p in parcels) == pytest.approx(farmland.area, rel=1e-6)
            assert shapely.union_all(parcels).symmetric_difference(farmland).area < 1e-6 * (
                farmland.area
            )


def test_snapshots_are_1080p_style_jpegs_named_by_utc_time(tiny_world_dir: Path) -> None:
    for camera in _registry(tiny_world_dir):
        for preset in camera["presets"]:
            folder = tiny_world_dir / "cameras" / camera["camera_id"] / preset["preset"]
            shots = json.loads((folder / "snapshots.json").read_text())
            jpegs = sorted(folder.glob("*.jpg"))
            assert len(jpegs) == len(shots) == TINY.epochs * TINY.snapshots_per_epoch
            for jpeg in jpegs:
                assert STEM.match(jpeg.stem)
                with Image.open(jpeg) as image:
                    assert image.format == "JPEG" and image.size == TINY.image_size
            for shot in shots:
                assert shot["captured_at"].replace("-", "").replace(":", "") == shot["file"][:-4]
                assert max(abs(v) for v in shot["shift_px"]) <= 0.02 * TINY.image_size[0] + 1


def _homography(calibration: dict, to_crs: Transformer) -> ProjectiveTransform:
    ground = np.array([to_crs.transform(p["lon"], p["lat"]) for p in calibration["control_points"]])
    pixels = np.array([p["pixel"] for p in calibration["control_points"]], dtype=float)
    return ProjectiveTransform.from_estimate(ground, pixels)


def _projected_mask(
    extents: list[tuple[Polygon, int]],
    image_to_ground: ProjectiveTransform,
    ground_to_image: ProjectiveTransform,
    shift: tuple[int, int],
    top_row: float,
) -> np.ndarray:
    """Rasterise ground polygons seen below `top_row`, projected through the homography."""
    width, height = TINY.image_size
    corners = np.array([[0, top_row], [width, top_row], [width, height], [0, height]], float)
    corners -= np.array(shift, float)  # frame pixel = nominal pixel + shift
    footprint = Polygon(image_to_ground(corners))
    shapes = []
    for geom, value in extents:
        seen = geom.intersection(footprint)
        if seen.is_empty:
            continue
        projected = shapely.transform(seen, lambda xy: ground_to_image(xy) + np.array(shift, float))
        shapes.append((projected, value))
    if not shapes:
        return np.zeros((height, width), np.uint8)
    return features.rasterize(
        shapes, out_shape=(height, width), transform=Affine.identity(), fill=0, dtype="uint8"
    )


def test_camera_masks_agree_with_polygons_projected_through_the_calibration(
    tiny_world_dir: Path, tiny_world_json: dict
) -> None:
    to_crs = Transformer.from_crs("EPSG:4326", tiny_world_json["crs"], always_xy=True)
    extents = json.loads((tiny_world_dir / "truth" / "violation_extents.geojson").read_text())
    by_epoch: dict[int, list[tuple[Polygon, int]]] = {}
    for feature in extents["features"]:
        geom = shapely.transform(
            shape(feature["geometry"]),
            lambda xy: np.column_stack(to_crs.transform(xy[:, 0], xy[:, 1])),
        )
        value = 2 if feature["properties"]["in_approved"] else 1
        by_epoch.setdefault(feature["properties"]["epoch"], []).append((geom, value))
    compared = 0
    for camera in _registry(tiny_world_dir):
        for preset in camera["presets"]:
            folder = tiny_world_dir / "cameras" / camera["camera_id"] / preset["preset"]
            calibration = json.loads((folder / "calibration.json").read_text())
            to_image = _homography(calibration, to_crs)
            to_ground = ProjectiveTransform(np.linalg.inv(to_image.params))
            top = preset["horizon_row"] + 0.05 * (TINY.image_size[1] - preset["horizon_row"])
            for shot in json.loads((folder / "snapshots.json").read_text()):
                written = np.asarray(Image.open(tiny_world_dir / shot["mask"]))
                expected = _projected_mask(
                    by_epoch.get(shot["epoch"], []),
                    to_ground,
                    to_image,
                    tuple(shot["shift_px"]),
                    top,
                )
                rows = np.arange(written.shape[0])[:, None] >= top + max(0, shot["shift_px"][1])
                ours, theirs = (written > 0) & rows, (expected > 0) & rows
                if not theirs.any():
                    assert not ours.any()
                    continue
                iou = (ours & theirs).sum() / (ours | theirs).sum()
                assert iou >= 0.95, (shot["file"], iou)
                compared += 1
    assert compared > 0, "no violation was in view of any camera"


def test_violations_stay_between_snapshots_while_passers_by_come_and_go(
    tiny_world_dir: Path,
) -> None:
    for camera in _registry(tiny_world_dir):
        folder = tiny_world_dir / "cameras" / camera["camera_id"] / camera["presets"][0]["preset"]
        by_epoch: dict[int, list[dict]] = {}
        for shot in json.loads((folder / "snapshots.json").read_text()):
            by_epoch.setdefault(shot["epoch"], []).append(shot)
        for same_epoch in by_epoch.values():
            # Violations are on the ground: the same in every shot of an epoch, up to sway.
            pixels = [s["violation_pixels"] for s in same_epoch]
            assert max(pixels) - min(pixels) <= 0.2 * max(max(pixels), 1)


def test_most_full_size_frames_show_vehicles_or_people_that_move_between_shots() -> None:
    world = build_world(replace(TINY, cameras=1, image_size=(1920, 1080)))
    preset = world.cameras[0].presets[0]
    shots = [render_snapshot(world, preset, 1, shot) for shot in range(2)]
    shots += [render_snapshot(world, preset, 2, shot) for shot in range(2)]

    busy = [s for s in shots if s.distractors]
    assert len(busy) >= len(shots) // 2
    boxes = [tuple(d["bbox"]) for s in shots for d in s.distractors]
    assert len(set(boxes)) == len(boxes)  # nobody stands still in the same place


def test_an_epochs_snapshots_fall_on_consecutive_days_ending_on_its_date() -> None:
    world = build_world(replace(TINY, cameras=1, snapshots_per_epoch=6, camera_days_per_epoch=3))
    preset = world.cameras[0].presets[0]
    local_days = [
        capture_time(world, preset, 1, shot)[0].astimezone(LOCAL).date() for shot in range(6)
    ]
    expected = [world.dates[1] - timedelta(days=d) for d in (2, 2, 1, 1, 0, 0)]
    assert local_days == expected


def test_crops_drift_gradually_while_farm_work_and_violations_happen_on_a_day() -> None:
    params = replace(TINY, cameras=1, snapshots_per_epoch=4, camera_days_per_epoch=4)
    world = build_world(params)
    preset = world.cameras[0].presets[0]
    view = preset_view(world, preset)
    before, after = (_epoch_ground(world, preset, epoch) for epoch in (0, 1))
    shots = [np.asarray(seasonal_ground(world, view, 1, s, after), float) for s in range(4)]
    before_px, after_px = np.asarray(before, float), np.asarray(after, float)
    switch = np.asarray(_switch_canvas(world, view, 1))
    assert (switch > 1).any(), "some farm work should fall after the first snapshot"
    for shot, image in enumerate(shots):
        done, waiting = (switch > 0) & (switch <= shot + 1), switch > shot + 1
        assert np.array_equal(image[done], after_px[done])
        assert np.array_equal(image[waiting], before_px[waiting])
    # Elsewhere each snapshot moves about a quarter of the way from one state to the next.
    drifting = (switch == 0) & (np.abs(after_px - before_px).max(axis=2) > 20)
    assert drifting.sum() > 500
    steps = [np.abs(b - a)[drifting].mean() for a, b in itertools.pairwise([before_px, *shots])]
    total = np.abs(after_px - before_px)[drifting].mean()
    assert all(0.15 * total < step < 0.35 * total for step in steps)
