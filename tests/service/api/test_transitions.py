"""Transitions, assignment and comments as an inspector or a monitoring centre sees them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from httpx import Response
from sqlalchemy import select
from typer.testing import CliRunner

from models import AlertEvent, Case
from models.case import CaseStatus
from scripts.cli import app
from service.cases.events import verify_chain
from service.cases.transitions import escalate_overdue
from tests.service.api.conftest import SEEN, World

PROBLEM = "application/problem+json"
NOW = datetime(2024, 6, 5, tzinfo=UTC)


def transition(
    world: World, who: str, case_id: int, body: dict[str, Any], if_match: str | None = '"1"'
) -> Response:
    headers = world.auth(who) | ({"If-Match": if_match} if if_match is not None else {})
    return world.http.post(f"/v1/cases/{case_id}/transitions", json=body, headers=headers)


def assert_problem(response: Response, status: int, fragment: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    assert fragment in response.json()["detail"]


def history(world: World, case_id: int) -> list[dict[str, Any]]:
    response = world.http.get(f"/v1/cases/{case_id}", headers=world.auth("admin"))
    events: list[dict[str, Any]] = response.json()["history"]
    return events


def test_a_dismissal_with_a_reason_code_is_recorded_with_before_and_after(world: World) -> None:
    case_id = world.add_case(status=CaseStatus.verifying)
    body = {"to": "dismissed", "reason_code": "farming_activity", "note": "ploughing"}
    headers = world.auth("inspector_a") | {"If-Match": '"1"', "X-Request-ID": "req-dismiss-1"}
    response = world.http.post(f"/v1/cases/{case_id}/transitions", json=body, headers=headers)

    assert response.status_code == 200, response.text
    assert response.headers["etag"] == '"2"'
    case = response.json()
    assert case["status"] == "dismissed" and case["dismissal_reason"] == "farming_activity"
    last = history(world, case_id)[-1]
    assert last["action"] == "transition" and last["request_id"] == "req-dismiss-1"
    assert last["actor"].startswith("inspector_a-") and last["role"] == "inspector"
    assert (last["from_status"], last["to_status"], last["case_version"]) == (
        "verifying",
        "dismissed",
        2,
    )
    assert last["payload"]["before"]["status"] == "verifying"
    assert last["payload"]["after"]["dismissal_reason"] == "farming_activity"
    assert last["payload"]["reason_code"] == "farming_activity"


def test_missing_if_match_is_428_and_a_stale_one_412(world: World) -> None:
    case_id = world.add_case(status=CaseStatus.dispatched)
    assert_problem(
        transition(world, "inspector_a", case_id, {"to": "verifying"}, None), 428, "If-Match"
    )
    assert_problem(
        transition(world, "inspector_a", case_id, {"to": "verifying"}, '"7"'),
        412,
        "at version 1, not 7",
    )
    assert_problem(transition(world, "inspector_a", case_id, {"to": "verifying"}, "1"), 412, "ETag")
    ok = transition(world, "inspector_a", case_id, {"to": "verifying"}, 'W/"1"')
    assert ok.status_code == 200 and ok.json()["version"] == 2
    again = transition(world, "inspector_a", case_id, {"to": "confirmed"}, '"1"')
    assert_problem(again, 412, "GET it again")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"to": "dismissed"}, "a dismissal needs reason_code"),
        ({"to": "dismissed", "reason_code": "looked_fine"}, "reason_code"),
        ({"to": "dismissed", "reason_code": "other"}, "needs a note"),
        ({"to": "confirmed", "reason_code": "duplicate"}, "only for dismissals"),
        ({"to": "confirmed", "priority": 100}, "priority"),
        ({"to": "confirmed", "jurisdiction_id": 1}, "jurisdiction_id"),
        ({"to": "confirmed", "confidence": 1.0}, "confidence"),
        ({"to": "confirmed", "assignee": "someone"}, "assignee"),  # not an inspector's field
        ({}, "say what to change"),
    ],
)
def test_an_inspector_cannot_send_fields_that_are_not_theirs(
    world: World, body: dict[str, Any], fragment: str
) -> None:
    case_id = world.add_case(status=CaseStatus.verifying)
    assert_problem(transition(world, "inspector_a", case_id, body), 422, fragment)
    shown = world.http.get(f"/v1/cases/{case_id}", headers=world.auth("admin")).json()
    assert shown["status"] == "verifying" and shown["version"] == 1 and shown["priority"] == 50


def test_a_move_the_table_forbids_is_409_and_one_the_role_may_not_make_403(world: World) -> None:
    case_id = world.add_case(status=CaseStatus.new)
    assert_problem(
        transition(world, "inspector_a", case_id, {"to": "dispatched"}), 403, "may not move"
    )
    assert_problem(
        transition(world, "monitor", case_id, {"to": "closed"}), 409, "cannot go from new to closed"
    )
    # The table is asked before the assignee is looked up.
    body = {"to": "closed", "assignee": "nobody-by-that-name"}
    assert_problem(transition(world, "monitor", case_id, body), 409, "cannot go from new to closed")


def test_the_centre_dispatches_to_an_inspector_of_that_area_only(world: World) -> None:
    case_id = world.add_case(status=CaseStatus.new)
    names = world.names  # inspector_b holds district B, not this case's township A1
    wrong = transition(
        world, "monitor", case_id, {"to": "dispatched", "assignee": names["inspector_b"]}
    )
    assert_problem(wrong, 422, "does not cover")
    ok = transition(
        world, "monitor", case_id, {"to": "dispatched", "assignee": names["inspector_a"]}
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["assignee"] == names["inspector_a"] and ok.json()["status"] == "dispatched"
    assert ok.json()["due_at"] is not None  # the on-site check deadline from settings
    reassigned = transition(world, "monitor", case_id, {"assignee": names["inspector_a"]}, '"2"')
    assert reassigned.status_code == 200
    assert history(world, case_id)[-1]["action"] == "assigned"


def test_a_reopen_by_the_centre_is_escalated_and_says_why(world: World) -> None:
    case_id = world.add_case(status=CaseStatus.closed)
    assert_problem(transition(world, "monitor", case_id, {"to": "new"}), 422, "needs a note")
    response = transition(world, "monitor", case_id, {"to": "new", "note": "shed is back"})
    assert response.status_code == 200, response.text
    case = response.json()
    assert case["escalated"] and "shed is back" in case["escalation_reason"]
    assert case["reopen_count"] == 1
    assert history(world, case_id)[-1]["action"] == "reopened"


def test_comments_join_the_history_without_changing_the_etag(world: World) -> None:
    case_id = world.add_case(status=CaseStatus.verifying)
    response = world.http.post(
        f"/v1/cases/{case_id}/comments",
        json={"text": "owner says it is a tool shed"},
        headers=world.auth("inspector_a"),
    )
    assert response.status_code == 201, response.text
    assert response.json()["action"] == "comment" and response.json()["seq"] == 2
    shown = world.http.get(f"/v1/cases/{case_id}", headers=world.auth("inspector_a"))
    assert shown.headers["etag"] == '"1"'
    assert shown.json()["history"][-1]["payload"] == {"text": "owner says it is a tool shed"}
    empty = world.http.post(
        f"/v1/cases/{case_id}/comments", json={"text": ""}, headers=world.auth("inspector_a")
    )
    assert empty.status_code == 422


def test_cases_past_their_deadline_are_escalated_once_and_say_why(world: World) -> None:
    late = world.add_case(status=CaseStatus.dispatched, due_at=SEEN + timedelta(hours=24))
    on_time = world.add_case(status=CaseStatus.dispatched, due_at=NOW + timedelta(hours=24))
    finished = world.add_case(status=CaseStatus.dismissed, due_at=SEEN)
    with world.factory() as session, session.begin():
        escalated = escalate_overdue(session=session, now=NOW)
        assert late in escalated and on_time not in escalated and finished not in escalated
        case = session.get(Case, late)
        assert case is not None and case.escalated and case.version == 2
        assert case.escalation_reason is not None
        assert case.escalation_reason.startswith("overdue: still dispatched")
        assert late not in escalate_overdue(session=session, now=NOW)  # once only
        session.rollback()  # the database may be shared: leave other cases alone


def test_the_escalation_job_runs_from_the_command_line(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not world.url.startswith("sqlite"):
        pytest.skip("escalates every overdue case in the database: only on this module's file")
    late = world.add_case(status=CaseStatus.verifying, due_at=SEEN)
    monkeypatch.setenv("TIANXUN_DATABASE_URL", world.url)
    result = CliRunner().invoke(app, ["cases", "escalate-overdue"])
    assert result.exit_code == 0, result.output
    shown = world.http.get(f"/v1/cases/{late}", headers=world.auth("inspector_a")).json()
    assert shown["escalated"] and shown["overdue"]
    assert shown["history"][-1]["action"] == "escalated"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"to": "dismissed"}, "reason_code"),
        ({"to": "dismissed", "reason_code": "looked fine"}, "reason_code"),
    ],
)
def test_a_dismissal_without_a_known_reason_is_refused(
    world: World, body: dict[str, Any], fragment: str
) -> None:
    case_id = world.add_case(status=CaseStatus.verifying)
    response = transition(world, "inspector_a", case_id, body)
    assert_problem(response, 422, fragment)
    assert history(world, case_id)[-1]["action"] != "transition"


def test_status_changes_reach_the_alert_outbox(world: World) -> None:
    case_id = world.add_case(status=CaseStatus.verifying)
    response = transition(
        world, "inspector_a", case_id, {"to": "dismissed", "reason_code": "duplicate"}
    )
    assert response.status_code == 200, response.text

    with world.factory() as session:
        alerts = session.scalars(select(AlertEvent).where(AlertEvent.case_id == case_id)).all()
    assert [a.event_type for a in alerts] == ["case_dismissed"]
    assert alerts[0].payload["status"] == "dismissed"
    assert alerts[0].payload["layers"] == []


def test_what_a_transition_answers_is_what_was_stored(world: World) -> None:
    case_id = world.add_case(status=CaseStatus.closed)
    refused = transition(world, "monitor", case_id, {"to": "dispatched"})
    assert_problem(refused, 409, "cannot go from closed")
    response = transition(world, "monitor", case_id, {"to": "new", "note": "shed is back"})
    assert response.status_code == 200, response.text

    shown = world.http.get(f"/v1/cases/{case_id}", headers=world.auth("admin"))
    stored = shown.json()
    assert shown.headers["etag"] == response.headers["etag"] == '"2"'  # the 409 claimed nothing
    assert {k: stored[k] for k in response.json()} == response.json()
    assert stored["reopen_count"] == 1 and stored["due_at"] is not None
    assert [e["case_version"] for e in stored["history"]] == [1, 2]
    with world.factory() as session:
        assert verify_chain(session, case_id).ok
        alerts = session.scalars(select(AlertEvent).where(AlertEvent.case_id == case_id)).all()
    assert [(a.event_type, a.payload["case_version"]) for a in alerts] == [("case_reopened", 2)]
    assert alerts[0].payload["escalated"] is True
