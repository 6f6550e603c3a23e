"""`tianxun clients ...` and `tianxun audit verify` against a real database."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import delete, select, update
from typer.testing import CliRunner, Result

from models import CaseEvent
from models.case import CaseStatus
from scripts.cli import app
from service.db import transaction
from tests.service.api.conftest import World


@pytest.fixture
def run(world: World, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TIANXUN_DATABASE_URL", world.url)

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(app, list(args))

    return invoke


def test_clients_create_prints_a_working_key_once_and_rotate_replaces_it(world: World, run) -> None:  # type: ignore[no-untyped-def]
    name = f"cli-inspector-{uuid.uuid4().hex[:6]}"
    created = run(
        "clients", "create", name, "--role", "inspector", "--jurisdiction", world.codes["A1"]
    )
    assert created.exit_code == 0, created.output
    world.names[name] = name  # cleaned up with the world
    key = next(line for line in created.output.splitlines() if line.startswith("tx_"))
    assert world.http.get("/v1/cases", headers={"X-API-Key": key}).status_code == 200

    rotated = run("clients", "rotate", name)
    assert rotated.exit_code == 0, rotated.output
    new_key = next(line for line in rotated.output.splitlines() if line.startswith("tx_"))
    assert new_key != key
    world.http.app.state.principal_cache.clear()  # type: ignore[attr-defined]  # as its TTL would
    assert world.http.get("/v1/cases", headers={"X-API-Key": key}).status_code == 401
    assert world.http.get("/v1/cases", headers={"X-API-Key": new_key}).status_code == 200


def test_clients_create_refuses_an_unknown_jurisdiction(run) -> None:  # type: ignore[no-untyped-def]
    result = run("clients", "create", "nobody", "--role", "inspector", "--jurisdiction", "NOPE")
    assert result.exit_code == 2
    assert "unknown jurisdiction code(s): NOPE" in result.output


def _case_with_history(world: World) -> int:
    case_id = world.add_case(status=CaseStatus.verifying)
    for text in ("arrived on site", "photos taken"):
        response = world.http.post(
            f"/v1/cases/{case_id}/comments", json={"text": text}, headers=world.auth("inspector_a")
        )
        assert response.status_code == 201
    return case_id


def test_audit_verify_passes_an_untouched_history(world: World, run) -> None:  # type: ignore[no-untyped-def]
    case_id = _case_with_history(world)
    result = run("audit", "verify", "--case", str(case_id))
    assert result.exit_code == 0, result.output
    assert "1 case histories: 0 broken" in result.output


def test_audit_verify_reports_an_event_changed_in_the_database(world: World, run) -> None:  # type: ignore[no-untyped-def]
    case_id = _case_with_history(world)
    with transaction(world.factory) as session:
        session.execute(
            update(CaseEvent)
            .where(CaseEvent.case_id == case_id, CaseEvent.seq == 2)
            .values(actor="someone-else")
        )
    result = run("audit", "verify", "--case", str(case_id))
    assert result.exit_code == 1
    assert f"case {case_id}: BROKEN at event seq 2" in result.output
    assert "altered" in result.output
    everything = run("audit", "verify")
    assert everything.exit_code == 1 and f"case {case_id}: BROKEN" in everything.output


def test_audit_verify_reports_a_removed_event(world: World, run) -> None:  # type: ignore[no-untyped-def]
    case_id = _case_with_history(world)
    with transaction(world.factory) as session:
        session.execute(delete(CaseEvent).where(CaseEvent.case_id == case_id, CaseEvent.seq == 2))
        left = list(session.scalars(select(CaseEvent.seq).where(CaseEvent.case_id == case_id)))
    assert left == [1, 3]
    result = run("audit", "verify", "--case", str(case_id))
    assert result.exit_code == 1
    assert "missing" in result.output
