"""`tianxun evaluate world` on a tiny simulated world: every truth violation gets its row."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from shapely.geometry import box
from typer.testing import CliRunner

from detection.world_score import TruthViolation
from scripts import evaluate_world
from scripts.cli import app
from simulator import WorldParams, generate_world

runner = CliRunner()


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("evaluate_world") / "world"
    generate_world(WorldParams(area_km2=0.25, epochs=3, cameras=1), out, workers=1)
    return out


def truth_ids(world_dir: Path) -> list[str]:
    features = json.loads((world_dir / "truth" / "violations.geojson").read_text())["features"]
    return [feature["properties"]["id"] for feature in features]


@pytest.mark.slow
def test_json_scores_both_halves_with_one_row_per_truth_violation(world_dir: Path):
    result = runner.invoke(app, ["evaluate", "world", str(world_dir), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    rs = report["remote_sensing"]
    assert rs["reference"] == "last-clear"
    assert rs["pairs_scored"] == 2 and rs["failed_pairs"] == []
    assert rs["area_km2"] == pytest.approx(0.25, rel=0.05)
    assert truth_ids(world_dir), "the tiny world should hold violations to score"
    assert [row["id"] for row in rs["violations"]] == truth_ids(world_dir)
    assert rs["violations_scored"] == sum(row["scored"] for row in rs["violations"]) > 0
    for row in rs["violations"]:
        if row["scored"] and row["detected"]:
            assert 0 <= row["epochs_after_onset"] <= 2 - row["onset_epoch"]
    assert rs["false_alarms"] == sum(p["false_alarms"] for p in rs["pairs"])
    assert rs["false_alarms_per_km2_per_epoch"] == pytest.approx(
        rs["false_alarms"] / rs["area_km2"] / 2, abs=0.01
    )
    assert 0.0 <= rs["benign_flagged_share"] <= 1.0
    assert rs["benign_events"] > 0
    assert 0 <= rs["violations_observed"] <= rs["violations_scored"]
    large = rs["large_violations"]
    at_least_100 = [row for row in rs["violations"] if row["scored"] and row["area_m2"] >= 100]
    assert large["violations"] == len(at_least_100)
    assert large["detected"] == sum(row["detected"] for row in at_least_100)
    assert large["observed_detected"] <= large["observed"] <= large["violations"]
    cameras = report["cameras"]
    assert cameras is not None, report["cameras_note"]
    assert cameras["snapshots"] > 0 and "false_alarms_per_1000_snapshots" in cameras
    assert cameras["violations"] == len(cameras["violations_detail"])


@pytest.mark.slow
def test_table_names_the_violations_and_the_yardsticks(world_dir: Path):
    result = runner.invoke(app, ["evaluate", "world", str(world_dir), "--no-cameras"])
    assert result.exit_code == 0, result.output
    assert "km² / epoch" in result.output and "farm work flagged" in result.output
    assert "violations of ≥ 100 m² detected" in result.output
    for violation_id in truth_ids(world_dir):
        assert violation_id in result.output
    assert "not requested" in result.output


def test_clear_fraction_counts_the_cloud_free_pixels_inside_the_extent():
    clear = np.ones((10, 10), dtype=bool)
    clear[:, 5:] = False  # the right half is cloud
    transform = Affine(1.0, 0.0, 1000.0, 0.0, -1.0, 2000.0)  # 1 m pixels, north up
    extents = {"half": box(1002, 1992, 1008, 1996), "clear": box(1000, 1990, 1004, 2000)}
    fractions = evaluate_world.clear_fractions(clear, transform, extents)
    assert fractions == {"half": pytest.approx(0.5), "clear": pytest.approx(1.0)}


def test_a_violation_counts_as_seen_only_where_the_detector_compares_it():
    clear = np.ones((100, 100), dtype=bool)
    clear[:, 60:] = False  # cloud over the right part of the tile
    transform = Affine(1.0, 0.0, 1000.0, 0.0, -1.0, 2000.0)  # 1 m pixels, north up
    near = box(1050, 1940, 1058, 1950)  # clear, but within 15 m of the cloud
    far = box(1010, 1940, 1020, 1950)  # clear and 40 m from it
    violations = [
        TruthViolation(name, "building", onset_epoch=1, area_m2=80.0, geometry=geometry)
        for name, geometry in (("near", near), ("far", far))
    ]
    pair = evaluate_world._pair_detections((), (0, 1), clear, (transform, "EPSG:32651"), violations)
    # By the cloud mask alone both are wholly clear; the detector keeps 15 m from cloud.
    assert evaluate_world.clear_fractions(clear, transform, {"near": near}) == {
        "near": pytest.approx(1.0)
    }
    assert pair.clear_fraction == {"near": pytest.approx(0.0), "far": pytest.approx(1.0)}


def test_a_folder_that_is_not_a_world_is_refused_with_what_to_give(tmp_path: Path):
    result = runner.invoke(app, ["evaluate", "world", str(tmp_path), "--no-cameras"])
    assert result.exit_code == 2
    assert "world.json" in result.output and "tianxun simulate" in result.output


@pytest.mark.slow
def test_the_previous_epoch_as_reference_scores_the_same_pairs(world_dir: Path):
    arguments = ["evaluate", "world", str(world_dir), "--no-cameras", "--reference", "previous"]
    result = runner.invoke(app, [*arguments, "--json"])
    assert result.exit_code == 0, result.output
    rs = json.loads(result.output)["remote_sensing"]
    assert rs["reference"] == "previous"
    assert [(p["before_epoch"], p["after_epoch"]) for p in rs["pairs"]] == [(0, 1), (1, 2)]


def test_an_unknown_reference_is_refused_with_the_choices(tmp_path: Path):
    result = runner.invoke(
        app, ["evaluate", "world", str(tmp_path), "--no-cameras", "--reference", "best"]
    )
    assert result.exit_code == 2
    assert "last-clear" in result.output and "previous" in result.output
