"""Query values the database cannot take, or that name nothing, get a 422 problem, never a 500."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from models.client import Role
from service.alerts.stream import parse_last_event_id
from service.errors import InvalidInputError
from service.main import create_app
from tests.service.alerts.conftest import LiveDb, live_settings

BIGINT_MAX = 2**63 - 1


def test_alert_polling_refuses_an_id_past_bigint(live_db: LiveDb) -> None:
    _, key = live_db.add_client(Role.admin)
    with TestClient(create_app(live_settings(live_db))) as http:
        headers = {"Authorization": f"Bearer {key}"}
        past = http.get("/v1/alerts", params={"after": BIGINT_MAX + 1}, headers=headers)
        last = http.get("/v1/alerts", params={"after": BIGINT_MAX}, headers=headers)
    assert past.status_code == 422, past.text
    assert past.headers["content-type"] == "application/problem+json"
    assert last.status_code == 200, last.text
    assert last.json()["items"] == []


@pytest.mark.parametrize(
    "params",
    [
        {"jurisdiction": "A\x00B"},  # PostgreSQL text cannot hold NUL
        {"type": "case_vanished"},  # no such event type
        {"layer": "false"},  # no such layer kind
    ],
)
def test_alert_polling_refuses_values_that_cannot_match(
    live_db: LiveDb, params: dict[str, str]
) -> None:
    _, key = live_db.add_client(Role.admin)
    with TestClient(create_app(live_settings(live_db))) as http:
        response = http.get("/v1/alerts", params=params, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("value", [str(BIGINT_MAX + 1), "²", "12a", "-1"])
def test_a_last_event_id_that_is_no_outbox_id_is_refused(value: str) -> None:
    with pytest.raises(InvalidInputError, match="not an event id"):
        parse_last_event_id(value)


def test_the_largest_outbox_id_is_a_last_event_id() -> None:
    assert parse_last_event_id(f" {BIGINT_MAX} ") == BIGINT_MAX
