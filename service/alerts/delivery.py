"""The webhook delivery loop: queue new events per subscription, post them in order, record.

One round: (1) fan-out turns outbox events up to the horizon into delivery rows for every
active subscription whose filters and scope they pass; (2) for each subscription whose oldest
pending delivery is due, that delivery and the ones queued behind it are leased as a batch;
(3) batches are posted concurrently, but each in event order and only until its first failure,
so a receiver sees its events in order; (4) outcomes are recorded: delivered, retried later
with backoff, disabled on `410 Gone`, or a dead letter once the retry window is spent. A
process that dies mid-post leaves a lease that expires, and the delivery is tried again (at
least once; receivers drop repeats by `webhook-id`).

`WebhookSubscription.last_event_id` is the fan-out cursor: every event up to it has been
queued for the subscription or did not match its filters.
"""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import structlog
from sqlalchemy import Engine, Select, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, aliased

from models import AlertEvent, ApiClient, WebhookDelivery, WebhookSubscription
from models.alert import DeliveryStatus
from models.base import utcnow
from service.alerts.feed import (
    EventFilter,
    OutboxHorizon,
    latest_event_id,
    read_events,
    resolve_filter,
)
from service.alerts.ssrf import UnsafeTargetError, check_target, parse_networks
from service.alerts.webhooks import RetryPolicy, delivery_body, message_id, signed_headers
from service.auth import principal_for
from service.db import create_db_engine, machine_session_factory, transaction
from service.errors import InvalidInputError
from service.queue import claim_session_factory
from service.settings import Settings

log = structlog.get_logger("tianxun.webhooks")
FAN_OUT_BATCH = 1_000
BATCH = 20  # deliveries posted in a row to one subscription per round
LEASE_MARGIN_SECONDS = 30.0


