"""Backfills over a small simulated world: cases found and dated, resumable, idempotent."""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from shapely.geometry import shape
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from models import AlertEvent, BackfillRun, BackfillUnit, Case, CaseEvent, Detection
from models.backfill import BackfillUnitStatus
from scripts.cli import app
from tests.conftest import migrate
from tests.service.backfill.conftest import Loaded, World, request_for
from tests.service.backfill.killer import KillOnUnitStart


class StopAfter:
    """Stops a run (as a kill would) once `units` work units are written."""

    def __init__(self, units: int) -> None:
        self.units = units
        self.written = 0

    def planned(self, units: int, pending: int, pending_pixels: int) -> None:
        pass

    def unit_written(self, pixels: int) -> None:
        self.written += 1
        if self.written >= self.units:
            raise KeyboardInterrupt("stopped by the test")

    def note(self, text: str) -> None:
        pass


def _counts(loaded: Loaded) -> dict[str, int]:
    with Session(loaded.engine) as session:
        return {
            model.__name__: session.scalar(select(func.count()).select_from(model)) or 0
            for model in (Detection, Case, CaseEvent, AlertEvent, BackfillRun, BackfillUnit)
        }


def _found_with_onset(world: World, loaded: Loaded) -> list[str]:
    """Injected violations that a case covers, with its onset within one epoch of the truth."""
    dates = [date.fromisoformat(epoch["date"]) for epoch in world.meta["epochs"]]
    truth = json.loads((world.folder / "truth" / "violations.geojson").read_text())["features"]
    with Session(loaded.engine) as session:
        cases = list(session.scalars(select(Case)))
    found = []
    for feature in truth:
        props = feature["properties"]
        if props["in_approved"] or props["epoch"] < 1:
            continue
        outline = shape(feature["geometry"])
        for case in cases:
            dated = case.onset_likeliest or case.onset_before
            if dated is None or not case.geom.intersects(outline):
                continue
            epoch = max(i for i, d in enumerate(dates) if d <= dated.date())
            if abs(epoch - props["epoch"]) <= 1:
                found.append(props["id"])
                break
    return found


@pytest.mark.slow
def test_backfill_writes_backfill_cases_dated_and_a_rerun_adds_nothing(
    world: World, fresh_db_url: str, tmp_path: Path, client: Any
) -> None:
    loaded = Loaded(fresh_db_url, tmp_path / "data", world)
    summary = loaded.backfill(request_for(world), client)

    epochs = len(world.meta["epochs"])
    assert summary["units_done"] == epochs - 1 and summary["units_failed"] == 0
    assert summary["cases_new"] > 0
    assert summary["problems"] == []
    assert _found_with_onset(world, loaded), "no injected violation found with its onset"
    with Session(loaded.engine) as session:
        assert all(session.scalars(select(Detection.backfill)))
        assert all(session.scalars(select(Case.backfill)))
        # Backfill cases raise no live alerts: their outbox rows are marked for the feeds to skip.
        assert session.scalars(select(AlertEvent.backfill)).all()
        assert all(session.scalars(select(AlertEvent.backfill)))
        traced = session.scalars(select(CaseEvent).where(CaseEvent.action == "onset_traced"))
        assert traced.first() is not None
        run = session.scalars(select(BackfillRun)).one()
        assert run.detector_version and run.parameters and run.layer_versions
        assert len(run.scene_ids) == epochs

    before = _counts(loaded)
    again = loaded.backfill(request_for(world), client)
    assert _counts(loaded) == before
    assert again["run_id"] == summary["run_id"] and again["units_done"] == epochs - 1

    # A case whose onset an older trace left undated is dated again only when asked to.
    dated = _forget_one_onset(loaded)
    loaded.backfill(request_for(world), client)
    assert _onset_of(loaded, dated[0]) == (None, None, None)
    loaded.backfill(request_for(world), client, retrace=True)
    assert _onset_of(loaded, dated[0]) == dated[1:]
    assert _counts(loaded)["Detection"] == before["Detection"]
    assert _counts(loaded)["Case"] == before["Case"]
    loaded.engine.dispose()


