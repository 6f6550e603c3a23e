"""Reading the outbox: an id that commits after a higher one is neither skipped nor repeated."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from models import AlertEvent
from models.base import utcnow
from models.client import Role
from service.alerts.feed import EventFilter, OutboxHorizon, ResolvedFilter
from service.alerts.stream import OutboxReader
from service.auth import Principal
from tests.service.alerts.conftest import LiveDb

ADMIN = Principal(client_id=0, name="centre", role=Role.admin, jurisdiction_ids=frozenset())
EVERYTHING = ResolvedFilter(EventFilter(), None)


def poll_until(
    reader: OutboxReader, done: Callable[[list[int]], bool], *, seconds: float = 20.0
) -> list[int]:
    """Poll like the stream does until `done(ids so far)`; fails after `seconds`."""
    ids: list[int] = []
    deadline = time.monotonic() + seconds
    pause = threading.Event()
    while not done(ids):
        assert time.monotonic() < deadline, f"gave up waiting; got {ids}"
        ids += [event.id for event in reader.poll()]
        pause.wait(0.02)  # the stream's own poll interval, shortened
    return ids


@pytest.fixture
def reader(live_db: LiveDb) -> OutboxReader:
    return OutboxReader.starting_at(
        None, sessions=live_db.sessions, principal=ADMIN, resolved=EVERYTHING,
        max_gap_wait_seconds=30.0,
    )  # fmt: skip


@pytest.fixture
def slow_writer(live_db: LiveDb) -> Iterator[Session]:
    """A transaction that takes an outbox id and has not committed yet."""
    if live_db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: ids cannot commit out of order there")
    session = Session(live_db.engine)
    session.begin()
    try:
        yield session
    finally:
        session.close()


def test_an_earlier_id_that_commits_later_is_delivered_before_the_later_one(
    live_db: LiveDb, reader: OutboxReader, slow_writer: Session
) -> None:
    slow = AlertEvent(event_type="case_created", payload={})
    slow_writer.add(slow)
    slow_writer.flush()
    fast = live_db.add_event("case_updated")
    assert fast > slow.id
    # The later id is committed, but handing it out now would let the earlier one be skipped.
    assert reader.poll() == []
    slow_writer.commit()
    assert poll_until(reader, lambda ids: len(ids) >= 2) == [slow.id, fast]


def test_a_rolled_back_id_does_not_hold_the_feed_back(
    live_db: LiveDb, reader: OutboxReader, slow_writer: Session
) -> None:
    slow_writer.add(AlertEvent(event_type="case_created", payload={}))
    slow_writer.flush()
    fast = live_db.add_event("case_updated")
    assert reader.poll() == []
    slow_writer.rollback()
    assert poll_until(reader, lambda ids: len(ids) >= 1) == [fast]


def test_a_reader_starting_far_back_passes_old_gaps_at_once(live_db: LiveDb) -> None:
    old = utcnow() - timedelta(hours=1)
    first = live_db.add_event(created_at=old)
    if live_db.engine.dialect.name == "postgresql":
        with live_db.sessions() as session:  # an id taken by a transaction that rolled back
            session.add(AlertEvent(event_type="case_created", payload={}))
            session.flush()
            session.rollback()
        third = live_db.add_event(created_at=old)
    else:  # SQLite rolls its id counter back too: leave the id out by hand
        third = live_db.add_event(id=first + 2, created_at=old)
    assert third == first + 2
    horizon = OutboxHorizon(settled=first - 1, max_gap_wait_seconds=30.0)
    with live_db.sessions() as session:
        assert horizon.advance(session=session) >= third


def test_a_reader_sees_only_matching_events_in_id_order(live_db: LiveDb) -> None:
    wanted_filter = EventFilter(
        types=frozenset({"case_reopened"}), layers=frozenset({"permanent_basic_farmland"})
    )
    start = OutboxReader.starting_at(
        None, sessions=live_db.sessions, principal=ADMIN,
        resolved=ResolvedFilter(wanted_filter, None), max_gap_wait_seconds=30.0,
    )  # fmt: skip
    live_db.add_event("case_reopened", payload={"layers": ["urban_boundary"]})
    wanted = live_db.add_event("case_reopened", payload={"layers": ["permanent_basic_farmland"]})
    live_db.add_event("case_created", payload={"layers": ["permanent_basic_farmland"]})
    last = live_db.add_event("case_reopened", payload={"layers": ["permanent_basic_farmland"]})
    assert poll_until(start, lambda ids: last in ids) == [wanted, last]