@dataclass(frozen=True)
class Claim:
    delivery_id: int
    subscription_id: int
    event_id: int
    attempt: int
    url: str
    secrets: list[str]
    body: str
    lease_until: datetime  # the claim holds the delivery while its next_attempt_at is this


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str | None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class WebhookDeliverer:
    """Runs delivery rounds against one database; `run()` blocks until `stop` is set."""

    def __init__(
        self,
        settings: Settings,
        *,
        engine: Engine | None = None,
        http: httpx.Client | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine or create_db_engine(
            settings.database_url, busy_timeout_ms=settings.sqlite_busy_timeout_ms
        )
        self.sessions = machine_session_factory(self.engine)  # delivers every subscriber's events
        self.claims = claim_session_factory(self.engine)
        self.http = http or httpx.Client(
            timeout=settings.webhook_timeout_seconds, follow_redirects=False
        )
        self.policy = RetryPolicy.from_settings(settings)
        self.allowed_networks = parse_networks(settings.webhook_allowed_networks)
        self.rng = rng or random.Random()
        self.horizon: OutboxHorizon | None = None

    def run(self, stop: threading.Event) -> None:
        log.info("webhook delivery started", max_attempts=self.policy.max_attempts)
        while not stop.is_set():
            try:
                attempted = self.run_once()
            except SQLAlchemyError as error:
                # Database restarting or locked: try again after a poll interval.
                log.warning("delivery round failed", error=str(error).splitlines()[0])
                attempted = 0
            except Exception:  # a bug in one round must not stop delivery for everyone
                log.exception("delivery round failed")
                attempted = 0
            if attempted == 0:
                stop.wait(self.settings.webhook_poll_seconds)
        log.info("webhook delivery stopped")

    def run_once(self) -> int:
        """One round; returns how many deliveries were attempted."""
        if not self.has_subscribers():
            return 0
        self.fan_out()
        batches = self.claim_due()
        if not batches:
            return 0
        workers = min(self.settings.webhook_concurrency, len(batches))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="webhook") as pool:
            outcomes = list(pool.map(self.post_in_order, batches))
        for batch, batch_outcomes in zip(batches, outcomes, strict=True):
            self.record(batch, batch_outcomes)
        return sum(len(o) for o in outcomes)

    def has_subscribers(self) -> bool:
        """Whether any subscription is active. Only a read: every worker runs this loop, and on
        SQLite an idle round must not take the write lock a few times a second for nothing."""
        with self.sessions() as session:
            active = select(WebhookSubscription.id).where(WebhookSubscription.active).limit(1)
            return session.scalar(active) is not None

    def fan_out(self) -> int:
        """Queue events up to the outbox horizon for every active subscription."""
        with transaction(self.claims) as session:
            horizon = self._horizon(session).advance(session=session)
            statement = select(WebhookSubscription).where(
                WebhookSubscription.active, WebhookSubscription.last_event_id < horizon
            )
            if session.get_bind().dialect.name == "postgresql":
                statement = statement.with_for_update(skip_locked=True)
            queued = 0
            for subscription in session.scalars(statement):
                queued += _fan_out_one(subscription, horizon, session=session)
            return queued

    def _horizon(self, session: Session) -> OutboxHorizon:
        if self.horizon is None:
            # Ids up to the lowest cursor were settled when the cursor moved past them.
            lowest = session.scalar(
                select(func.min(WebhookSubscription.last_event_id)).where(
                    WebhookSubscription.active
                )
            )
            start = latest_event_id(session=session) if lowest is None else int(lowest)
            self.horizon = OutboxHorizon(
                settled=start, max_gap_wait_seconds=self.settings.alert_gap_max_wait_seconds
            )
        return self.horizon

    def claim_due(self) -> list[list[Claim]]:
        """Lease, per active subscription whose oldest pending delivery is due, that delivery
        and the ones queued after it (in event order): one batch per subscription."""
        now = utcnow()
        lease_until = now + timedelta(
            seconds=self.settings.webhook_timeout_seconds * BATCH + LEASE_MARGIN_SECONDS
        )
        with transaction(self.claims) as session:
            batches = []
            for subscription, head_event_id in session.execute(self._due_heads(now, session)):
                batch = session.scalars(
                    select(WebhookDelivery)
                    .where(
                        WebhookDelivery.subscription_id == subscription.id,
                        WebhookDelivery.status == DeliveryStatus.pending,
                        WebhookDelivery.event_id >= head_event_id,
                    )
                    .order_by(WebhookDelivery.event_id)
                    .limit(BATCH)
                ).all()
                batches.append([self._lease(d, subscription, lease_until, session) for d in batch])
            return batches

    def _due_heads(self, now: datetime, session: Session) -> Select[WebhookSubscription, int]:
        earlier = aliased(WebhookDelivery)
        head = (
            select(func.min(earlier.event_id))
            .where(
                earlier.subscription_id == WebhookDelivery.subscription_id,
                earlier.status == DeliveryStatus.pending,
            )
            .scalar_subquery()
        )
        statement = (
            select(WebhookSubscription, WebhookDelivery.event_id)
            .join(WebhookSubscription, WebhookSubscription.id == WebhookDelivery.subscription_id)
            .where(
                WebhookSubscription.active,
                WebhookDelivery.status == DeliveryStatus.pending,
                WebhookDelivery.next_attempt_at <= now,
                WebhookDelivery.event_id == head,
            )
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(self.settings.webhook_concurrency * 4)
        )
        if session.get_bind().dialect.name == "postgresql":
            # Another deliverer working on a subscription keeps it: skip, never wait.
            statement = statement.with_for_update(of=WebhookSubscription, skip_locked=True)
        return statement

    @staticmethod
    def _lease(
        delivery: WebhookDelivery,
        subscription: WebhookSubscription,
        lease_until: datetime,
        session: Session,
    ) -> Claim:
        delivery.next_attempt_at = lease_until
        event = session.get_one(AlertEvent, delivery.event_id)
        return Claim(
            delivery.id, subscription.id, event.id, delivery.attempts + 1,
            subscription.url, list(subscription.secrets), delivery_body(event), lease_until,
        )  # fmt: skip

    def post_in_order(self, batch: list[Claim]) -> list[Outcome]:
        """Post one subscription's batch in order, stopping at the first failure."""
        outcomes: list[Outcome] = []
        for claim in batch:
            outcomes.append(self.post(claim))
            if not outcomes[-1].delivered:
                break
        return outcomes

    def post(self, claim: Claim) -> Outcome:
        """One signed POST; never raises for what the receiver or the network does."""
        try:
            check_target(claim.url, allowed_networks=self.allowed_networks)
        except UnsafeTargetError as error:
            return Outcome(None, f"refused: {error}")
        headers = signed_headers(
            claim.secrets, msg_id=message_id(claim.event_id), timestamp=utcnow(), body=claim.body
        )
        try:
            response = self.http.post(claim.url, content=claim.body.encode(), headers=headers)
        except httpx.HTTPError as error:
            return Outcome(None, f"{type(error).__name__}: {error}"[:1000])
        if 200 <= response.status_code < 300:
            return Outcome(response.status_code, None)
        return Outcome(response.status_code, f"HTTP {response.status_code}: {response.text[:500]}")

    def record(self, batch: list[Claim], outcomes: list[Outcome]) -> None:
        """Store what happened; deliveries of the batch not attempted go back to the queue."""
        now = utcnow()
        with transaction(self.claims) as session:
            for index, claim in enumerate(batch):
                delivery = session.get_one(WebhookDelivery, claim.delivery_id)
                if (
                    delivery.status != DeliveryStatus.pending
                    or delivery.next_attempt_at != claim.lease_until
                ):
                    continue  # the lease ran out and another round took the delivery over
                if index >= len(outcomes):
                    delivery.next_attempt_at = now
                    continue
                subscription = session.get_one(WebhookSubscription, claim.subscription_id)
                _apply_outcome(delivery, subscription, outcomes[index], self.policy, self.rng)
        for claim, outcome in zip(batch, outcomes, strict=False):
            log.info(
                "webhook attempt",
                subscription=claim.subscription_id,
                event_id=claim.event_id,
                attempt=claim.attempt,
                status=outcome.status_code,
                error=outcome.error,
            )


