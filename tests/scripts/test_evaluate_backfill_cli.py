"""`tianxun evaluate backfill` on a small simulated world: backfilled from scratch, scored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from shapely.geometry import shape
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from models.case import Case
from scripts.cli import app
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
        assert row["first_visible"] == first.date().isoformat()


@pytest.mark.slow
def test_a_folder_that_is_no_world_is_refused_with_what_to_give(tmp_path: Path) -> None:
    result = runner.invoke(app, ["evaluate", "backfill", str(tmp_path)])
    assert result.exit_code == 2
    assert "tianxun simulate --out" in result.output
