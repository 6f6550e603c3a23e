"""`tianxun evaluate backfill` on a small simulated world: backfilled from scratch, scored."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from shapely.geometry import box, shape
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from detection.world_score import TruthViolation
from models.case import Case
from scripts.cli import app
from scripts.evaluate_backfill import detector_clear_fractions
from simulator import WorldParams, generate_world

runner = CliRunner()


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("evaluate_backfill") / "world"
    generate_world(WorldParams(seed=3, area_km2=1.0, epochs=4, cameras=0), out, workers=1)
    return out


def scoreable_truth(world_dir: Path) -> dict[str, dict]:
    features = json.loads((world_dir / "truth" / "violations.geojson").read_text())["features"]
    return {
        f["properties"]["id"]: f
        for f in features
        if not f["properties"]["in_approved"] and f["properties"]["epoch"] >= 1
    }


@pytest.mark.slow
def test_every_violation_is_scored_against_the_cases_the_backfill_wrote(
    world_dir: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    options = ["--work-dir", str(work), "--workers", "1", "--json"]
    result = runner.invoke(app, ["evaluate", "backfill", str(world_dir), *options])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["summary"]["units_done"] == 3 and report["summary"]["units_failed"] == 0

    score = report["score"]
    truth = scoreable_truth(world_dir)
    rows = {row["id"]: row for row in score["violations_detail"]}
    assert rows.keys() == truth.keys() and score["violations_scored"] == len(truth)
    # This world holds a violation the backfill finds and dates (as its own tests show).
    assert score["onset_within_one_epoch"] >= 1
    assert score["found_with_onset_share"] == round(score["onset_within_one_epoch"] / len(truth), 3)
    assert sum(score["missed_by_reason"].values()) == len(truth) - score["onset_within_one_epoch"]

    engine = create_engine(f"sqlite:///{work / 'backfill.db'}")
    with Session(engine) as session:
        cases = {c.code: c for c in session.scalars(select(Case))}
    engine.dispose()
    assert score["cases"] == len(cases)
    for violation_id, row in rows.items():
        outline = shape(truth[violation_id]["geometry"])
        touching = [c for c in cases.values() if c.geom.intersects(outline)]
        assert row["cases_touching"] == len(touching)
        if row["case"] is None:
            assert not touching and row["missed_because"]
            continue
        first = min(c.onset_before for c in touching if c.onset_before is not None)
        assert cases[row["case"]].onset_before == first
        parts = cases[row["case"]].onset_parts
        if parts:  # dated by one of its case's places
            dated = {
                (_day(p["first_visible"]), _day(p["likeliest_onset"] or p["first_visible"]))
                for p in parts
            }
            assert (row["first_visible"], row["likeliest_onset"]) in dated
            continue
        assert row["first_visible"] == first.date().isoformat()
        likeliest = cases[row["case"]].onset_likeliest or first
        assert row["likeliest_onset"] == likeliest.date().isoformat()


def _day(iso: str | None) -> str | None:
    return iso[:10] if iso else None


@pytest.mark.slow
def test_a_folder_that_is_no_world_is_refused_with_what_to_give(tmp_path: Path) -> None:
    result = runner.invoke(app, ["evaluate", "backfill", str(tmp_path)])
    assert result.exit_code == 2
    assert "tianxun simulate --out" in result.output


def _product(path: Path, clear: np.ndarray) -> None:
    """A delivered 1 m tile: four bands of flat ground and `clear` as the alpha band."""
    rows, cols = clear.shape
    profile = {"driver": "GTiff", "width": cols, "height": rows, "count": 5, "dtype": "uint16"}
    transform = from_origin(500_000, 4_000_100, 1, 1)
    with rasterio.open(path, "w", crs="EPSG:32650", transform=transform, **profile) as tile:
        tile.write(np.full((4, rows, cols), 1000, dtype=np.uint16), [1, 2, 3, 4])
        tile.write(np.where(clear, 255, 0).astype(np.uint16), 5)


def _square(row: int, col: int, side: int = 10) -> box:
    """`side` × `side` pixels from (row, col) of the tiles of `_product`, in their CRS."""
    return box(500_000 + col, 4_000_100 - row - side, 500_000 + col + side, 4_000_100 - row)


def test_a_violation_is_seen_only_where_the_detector_compares_it(tmp_path: Path) -> None:
    # "near": clear on epoch 1, but a cloud 5 px beside it, well within the detector's 15 m.
    # "unseen_before": clear on epoch 1, but under cloud on epoch 0, the only earlier date:
    # the detector has no look to compare epoch 1 with there.
    near = TruthViolation("near", "building", 1, 100.0, _square(60, 60))
    unseen_before = TruthViolation("unseen_before", "building", 1, 100.0, _square(10, 10))
    clear = [np.ones((100, 100), dtype=bool) for _ in range(3)]
    clear[0][5:26, 5:26] = False
    clear[1][50:80, 75:82] = False
    epochs = []
    for index, mask in enumerate(clear):
        _product(tmp_path / f"e{index}.tif", mask)
        epochs.append({"index": index, "tile": f"tiles/e{index}.tif"})

    fractions = detector_clear_fractions({"epochs": epochs}, tmp_path, [near, unseen_before])

    assert fractions[1] == {"near": 0.0, "unseen_before": 0.0}
    assert fractions[2] == {"near": 1.0, "unseen_before": 1.0}
