"""`tianxun evaluate cameras` scores known detections against a small simulated world exactly."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from shapely import affinity
from typer.testing import CliRunner

import scripts.camera_eval as camera_eval
from detection.camera import CameraDetection, CameraParams
from detection.geolocate import GeolocateParams
from scripts.camera_detect import Run
from scripts.cli import app
from simulator import WorldParams, generate_world

SMALL = WorldParams(
    seed=3,
    area_km2=0.36,
    epochs=3,
    cameras=2,
    snapshots_per_epoch=3,
    image_size=(640, 360),
    violations_per_km2=30.0,
)


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("camera_eval") / "world"
    generate_world(SMALL, out, workers=1)
    return out


def _perfect_detector(world_dir: Path, *, shift_deg: float = 0.0):
    """A stand-in for the detector: each violation's extent, confirmed at its first snapshot."""
    violations, _ = camera_eval.load_truth(world_dir)

    def run_sequence(preset_dir: Path, calibration, params, *, now):
        shots, _ = camera_eval._load_shots(world_dir, preset_dir)
        run = Run()
        for violation in violations:
            if violation.in_approved:
                continue
            first = next(s for s in shots if s["epoch"] in violation.extents)
            ground = affinity.translate(violation.extents[first["epoch"]], xoff=shift_deg)
            run.detections.append(
                CameraDetection(
                    len(run.detections) + 1,
                    first["time"],
                    first["time"],
                    "x",
                    0.9,
                    1.0,
                    None,
                    ground,
                )
            )
        # One detection where nothing happened at all: far outside the world.
        stray = affinity.translate(violations[0].extents[min(violations[0].extents)], 1.0, 1.0)
        run.detections.append(
            CameraDetection(99, shots[-1]["time"], shots[-1]["time"], "x", 0.5, 1.0, None, stray)
        )
        return run, {}

    return run_sequence


def test_detections_matching_the_truth_score_full_marks_and_a_stray_one_is_a_false_alarm(
    world_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(camera_eval, "run_sequence", _perfect_detector(world_dir))
    score = camera_eval.evaluate_world(world_dir, min_visible_px=50)
    assert score.violations > 0, "the small world should show some violation to a camera"
    assert score.found_in_time == score.violations
    distinct, distinct_in_time = score.distinct_violations()
    assert 0 < distinct <= score.violations
    assert distinct_in_time == distinct
    assert score.false_alarms == score.presets  # the stray detection, once per preset
    assert score.ious and min(score.ious) >= 0.95


def test_a_detection_beside_its_violation_is_a_miss_and_a_false_alarm(
    world_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 0.01° of longitude is about 1 km: nowhere near the violation it stands for.
    monkeypatch.setattr(camera_eval, "run_sequence", _perfect_detector(world_dir, shift_deg=0.01))
    score = camera_eval.evaluate_world(world_dir, min_visible_px=50)
    assert score.found_in_time == 0
    assert score.distinct_violations()[1] == 0
    assert score.false_alarms > score.presets


def test_violations_beyond_the_ground_the_camera_resolves_still_count_but_not_as_watched(
    world_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(camera_eval, "run_sequence", _perfect_detector(world_dir))
    near_only = CameraParams(geolocate=GeolocateParams(max_pixel_area_m2=2.0))
    everywhere = CameraParams(geolocate=GeolocateParams(max_pixel_area_m2=math.inf))
    whole = camera_eval.evaluate_world(world_dir, params=everywhere, min_visible_px=50)
    cut = camera_eval.evaluate_world(world_dir, params=near_only, min_visible_px=50)
    assert cut.violations == whole.violations > 0
    assert 0 < cut.watched_violations < whole.watched_violations == whole.violations


def test_a_violation_two_presets_show_counts_once_and_is_found_when_either_finds_it() -> None:
    score = camera_eval.CameraScore(
        rows=[
            {"id": "V1", "camera": "CAM-1/P1", "outcome": "missed"},
            {"id": "V1", "camera": "CAM-2/P1", "outcome": "in_time"},
            {"id": "V2", "camera": "CAM-1/P1", "outcome": "late"},
            {"id": "V2", "camera": "CAM-2/P1", "outcome": "missed"},
        ]
    )
    assert score.distinct_violations() == (2, 1)
    summary = score.summary()
    assert (summary["distinct_violations"], summary["distinct_found_in_time"]) == (2, 1)
    assert summary["distinct_detection_rate_within_3"] == 0.5


def test_the_command_prints_the_acceptance_numbers(world_dir: Path) -> None:
    result = CliRunner().invoke(app, ["evaluate", "cameras", str(world_dir)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["presets"] == SMALL.cameras
    assert report["snapshots"] == SMALL.cameras * SMALL.epochs * SMALL.snapshots_per_epoch
    keys = ("detection_rate_within_3", "distinct_detection_rate_within_3")
    for key in (*keys, "false_alarms_per_1000_snapshots", "iou_median"):
        assert key in report


def test_a_folder_that_is_not_a_world_is_refused_with_a_reason(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["evaluate", "cameras", str(tmp_path)])
    assert result.exit_code == 2
    assert "truth/violations.geojson" in result.output
