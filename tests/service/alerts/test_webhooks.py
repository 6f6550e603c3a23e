"""Signed webhooks against a real receiver on 127.0.0.1: order, retries, 410, dead letters."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import make_url, select
from sqlalchemy.exc import OperationalError
from standardwebhooks import Webhook, WebhookVerificationError

from models import ApiClient, WebhookDelivery, WebhookSubscription
from models.alert import DeliveryStatus
from models.client import Role
from service.alerts.delivery import WebhookDeliverer
from service.alerts.feed import EventFilter
from service.alerts.ssrf import parse_networks
from service.alerts.webhooks import (
    RetryPolicy,
    create_subscription,
    enable_subscription,
    redeliver,
    rotate_secret,
)
from service.auth import Principal, principal_for
from service.db import create_db_engine, transaction
from service.settings import Settings
from tests.service.alerts.conftest import LiveDb, live_settings
from tests.service.alerts.receiver import Receiver

LOOPBACK = parse_networks(["127.0.0.0/8"])


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    receiver.start()
    yield receiver
    receiver.stop()


class Subscriber:
    def __init__(self, db: LiveDb, url: str) -> None:
        self.db = db
        client_id, _ = db.add_client(Role.admin)
        with transaction(db.sessions) as session:
            self.principal: Principal = principal_for(
                session.get_one(ApiClient, client_id), session=session
            )
            subscription, self.secret = create_subscription(
                self.principal, url, EventFilter(), session=session, allowed_networks=LOOPBACK
            )
            self.id = subscription.id

    def state(self) -> WebhookSubscription:
        with self.db.sessions() as session:
            return session.get_one(WebhookSubscription, self.id)

    def deliveries(self) -> list[WebhookDelivery]:
        with self.db.sessions() as session:
            statement = select(WebhookDelivery).where(WebhookDelivery.subscription_id == self.id)
            return list(session.scalars(statement.order_by(WebhookDelivery.event_id)))


def running_deliverer(db: LiveDb, settings: Settings) -> Iterator[WebhookDeliverer]:
    deliverer = WebhookDeliverer(settings, engine=db.engine)
    stop = threading.Event()
    thread = threading.Thread(target=deliverer.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield deliverer
    finally:
        stop.set()
        thread.join(timeout=10)
        deliverer.http.close()


@pytest.fixture
def deliverer(live_db: LiveDb) -> Iterator[WebhookDeliverer]:
    yield from running_deliverer(live_db, live_settings(live_db))


def wait_until(condition: Callable[[], Any], *, seconds: float = 20.0) -> None:
    """Poll the database until `condition()` holds (state, not an event, so it is polled)."""
    deadline = time.monotonic() + seconds
    pause = threading.Event()
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        pause.wait(0.02)


def verified(request: Any, secret: str) -> bool:
    try:
        Webhook(secret).verify(request.body, request.headers)
    except WebhookVerificationError:
        return False
    return True


@pytest.mark.usefixtures("deliverer")
def test_every_event_arrives_in_order_and_signed_through_errors_and_downtime(
    live_db: LiveDb, receiver: Receiver
) -> None:
    subscriber = Subscriber(live_db, receiver.url)
    receiver.answers.extend([500, 500, 500])  # a receiver in trouble at first
    events = [live_db.add_event(priority=i) for i in range(3)]
    receiver.wait_for(lambda r: len(r.delivered()) >= 1)

    receiver.stop()  # ...then down for a while, while events keep coming
    events += [live_db.add_event(priority=i) for i in range(3, 6)]

    def refused_twice() -> bool:
        return any(d.attempts >= 2 and "ConnectError" in (d.last_error or "")
                   for d in subscriber.deliveries())  # fmt: skip

    wait_until(refused_twice)  # two attempts failed to connect
    receiver.start()
    receiver.wait_for(lambda r: len(r.delivered()) >= len(events))

    delivered = receiver.delivered()
    assert [r.event_id for r in delivered] == events  # every event, once, in order
    assert all(verified(r, subscriber.secret) for r in delivered)
    assert [r.status for r in receiver.requests[:3]] == [500, 500, 500]
    assert {r.event_id for r in receiver.requests[:4]} == {events[0]}  # retried before moving on
    assert delivered[0].headers["webhook-id"] == f"evt_{events[0]}"
    wait_until(lambda: all(d.status == DeliveryStatus.delivered for d in subscriber.deliveries()))
    assert not verified(delivered[0], "whsec_" + "A" * 43)  # a wrong secret fails


@pytest.mark.usefixtures("deliverer")
def test_a_410_gone_disables_the_subscription_and_says_why(
    live_db: LiveDb, receiver: Receiver
) -> None:
    subscriber = Subscriber(live_db, receiver.url)
    receiver.default_status = 410
    gone = live_db.add_event()
    wait_until(lambda: not subscriber.state().active)
    later = live_db.add_event()
    reason = subscriber.state().disabled_reason or ""
    assert "410 Gone" in reason and str(gone) in reason
    assert [r.event_id for r in receiver.requests] == [gone]  # no retry, nothing after
    assert later not in {d.event_id for d in subscriber.deliveries()}

    receiver.default_status = 200  # the receiver is back: resume where it stopped, in order
    with transaction(live_db.sessions) as session:
        enable_subscription(
            subscriber.id, subscriber.principal, session=session, allowed_networks=LOOPBACK
        )
    receiver.wait_for(lambda r: len(r.delivered()) == 2)
    assert [r.event_id for r in receiver.delivered()] == [gone, later]


@pytest.mark.usefixtures("deliverer")
def test_while_a_secret_is_rotated_both_the_new_and_the_previous_one_verify(
    live_db: LiveDb, receiver: Receiver
) -> None:
    subscriber = Subscriber(live_db, receiver.url)
    with transaction(live_db.sessions) as session:
        _, new_secret = rotate_secret(subscriber.id, subscriber.principal, session=session)
    live_db.add_event()
    receiver.wait_for(lambda r: len(r.delivered()) == 1)
    request = receiver.delivered()[0]
    assert verified(request, new_secret) and verified(request, subscriber.secret)
    assert len(request.headers["webhook-signature"].split(" ")) == 2


def test_a_delivery_out_of_retries_is_a_dead_letter_that_can_be_redelivered(
    live_db: LiveDb, receiver: Receiver
) -> None:
    settings = live_settings(
        live_db, webhook_retry_base_seconds=0.01, webhook_retry_max_seconds=0.02,
        webhook_retry_window_seconds=0.03,
    )  # fmt: skip
    attempts = RetryPolicy.from_settings(settings).max_attempts
    subscriber = Subscriber(live_db, receiver.url)
    receiver.answers.extend([503] * attempts)
    for _ in running_deliverer(live_db, settings):
        dead = live_db.add_event()
        after = live_db.add_event()
        receiver.wait_for(lambda r: len(r.delivered()) == 1)
        by_event = {d.event_id: d for d in subscriber.deliveries()}
        assert by_event[dead].status == DeliveryStatus.dead
        assert by_event[dead].attempts == attempts and "HTTP 503" in (
            by_event[dead].last_error or ""
        )
        assert [r.event_id for r in receiver.delivered()] == [after]  # the queue moved on

        with transaction(live_db.sessions) as session:
            delivery = redeliver(
                subscriber.id, by_event[dead].id, subscriber.principal, session=session
            )
            assert delivery.status == DeliveryStatus.pending
        receiver.wait_for(lambda r: len(r.delivered()) == 2)
    assert [r.event_id for r in receiver.delivered()] == [after, dead]


def test_retries_back_off_with_jitter_for_a_day() -> None:
    policy = RetryPolicy.from_settings(Settings())
    nominal = [policy.nominal_delay(n) for n in range(1, policy.max_attempts)]
    assert nominal == sorted(nominal) and nominal[0] == 5.0 and nominal[-1] == 3600.0
    assert 24 * 3600 <= sum(nominal) < 25 * 3600
    for attempt in (1, 5, 20):
        delays = {policy.delay(attempt) for _ in range(50)}
        full = policy.nominal_delay(attempt)
        assert all(full / 2 <= d <= full for d in delays) and len(delays) > 1


def test_an_idle_round_without_subscriptions_takes_no_write_lock(
    live_db: LiveDb, receiver: Receiver
) -> None:
    if live_db.engine.dialect.name != "sqlite":
        pytest.skip("the write lock in question is SQLite's")
    impatient = create_db_engine(live_db.url, busy_timeout_ms=200)
    deliverer = WebhookDeliverer(live_settings(live_db), engine=impatient)
    # Another writer holds the lock: any write by the deliverer fails with "database is locked".
    holder = sqlite3.connect(make_url(live_db.url).database or "", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        assert deliverer.run_once() == 0
        holder.execute("ROLLBACK")
        Subscriber(live_db, receiver.url)
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(OperationalError, match="locked"):
            deliverer.run_once()  # with a subscriber, a round does write
        holder.execute("ROLLBACK")
    finally:
        holder.close()
        deliverer.http.close()
        impatient.dispose()
