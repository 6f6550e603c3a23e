"""The webhook and alert endpoints over HTTP: secrets shown once, SSRF refusals, ownership."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from fastapi.testclient import TestClient
from shapely.geometry import MultiPolygon, Polygon

from models import Case
from models.client import Role
from service.alerts.outbox import AlertType, record_alert
from service.db import transaction
from service.main import create_app
from tests.service.alerts.conftest import LiveDb, live_settings


@pytest.fixture
def api(live_db: LiveDb) -> Iterator[TestClient]:
    with TestClient(create_app(live_settings(live_db))) as client:
        yield client


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_a_webhook_is_created_with_its_secret_shown_once(live_db: LiveDb, api: TestClient) -> None:
    _, key = live_db.add_client(Role.admin)
    created = api.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/h"}, headers=auth(key))
    assert created.status_code == 201, created.text
    assert created.json()["secret"].startswith("whsec_")
    listed = api.get("/v1/webhooks", headers=auth(key)).json()
    assert [w["id"] for w in listed] == [created.json()["subscription"]["id"]]
    assert "secret" not in listed[0] and listed[0]["secret_count"] == 1

    webhook_id = listed[0]["id"]
    rotated = api.post(f"/v1/webhooks/{webhook_id}/rotate-secret", headers=auth(key)).json()
    assert rotated["secret"] != created.json()["secret"]
    assert rotated["subscription"]["secret_count"] == 2
    disabled = api.post(f"/v1/webhooks/{webhook_id}/disable", headers=auth(key)).json()
    assert disabled["active"] is False and "disabled by" in disabled["disabled_reason"]


def test_a_webhook_to_a_private_address_is_refused(live_db: LiveDb, api: TestClient) -> None:
    _, key = live_db.add_client(Role.admin)
    response = api.post("/v1/webhooks", json={"url": "http://10.0.0.5/h"}, headers=auth(key))
    assert response.status_code == 422
    assert "internal address" in response.json()["detail"]


def test_another_clients_webhook_cannot_be_seen_or_changed(
    live_db: LiveDb, api: TestClient
) -> None:
    _, code = live_db.add_jurisdiction("west")
    _, owner = live_db.add_client(Role.monitor, [code])
    _, other = live_db.add_client(Role.monitor, [code])
    created = api.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/h"}, headers=auth(owner))
    webhook_id = created.json()["subscription"]["id"]
    assert api.get("/v1/webhooks", headers=auth(other)).json() == []
    for path in ("disable", "rotate-secret"):
        response = api.post(f"/v1/webhooks/{webhook_id}/{path}", headers=auth(other))
        assert response.status_code == 404
    assert api.get(f"/v1/webhooks/{webhook_id}/deliveries", headers=auth(other)).status_code == 404


def test_unknown_filter_fields_and_foreign_jurisdictions_are_refused(
    live_db: LiveDb, api: TestClient
) -> None:
    _, west = live_db.add_jurisdiction("west")
    _, east = live_db.add_jurisdiction("east")
    _, key = live_db.add_client(Role.monitor, [west])
    body = {"url": "http://127.0.0.1:9/h", "filters": {"jurisdiction": [east]}}
    response = api.post("/v1/webhooks", json=body, headers=auth(key))
    assert response.status_code == 422 and east in response.json()["detail"]
    body = {"url": "http://127.0.0.1:9/h", "filters": {"priority": 5}}
    assert api.post("/v1/webhooks", json=body, headers=auth(key)).status_code == 422


def test_the_alert_page_reads_on_from_an_id(live_db: LiveDb, api: TestClient) -> None:
    _, key = live_db.add_client(Role.admin)
    start = live_db.add_event()
    later = [live_db.add_event("case_updated") for _ in range(3)]
    page = api.get(f"/v1/alerts?after={start}&limit=2", headers=auth(key)).json()
    assert [e["id"] for e in page["items"]] == later[:2]
    rest = api.get(f"/v1/alerts?after={page['next_after']}", headers=auth(key)).json()
    assert [e["id"] for e in rest["items"]] == later[2:]


def test_a_case_cap_of_an_unknown_case_is_a_problem_not_a_crash(
    live_db: LiveDb, api: TestClient
) -> None:
    _, key = live_db.add_client(Role.admin)
    response = api.get("/v1/cases/987654.cap", headers=auth(key))
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")


def test_a_case_cap_and_the_atom_feed_are_served_as_cap_xml(
    live_db: LiveDb, api: TestClient
) -> None:
    _, key = live_db.add_client(Role.admin)
    seen = datetime(2024, 6, 1, tzinfo=UTC)
    plot = Polygon([(120.1, 30.2), (120.101, 30.2), (120.101, 30.2008), (120.1, 30.2008)])
    with transaction(live_db.sessions) as session:
        case = Case(
            code=f"TX-{uuid4().hex[:8]}", first_seen_at=seen, last_seen_at=seen,
            geom=MultiPolygon([plot]), priority=50,
        )  # fmt: skip
        session.add(case)
        session.flush()
        record_alert(case, session=session, event_type=AlertType.case_created, reason="new")
        case_id = case.id
    response = api.get(f"/v1/cases/{case_id}.cap", headers=auth(key))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/cap+xml")
    assert "<msgType>Alert</msgType>" in response.text
    assert "30.2,120.1 " in response.text  # latitude first
    feed = api.get("/v1/alerts/cap.atom", headers=auth(key))
    assert feed.headers["content-type"].startswith("application/atom+xml")
    assert f"/v1/cases/{case_id}.cap" in feed.text
