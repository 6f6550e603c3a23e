"""The SSE stream on a real server: live events, replay after a reconnect, scope and filters."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest

from models.client import Role
from tests.service.alerts.conftest import LiveDb, LiveServer, live_settings, running_server

WAIT_SECONDS = 10.0


@dataclass(frozen=True)
class Message:
    id: int | None
    event: str | None
    data: dict[str, object] | None
    comment: str | None = None


class SseClient:
    """Reads one SSE response line by line; every read is bounded by a deadline."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.iter_lines()

    def next_message(self, *, include_comments: bool = False) -> Message:
        fields: dict[str, str] = {}
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            line = next(self.lines)
            if line.startswith(":"):
                if include_comments and not fields:
                    return Message(None, None, None, comment=line[1:].strip())
                continue
            if line == "":
                if "data" in fields or "id" in fields:
                    return Message(
                        int(fields["id"]) if "id" in fields else None,
                        fields.get("event"),
                        json.loads(fields["data"]) if "data" in fields else None,
                    )
                fields = {}  # a message with only `retry:` or nothing: not an event
                continue
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value
        raise TimeoutError("no SSE message within the deadline")

    def events(self, count: int) -> list[Message]:
        return [self.next_message() for _ in range(count)]


@contextmanager
def sse(
    server: LiveServer, key: str, *, query: str = "", last_id: int | None = None
) -> Iterator[SseClient]:
    headers = {"Authorization": f"Bearer {key}"}
    if last_id is not None:
        headers["Last-Event-ID"] = str(last_id)
    # The read timeout bounds every wait: a missing event fails the test instead of hanging it.
    timeout = httpx.Timeout(WAIT_SECONDS, connect=5.0)
    with (
        httpx.Client(timeout=timeout) as client,
        client.stream(
            "GET", f"{server.base_url}/v1/alerts/stream{query}", headers=headers
        ) as response,
    ):
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = SseClient(response)
        # The opening comment is sent once the stream's cursor is fixed: events after it count.
        assert stream.next_message(include_comments=True).comment == "tianxun alert stream"
        yield stream


@pytest.fixture
def server(live_db: LiveDb) -> Iterator[LiveServer]:
    with running_server(live_settings(live_db, alert_heartbeat_seconds=0.3)) as running:
        yield running


def test_a_client_that_reconnects_with_last_event_id_gets_every_missed_event_once_in_order(
    live_db: LiveDb, server: LiveServer
) -> None:
    _, key = live_db.add_client(Role.admin)
    with sse(server, key) as stream:
        first = [live_db.add_event(priority=i) for i in range(3)]
        received = stream.events(3)
    assert [m.id for m in received] == first
    assert received[0].event == "case_created"
    assert received[0].data is not None and received[0].data["id"] == first[0]

    missed = [live_db.add_event("case_updated", priority=i) for i in range(7)]  # while away
    with sse(server, key, last_id=received[-1].id) as stream:
        replayed = stream.events(len(missed))
        after = live_db.add_event("case_reopened")
        # Exactly once: the next message is the new event, not a repeat of the replay.
        live = stream.next_message()
    assert [m.id for m in replayed] == missed
    assert [m.event for m in replayed] == ["case_updated"] * len(missed)
    assert live.id == after and live.event == "case_reopened"


def test_an_idle_stream_carries_heartbeats(live_db: LiveDb, server: LiveServer) -> None:
    _, key = live_db.add_client(Role.admin)
    with sse(server, key) as stream:
        heartbeat = stream.next_message(include_comments=True)
    assert heartbeat.comment is not None and heartbeat.comment.startswith("ping")


def test_a_monitor_sees_only_its_jurisdiction_and_the_filters_it_asked_for(
    live_db: LiveDb, server: LiveServer
) -> None:
    own_id, own_code = live_db.add_jurisdiction("west")
    other_id, _ = live_db.add_jurisdiction("east")
    _, key = live_db.add_client(Role.monitor, [own_code])
    with sse(server, key, query="?priority_min=50") as stream:
        live_db.add_event(jurisdiction_id=other_id, priority=90)  # another jurisdiction
        live_db.add_event(jurisdiction_id=own_id, priority=10)  # below the filter
        live_db.add_event(jurisdiction_id=own_id, priority=90, backfill=True)  # a backfill
        live_db.add_event(priority=90)  # outside every jurisdiction
        wanted = live_db.add_event(jurisdiction_id=own_id, priority=60)
        message = stream.next_message()
    assert message.id == wanted


def test_a_stream_filtered_to_a_jurisdiction_outside_the_callers_reach_is_refused(
    live_db: LiveDb, server: LiveServer
) -> None:
    _, own_code = live_db.add_jurisdiction("west")
    _, other_code = live_db.add_jurisdiction("east")
    _, key = live_db.add_client(Role.monitor, [own_code])
    response = httpx.get(
        f"{server.base_url}/v1/alerts/stream?jurisdiction={other_code}",
        headers={"Authorization": f"Bearer {key}"},
        timeout=WAIT_SECONDS,
    )
    assert response.status_code == 422
    assert other_code in response.json()["detail"]


def test_a_malformed_last_event_id_is_refused_with_what_to_send(
    live_db: LiveDb, server: LiveServer
) -> None:
    _, key = live_db.add_client(Role.admin)
    response = httpx.get(
        f"{server.base_url}/v1/alerts/stream",
        headers={"Authorization": f"Bearer {key}", "Last-Event-ID": "abc"},
        timeout=WAIT_SECONDS,
    )
    assert response.status_code == 422
    assert "Last-Event-ID" in response.json()["detail"]


def test_the_stream_needs_a_key(live_db: LiveDb, server: LiveServer) -> None:
    response = httpx.get(f"{server.base_url}/v1/alerts/stream", timeout=WAIT_SECONDS)
    assert response.status_code == 401