def _fan_out_one(subscription: WebhookSubscription, horizon: int, *, session: Session) -> int:
    client = session.get_one(ApiClient, subscription.client_id)
    if not client.active:
        _disable(subscription, "the API client that owns this webhook was deactivated")
        return 0
    principal = principal_for(client, session=session)
    try:
        resolved = resolve_filter(
            principal, EventFilter.from_json(subscription.filters), session=session
        )
    except InvalidInputError as error:
        _disable(subscription, f"its filters no longer apply: {error}")
        return 0
    events, cursor = read_events(
        principal,
        resolved,
        session=session,
        after_id=subscription.last_event_id,
        upto_id=horizon,
        limit=FAN_OUT_BATCH,
    )
    now = utcnow()
    for event in events:
        session.add(
            WebhookDelivery(subscription_id=subscription.id, event_id=event.id, next_attempt_at=now)
        )
    subscription.last_event_id = cursor
    session.flush()
    return len(events)


def _apply_outcome(
    delivery: WebhookDelivery,
    subscription: WebhookSubscription,
    outcome: Outcome,
    policy: RetryPolicy,
    rng: random.Random,
) -> None:
    now = utcnow()
    delivery.attempts += 1
    delivery.last_status_code = outcome.status_code
    delivery.last_error = outcome.error
    if outcome.delivered:
        delivery.status = DeliveryStatus.delivered
        delivery.delivered_at = now
    elif outcome.status_code == 410:
        # The receiver says it is gone for good: stop, keep the delivery queued for a new start.
        _disable(
            subscription,
            f"the receiver answered 410 Gone at {now.isoformat()} to event {delivery.event_id}",
        )
        delivery.next_attempt_at = now
    elif delivery.attempts >= policy.max_attempts:
        delivery.status = DeliveryStatus.dead
    else:
        delivery.next_attempt_at = now + timedelta(seconds=policy.delay(delivery.attempts, rng))


def _disable(subscription: WebhookSubscription, reason: str) -> None:
    subscription.active = False
    subscription.disabled_reason = reason
    log.warning("webhook disabled", subscription=subscription.id, reason=reason)


def run_until_signalled(settings: Settings) -> None:
    """`tianxun webhooks deliver`: deliver in the foreground until SIGTERM or SIGINT."""
    import signal

    from service.logging import configure_logging

    configure_logging(level=settings.log_level, json=settings.log_json)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    deliverer = WebhookDeliverer(settings)
    try:
        deliverer.run(stop)
    finally:
        deliverer.http.close()
        deliverer.engine.dispose()


def register(app: Any) -> None:
    """Add `tianxun webhooks deliver` to the Typer app."""
    import typer

    webhooks_app = typer.Typer(no_args_is_help=True, help="Signed webhook delivery.")

    @webhooks_app.command("deliver")
    def deliver() -> None:
        """Deliver alert events to webhook subscribers until SIGTERM or SIGINT."""
        run_until_signalled(Settings())

    app.add_typer(webhooks_app, name="webhooks")
