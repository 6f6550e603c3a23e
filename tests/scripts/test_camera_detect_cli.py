"""`tianxun camera-detect` end to end on a synthetic preset sequence written as JPEG files."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from shapely.geometry import Polygon, shape
from typer.testing import CliRunner

from detection.camera import CameraParams
from detection.geolocate import calibration_from_mapping, ground_area_m2
from scripts.cli import app
from tests.detection.test_camera_scene import FULL_SIZE, Scene

START = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
PATCH = (-10.0, 190.0, 10.0, 210.0, (0.78, 0.78, 0.74))


def jpeg(frame: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(frame).resize(FULL_SIZE, Image.Resampling.BICUBIC).save(
        buffer, format="JPEG", quality=90
    )
    return buffer.getvalue()


def name(index: int) -> str:
    return (START + timedelta(minutes=10 * index)).strftime("%Y%m%dT%H%M%SZ") + ".jpg"


@pytest.fixture(scope="module")
def scene() -> Scene:
    return Scene()


@pytest.fixture
def sequence(tmp_path: Path, scene: Scene) -> tuple[Path, Path]:
    folder = tmp_path / "preset-1"
    folder.mkdir()
    for index in range(9):
        patches = [PATCH] if index >= 5 else []
        (folder / name(index)).write_bytes(jpeg(scene.render(noise_seed=index, patches=patches)))
    good = (folder / name(0)).read_bytes()
    (folder / "20240501T083500Z.jpg").write_bytes(good[: len(good) // 2])  # truncated
    png = io.BytesIO()
    Image.new("RGB", FULL_SIZE).save(png, format="PNG")
    (folder / "20240501T084500Z.jpg").write_bytes(png.getvalue())  # a PNG in disguise
    (folder / "holiday.jpg").write_bytes(good)
    calibration = tmp_path / "calibration.json"
    calibration.write_text(json.dumps(scene.calibration_mapping()))
    return folder, calibration


def test_camera_detect_writes_one_feature_per_persistent_change(
    tmp_path: Path, scene: Scene, sequence: tuple[Path, Path]
) -> None:
    folder, calibration = sequence
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["camera-detect", str(folder), "--calibration", str(calibration), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    collection = json.loads((out / "detections.geojson").read_text())
    assert collection["type"] == "FeatureCollection"
    [feature] = collection["features"]
    properties = feature["properties"]
    confirming = 5 + CameraParams().persistence - 1
    assert properties["onset"] == (START + timedelta(minutes=50)).isoformat()
    assert properties["confirmed_at"] == (START + timedelta(minutes=10 * confirming)).isoformat()
    assert 0 < properties["confidence"] < 1 and properties["type"]
    fitted = calibration_from_mapping(json.loads(calibration.read_text()))
    truth = Polygon(scene.lonlat(np.array([[-10, 190], [10, 190], [10, 210], [-10, 210]])))
    found = shape(feature["geometry"])
    iou = ground_area_m2(fitted, found & truth) / ground_area_m2(fitted, found | truth)
    assert iou >= 0.5
    assert properties["area_m2"] == pytest.approx(ground_area_m2(fitted, found), rel=0.01)
    assert (out / "overlays" / f"{Path(name(confirming)).stem}.png").exists()


def test_bad_snapshots_are_marked_with_their_reason(
    tmp_path: Path, sequence: tuple[Path, Path]
) -> None:
    folder, calibration = sequence
    out = tmp_path / "out"
    CliRunner().invoke(
        app, ["camera-detect", str(folder), "--calibration", str(calibration), "-o", str(out)]
    )
    rows = {row["file"]: row for row in json.loads((out / "snapshots.json").read_text())}
    assert rows["20240501T083500Z.jpg"]["reason"] == "truncated"
    assert rows["20240501T084500Z.jpg"]["reason"] == "not_jpeg"
    assert rows["holiday.jpg"]["reason"] == "bad_name"
    assert rows[name(6)]["status"] == "analysed"


def test_a_calibration_with_three_points_is_refused(
    tmp_path: Path, scene: Scene, sequence: tuple[Path, Path]
) -> None:
    folder, _ = sequence
    data = scene.calibration_mapping()
    data["control_points"] = data["control_points"][:3]
    calibration = tmp_path / "three.json"
    calibration.write_text(json.dumps(data))
    result = CliRunner().invoke(
        app,
        [
            "camera-detect",
            str(folder),
            "--calibration",
            str(calibration),
            "-o",
            str(tmp_path / "o"),
        ],
    )
    assert result.exit_code == 2
    assert "at least 4" in result.output
