"""Backfills over a small simulated world: cases found and dated, resumable, idempotent."""

from __future__ import annotations

import json
import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from shapely.geometry import shape
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from models import AlertEvent, BackfillRun, BackfillUnit, Case, CaseEvent, Detection
from models.backfill import BackfillUnitStatus
from models.case import CaseStatus
from scripts.cli import app
from service.backfill.run import BackfillRequest
from tests.service.backfill.conftest import Loaded, World, request_for
from tests.service.backfill.killer import KillOnUnitStart
from tests.service.cases.moves import transition_case


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
    loaded = Loaded.fresh(world, tmp_path, "alert")
    loaded.backfill(request_for(world, alert=True), client)
    with Session(loaded.engine) as session:
        flags = session.scalars(select(AlertEvent.backfill)).all()
    assert flags and not any(flags)
    loaded.engine.dispose()


@pytest.mark.slow
def test_stopped_backfill_continues_to_the_uninterrupted_result(
    world: World, tmp_path: Path, client: Any, uninterrupted: dict
) -> None:
    loaded = Loaded.fresh(world, tmp_path, "stopped")
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
    loaded = Loaded.fresh(world, tmp_path, "killed")
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
    loaded = Loaded.fresh(world, tmp_path, "trace")
    loaded.backfill(request_for(world), client)
    case_id, *dated = _forget_one_onset(loaded)
    for name, value in loaded.cli_env.items():
        monkeypatch.setenv(name, value)

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


def _into_rectification(loaded: Loaded) -> int:
    """The first-sighted case moved along the workflow into rectification the day after it
    was first seen, so that the world's later dates come after rectification began."""
    with Session(loaded.engine) as session, session.begin():
        case = session.scalars(select(Case).order_by(Case.first_seen_at, Case.id)).first()
        assert case is not None
        path = (
            CaseStatus.dispatched,
            CaseStatus.verifying,
            CaseStatus.confirmed,
            CaseStatus.rectifying,
        )
        for status in path:
            transition_case(
                case,
                status,
                session=session,
                settings=loaded.settings,
                actor="inspector-7",
                role="inspector",
                at=case.first_seen_at + timedelta(days=1),
            )
        return case.id


def _rectification_events(loaded: Loaded, case_id: int) -> list[str]:
    with Session(loaded.engine) as session:
        actions = session.scalars(select(CaseEvent.action).where(CaseEvent.case_id == case_id))
        return [a for a in actions if a.startswith("rectification_")]


@pytest.mark.slow
def test_trace_command_checks_cases_in_rectification_against_later_imagery(
    world: World, tmp_path: Path, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = Loaded.fresh(world, tmp_path, "rectify")
    loaded.backfill(request_for(world), client)
    case_id = _into_rectification(loaded)
    for name, value in loaded.cli_env.items():
        monkeypatch.setenv(name, value)

    first = CliRunner().invoke(app, ["trace", "--rectifying"])

    assert first.exit_code == 0, first.output
    [line] = [x for x in first.output.splitlines() if x.startswith(f"case {case_id}:")]
    verdict = line.rsplit("rectification: ", 1)[1].replace(" ", "_")
    assert verdict in {"observed", "still_present", "not_observed"}
    assert _rectification_events(loaded, case_id) == [f"rectification_{verdict}"]
    again = CliRunner().invoke(app, ["trace", "--rectifying"])
    assert again.exit_code == 0, again.output
    assert _rectification_events(loaded, case_id) == [f"rectification_{verdict}"]
    loaded.engine.dispose()


def _diff(*runs: int) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["backfill", "diff", *(str(r) for r in runs)])
    return result.exit_code, result.output


@pytest.mark.slow
def test_backfill_diff_tells_two_runs_apart_by_inputs_and_findings(
    world: World, tmp_path: Path, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = Loaded.fresh(world, tmp_path, "diff")
    whole = loaded.backfill(request_for(world), client)
    later = BackfillRequest(
        area=request_for(world).area,
        since=datetime(2025, 6, 1, tzinfo=UTC),
        until=datetime(2025, 12, 31, 23, 59, tzinfo=UTC),
        source=str(world.products),
    )
    part = loaded.backfill(later, client)
    for name, value in loaded.cli_env.items():
        monkeypatch.setenv(name, value)

    code, output = _diff(whole["run_id"], part["run_id"])

    assert code == 0, output
    report = json.loads(output)
    assert report["runs"] == [whole["run_id"], part["run_id"]]
    scenes = report["settings"]["scene_ids"]
    assert set(scenes["b"]) < set(scenes["a"])  # the later run left out the early dates
    # The later run's pairs are among the whole run's: all it found, the whole run found too.
    assert report["only_in_b"] == []
    assert report["matched"] + len(report["only_in_a"]) == report["detections"][0]
    # Found only by the whole run: the detections of the pairs ending on a date the later
    # run compared nothing with (each run's first date is only a "before").
    ends_a, ends_b = set(scenes["a"][1:]), set(scenes["b"][1:])
    assert {d["scene_id"] for d in report["only_in_a"]} == ends_a - ends_b
    code, output = _diff(whole["run_id"], whole["run_id"])
    same = json.loads(output)
    assert code == 0 and same["settings"] == {} and same["only_in_a"] == same["only_in_b"] == []
    code, output = _diff(whole["run_id"], 999)
    assert code == 2 and "backfill run 999 does not exist" in output
    loaded.engine.dispose()