def _forget_one_onset(loaded: Loaded) -> tuple[int, object, object, object]:
    with Session(loaded.engine) as session, session.begin():
        case = session.scalars(select(Case).where(Case.onset_after.is_not(None))).first()
        assert case is not None
        dated = (case.id, case.onset_after, case.onset_before, case.onset_likeliest)
        case.onset_after = case.onset_before = case.onset_likeliest = None
    return dated


def _onset_of(loaded: Loaded, case_id: int) -> tuple[object, object, object]:
    with Session(loaded.engine) as session:
        case = session.get(Case, case_id)
        assert case is not None
        return case.onset_after, case.onset_before, case.onset_likeliest


@pytest.mark.slow
def test_alert_flag_publishes_backfill_alerts_live(
    world: World, tmp_path: Path, client: Any
) -> None:
    url = f"sqlite:///{tmp_path / 'alert.db'}"
    migrate(url)
    loaded = Loaded(url, tmp_path / "data", world)
    loaded.backfill(request_for(world, alert=True), client)
    with Session(loaded.engine) as session:
        flags = session.scalars(select(AlertEvent.backfill)).all()
    assert flags and not any(flags)
    loaded.engine.dispose()


@pytest.mark.slow
def test_stopped_backfill_continues_to_the_uninterrupted_result(
    world: World, tmp_path: Path, client: Any, uninterrupted: dict
) -> None:
    url = f"sqlite:///{tmp_path / 'stopped.db'}"
    migrate(url)
    loaded = Loaded(url, tmp_path / "data", world)
    with pytest.raises(KeyboardInterrupt):
        loaded.backfill(request_for(world), client, observer=StopAfter(1))
    with Session(loaded.engine) as session:
        statuses = session.scalars(select(BackfillUnit.status)).all()
    assert statuses.count(BackfillUnitStatus.done) == 1
    assert statuses.count(BackfillUnitStatus.pending) == len(statuses) - 1

    summary = loaded.backfill(request_for(world), client)
    assert summary["units_pending"] == 0 and summary["status"] == "done"
    assert loaded.outcome() == uninterrupted
    loaded.engine.dispose()


@pytest.mark.slow
def test_a_killed_worker_does_not_change_the_result(
    world: World, tmp_path: Path, client: Any, uninterrupted: dict
) -> None:
    url = f"sqlite:///{tmp_path / 'killed.db'}"
    migrate(url)
    loaded = Loaded(url, tmp_path / "data", world)
    folder = tmp_path / "kill"
    client.register_plugin(KillOnUnitStart(folder))
    try:
        summary = loaded.backfill(request_for(world), client)
    finally:
        client.unregister_worker_plugin(KillOnUnitStart.name)
    killed = json.loads((folder / "killed").read_text())
    assert "-unit-" in killed["key"]  # killed while computing a unit, not between units
    # The worker is gone (a worker still being replaced is skipped, not waited for).
    assert killed["pid"] not in client.run(os.getpid, on_error="ignore").values()
    assert summary["units_pending"] == 0 and summary["units_failed"] == 0
    assert loaded.outcome() == uninterrupted
    loaded.engine.dispose()


@pytest.mark.slow
def test_trace_command_dates_a_case_again_and_prints_its_bracket(
    world: World, tmp_path: Path, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'trace.db'}"
    migrate(url)
    loaded = Loaded(url, tmp_path / "data", world)
    loaded.backfill(request_for(world), client)
    case_id, *dated = _forget_one_onset(loaded)
    monkeypatch.setenv("TIANXUN_DATABASE_URL", url)
    monkeypatch.setenv("TIANXUN_DATA_DIR", str(tmp_path / "data"))

    result = CliRunner().invoke(app, ["trace", str(case_id)])

    assert result.exit_code == 0, result.output
    after, before, likeliest = dated
    assert _onset_of(loaded, case_id) == (after, before, likeliest)
    assert result.output.strip() == (
        f"case {case_id}: last clearly unchanged {after:%Y-%m-%d}, "
        f"first visible {before:%Y-%m-%d}, likeliest onset {likeliest:%Y-%m-%d}"
    )
    missing = CliRunner().invoke(app, ["trace", "999999"])
    assert missing.exit_code != 0 and "no such case: [999999]" in missing.output
    loaded.engine.dispose()
