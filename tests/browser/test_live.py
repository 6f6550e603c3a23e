"""Live changes: what one client does to a case reaches another page through the alert feed."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from models import Case
from models.base import utcnow
from service.alerts.outbox import AlertType, record_alert
from service.db import create_db_engine, create_session_factory, transaction
from tests.browser.conftest import LiveService, make_service
from tests.browser.test_one_map import open_case, sign_in
from tests.service.web.world import add_case, build_world


@pytest.fixture(scope="module")
def feed_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    """A world of its own: these tests move cases the other browser tests expect as new."""
    service, stop = make_service(tmp_path_factory.mktemp("feed"), build_world)
    yield service
    stop()


def move(service: LiveService, who: str, case_id: int, to: str) -> None:
    """A transition through the API, as another client of the service would make it."""
    headers = {"Authorization": f"Bearer {service.world.keys[who]}"}
    current = httpx.get(f"{service.url}/v1/cases/{case_id}", headers=headers)
    body = {"to": to} | ({"reason_code": "detector_error"} if to == "dismissed" else {})
    response = httpx.post(
        f"{service.url}/v1/cases/{case_id}/transitions",
        json=body,
        headers=headers | {"If-Match": current.headers["ETag"]},
    )
    assert response.status_code == 200, response.text


def sign_in_live(page: Any, service: LiveService, who: str) -> None:
    sign_in(page, service, who)
    page.wait_for_selector("#live-state[data-state='open']")


def alert_item(case_id: int, status: str) -> str:
    return f"#live-alerts li[data-case-id='{case_id}'][data-status='{status}']"


def settled(page: Any) -> None:
    page.evaluate(
        """() => new Promise((resolve) => {
             window.tianxun.map.once('idle', resolve);
             window.tianxun.map.triggerRepaint();
           })"""
    )


def test_an_inspectors_move_reaches_a_monitors_map_and_open_panel(
    feed_service: LiveService, new_page: Callable[[], Any], tmp_path: Path
) -> None:
    case_id = feed_service.world.case_ids["a1"]
    move(feed_service, "monitor_a", case_id, "dispatched")  # so that the inspector may act
    monitor = new_page()
    sign_in_live(monitor, feed_service, "monitor_a")
    open_case(monitor, case_id)
    assert monitor.locator("#case-status").inner_text() == "dispatched"

    inspector = new_page()
    sign_in_live(inspector, feed_service, "inspector_a")
    open_case(inspector, case_id)
    inspector.click("button[data-to='verifying']")
    inspector.wait_for_selector("#case-panel[data-loaded='true'] #case-status:text-is('verifying')")

    monitor.wait_for_selector(alert_item(case_id, "verifying"))
    properties = monitor.evaluate("(id) => window.tianxun.cases.get(id).properties", case_id)
    assert properties["status"] == "verifying" and properties["live"] is True
    # The monitor's open panel was refreshed with the change, without a click.
    monitor.wait_for_selector("#case-panel[data-loaded='true'] #case-status:text-is('verifying')")
    assert "→ verifying by" in monitor.locator("#case-body").inner_text()
    settled(monitor)
    assert monitor.evaluate("() => window.tianxun.renderedLiveCaseIds()") == [case_id]
    monitor.screenshot(path=str(tmp_path / "monitor-sees-the-move.png"))

    # The inspector's own move comes back through the feed too, but is no news there.
    inspector.wait_for_selector(alert_item(case_id, "verifying"))
    own = inspector.evaluate("(id) => window.tianxun.cases.get(id).properties", case_id)
    assert own["status"] == "verifying" and not own.get("live")


def test_events_missed_while_disconnected_are_replayed_after_reconnecting(
    feed_service: LiveService, new_page: Callable[[], Any]
) -> None:
    first, second = (feed_service.world.case_ids[k] for k in ("a2", "a3"))
    page = new_page()
    sign_in_live(page, feed_service, "monitor_a")
    move(feed_service, "admin", first, "dispatched")
    page.wait_for_selector(alert_item(first, "dispatched"))

    page.evaluate("() => window.tianxun.live.stop()")
    page.wait_for_selector("#live-state[data-state='stopped']")
    move(feed_service, "admin", second, "dismissed")  # while the page is not listening
    page.evaluate("() => window.tianxun.live.start()")

    # A fresh subscription would start after this event; Last-Event-ID brings it back.
    page.wait_for_selector(alert_item(second, "dismissed"))
    assert page.locator(f"#live-alerts li[data-case-id='{first}']").count() == 1  # not twice
    status = page.evaluate("(id) => window.tianxun.cases.get(id).properties.status", second)
    assert status == "dismissed"


def test_a_new_case_appears_on_an_open_map(
    feed_service: LiveService, new_page: Callable[[], Any]
) -> None:
    page = new_page()
    sign_in_live(page, feed_service, "monitor_a")
    before = int(page.locator("#case-count").get_attribute("data-count"))

    engine = create_db_engine(feed_service.settings.database_url)
    with transaction(create_session_factory(engine)) as session:
        district = feed_service.world.jurisdiction_ids["A"]
        new_id = add_case(session, district, 120.02, 30.175, first_seen=utcnow(), priority=90)
        case = session.get_one(Case, new_id)
        record_alert(case, session=session, event_type=AlertType.case_created, reason="test")
    engine.dispose()

    page.wait_for_selector(alert_item(new_id, "new"))
    page.wait_for_selector(f"#case-count[data-count='{before + 1}']")
    point = page.evaluate("(id) => window.tianxun.cases.get(id)", new_id)
    assert point["properties"]["live"] is True and point["properties"]["priority"] == 90
    lon, lat = point["geometry"]["coordinates"]
    assert abs(lon - 120.02) < 1e-6 and abs(lat - 30.175) < 1e-6  # the centre of its outline


STREAM = (
    ": tianxun alert stream\r\nretry: 1500\r\n\r\n"
    'id: 7\r\nevent: case_created\r\ndata: {"a": 1}\r\n\r\n'
    ": ping\n\n"
    "id: 8\nevent: case_closed\ndata: line one\ndata: line two\n\n"
    "data:no space\r\r"
    "id\n\n"
)


def test_the_stream_parser_gives_the_same_events_however_the_text_is_chunked(
    feed_service: LiveService, new_page: Callable[[], Any]
) -> None:
    page = new_page()
    page.goto(f"{feed_service.url}/")
    outcomes = page.evaluate(
        """async (text) => {
             const { SseParser } = await import('/static/live.js');
             const outcomes = [];
             for (let size = 1; size <= text.length; size++) {
               const events = [];
               const parser = new SseParser((event) => events.push(event));
               for (let i = 0; i < text.length; i += size) parser.push(text.slice(i, i + size));
               outcomes.push(JSON.stringify([events, parser.retryMs, parser.lastEventId]));
             }
             return outcomes;
           }""",
        STREAM,
    )
    assert len(outcomes) == len(STREAM) and len(set(outcomes)) == 1
    events, retry_ms, last_id = json.loads(outcomes[0])
    assert events == [
        {"type": "case_created", "data": '{"a": 1}', "id": "7"},
        {"type": "case_closed", "data": "line one\nline two", "id": "8"},
        {"type": "message", "data": "no space", "id": "8"},
    ]
    assert retry_ms == 1500
    assert last_id == ""  # a bare `id` line resets it, as the standard says
