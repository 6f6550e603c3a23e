"""The live alert stream: Server-Sent Events with `id:` = outbox id and replay after a reconnect.

Each connection polls the outbox (cheap: an index range scan on the primary key), so the
stream works unchanged with several uvicorn workers and on SQLite. Events are read only up to
the outbox horizon (see `feed.py`), which is what makes a replay from `Last-Event-ID` deliver
every missed event exactly once and in order: no id below one already sent can still appear.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio
from sqlalchemy.orm import Session, sessionmaker
from sse_starlette import ServerSentEvent

from service.alerts.feed import OutboxHorizon, ResolvedFilter, latest_event_id, read_events
from service.alerts.schemas import AlertEventRead
from service.auth import Principal
from service.db import transaction
from service.errors import InvalidInputError
from service.rls import apply_machine_scope, apply_scope

BATCH = 500
RECONNECT_MILLISECONDS = 2_000


def parse_last_event_id(value: str | None) -> int | None:
    """The replay cursor from `Last-Event-ID` (or `?after=`); None when absent."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    # ASCII digits only ("²" is a digit to str.isdigit but not to int), within a BIGINT.
    if not (text.isascii() and text.isdigit()) or int(text) > 2**63 - 1:
        raise InvalidInputError(
            f"Last-Event-ID {value!r} is not an event id: send the `id:` of the last event "
            "received, or leave it out to start with new events"
        )
    return int(text)


@dataclass
class OutboxReader:
    """One subscriber's position in the outbox; `poll` runs in a worker thread."""

    sessions: sessionmaker[Session]
    principal: Principal
    resolved: ResolvedFilter
    horizon: OutboxHorizon
    cursor: int

    @classmethod
    def starting_at(
        cls,
        cursor: int | None,
        *,
        sessions: sessionmaker[Session],
        principal: Principal,
        resolved: ResolvedFilter,
        max_gap_wait_seconds: float,
    ) -> OutboxReader:
        if cursor is None:
            # A new subscriber starts with what happens next, not with the history.
            with transaction(sessions) as session:
                apply_machine_scope(session)  # only the newest id is read
                cursor = latest_event_id(session=session)
        horizon = OutboxHorizon(settled=cursor, max_gap_wait_seconds=max_gap_wait_seconds)
        return cls(sessions, principal, resolved, horizon, cursor)

    def poll(self, *, limit: int = BATCH) -> list[AlertEventRead]:
        """The next visible events after the cursor, at most `limit`, in id order."""
        with transaction(self.sessions) as session:
            apply_machine_scope(session)  # only ids are read to find the horizon
            upto = self.horizon.advance(session=session)
        if upto <= self.cursor:
            return []
        with transaction(self.sessions) as session:
            apply_scope(session, self.principal)
            events, self.cursor = read_events(
                self.principal,
                self.resolved,
                session=session,
                after_id=self.cursor,
                upto_id=upto,
                limit=limit,
            )
            return [AlertEventRead.of(event) for event in events]


async def alert_events(
    reader: OutboxReader, *, poll_seconds: float
) -> AsyncIterator[ServerSentEvent]:
    """SSE messages for `reader`, for as long as the client stays connected."""
    yield ServerSentEvent(comment="tianxun alert stream", retry=RECONNECT_MILLISECONDS)
    while True:
        before = reader.cursor
        events = await anyio.to_thread.run_sync(reader.poll)
        for event in events:
            yield ServerSentEvent(data=event.model_dump_json(), event=event.type, id=str(event.id))
        if reader.cursor - before < BATCH:
            # Caught up: wait for the next poll. Behind (a long replay): read on at once.
            await anyio.sleep(poll_seconds)
