"""Webhook subscriptions (create, list, disable, rotate the secret, redeliver) and their signing.

Deliveries follow Standard Webhooks: headers `webhook-id`, `webhook-timestamp` and
`webhook-signature` (`v1,<base64 HMAC-SHA256 of id.timestamp.body>`), keyed by `whsec_`
secrets. While a secret is rotated both the new and the previous one sign, so receivers can
switch keys without losing a message. The delivery loop itself lives in `delivery.py`.
"""

from __future__ import annotations

import base64
import json
import random
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session
from standardwebhooks import Webhook

from models import AlertEvent, WebhookDelivery, WebhookSubscription
from models.alert import DeliveryStatus
from models.base import utcnow
from service.alerts.feed import EventFilter, latest_event_id, resolve_filter
from service.alerts.schemas import AlertEventRead
from service.alerts.ssrf import IPNetwork, check_target
from service.auth import Principal
from service.errors import ConflictError, NotFoundError
from service.settings import Settings

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
MAX_SUBSCRIPTIONS_PER_CLIENT = 20


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def create_subscription(
    principal: Principal,
    url: str,
    filters: EventFilter,
    *,
    session: Session,
    allowed_networks: tuple[IPNetwork, ...] = (),
) -> tuple[WebhookSubscription, str]:
    """A subscription for events from now on, and its secret (shown once, to the caller)."""
    check_target(url, allowed_networks=allowed_networks)
    resolve_filter(principal, filters, session=session)  # refuses codes outside the caller's reach
    owned = session.scalars(
        select(WebhookSubscription.id).where(
            WebhookSubscription.client_id == principal.client_id, WebhookSubscription.active
        )
    ).all()
    if len(owned) >= MAX_SUBSCRIPTIONS_PER_CLIENT:
        raise ConflictError(
            f"this client has {len(owned)} active webhooks, the most allowed: disable one first"
        )
    secret = new_secret()
    subscription = WebhookSubscription(
        client_id=principal.client_id,
        url=url.strip(),
        secrets=[secret],
        filters=filters.as_json(),
        active=True,
        last_event_id=latest_event_id(session=session),
    )
    session.add(subscription)
    session.flush()
    return subscription, secret


def list_subscriptions(principal: Principal, *, session: Session) -> list[WebhookSubscription]:
    statement = select(WebhookSubscription).order_by(WebhookSubscription.id)
    if not principal.sees_everything:
        statement = statement.where(WebhookSubscription.client_id == principal.client_id)
    return list(session.scalars(statement))


def get_subscription_or_raise(
    subscription_id: int, principal: Principal, *, session: Session
) -> WebhookSubscription:
    """The caller's own subscription (administrators: any); others are reported as absent."""
    subscription = session.get(WebhookSubscription, subscription_id)
    if subscription is None or not (
        principal.sees_everything or subscription.client_id == principal.client_id
    ):
        raise NotFoundError(
            f"no webhook {subscription_id} among yours: list them with GET /v1/webhooks"
        )
    return subscription


def disable_subscription(
    subscription_id: int, principal: Principal, *, session: Session, reason: str
) -> WebhookSubscription:
    subscription = get_subscription_or_raise(subscription_id, principal, session=session)
    subscription.active = False
    subscription.disabled_reason = reason
    session.flush()
    return subscription


def enable_subscription(
    subscription_id: int,
    principal: Principal,
    *,
    session: Session,
    allowed_networks: tuple[IPNetwork, ...] = (),
) -> WebhookSubscription:
    """Resume a disabled subscription where it stopped: queued deliveries go out in order."""
    subscription = get_subscription_or_raise(subscription_id, principal, session=session)
    check_target(subscription.url, allowed_networks=allowed_networks)
    subscription.active = True
    subscription.disabled_reason = None
    session.flush()
    return subscription


def rotate_secret(
    subscription_id: int, principal: Principal, *, session: Session
) -> tuple[WebhookSubscription, str]:
    """A new secret that signs from now on, next to the previous one (older ones are dropped)."""
    subscription = get_subscription_or_raise(subscription_id, principal, session=session)
    secret = new_secret()
    subscription.secrets = [secret, *subscription.secrets[:1]]
    session.flush()
    return subscription, secret


def list_deliveries(
    subscription_id: int,
    principal: Principal,
    *,
    session: Session,
    status: DeliveryStatus | None = None,
    limit: int = 100,
) -> list[WebhookDelivery]:
    """Deliveries of one subscription, newest event first (dead letters with `status=dead`)."""
    get_subscription_or_raise(subscription_id, principal, session=session)
    statement = select(WebhookDelivery).where(WebhookDelivery.subscription_id == subscription_id)
    if status is not None:
        statement = statement.where(WebhookDelivery.status == status)
    return list(session.scalars(statement.order_by(WebhookDelivery.event_id.desc()).limit(limit)))


def redeliver(
    subscription_id: int, delivery_id: int, principal: Principal, *, session: Session
) -> WebhookDelivery:
    """Queue a dead (or delivered) delivery again, with a fresh retry schedule."""
    get_subscription_or_raise(subscription_id, principal, session=session)
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.subscription_id != subscription_id:
        raise NotFoundError(
            f"webhook {subscription_id} has no delivery {delivery_id}: see its deliveries list"
        )
    if delivery.status == DeliveryStatus.pending:
        raise ConflictError(f"delivery {delivery_id} is still queued; it will be tried again")
    delivery.status = DeliveryStatus.pending
    delivery.attempts = 0
    delivery.next_attempt_at = utcnow()
    delivery.last_error = None
    delivery.delivered_at = None
    session.flush()
    return delivery


def message_id(event_id: int) -> str:
    """Stable across retries, so receivers can drop duplicates by `webhook-id`."""
    return f"evt_{event_id}"


def delivery_body(event: AlertEvent) -> str:
    data = AlertEventRead.of(event).model_dump(mode="json")
    body = {"type": event.event_type, "timestamp": data["created_at"], "data": data}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def signed_headers(
    signing_secrets: list[str], *, msg_id: str, timestamp: datetime, body: str
) -> dict[str, str]:
    """Standard Webhooks headers; one `v1,` signature per valid secret, space-separated."""
    signatures = " ".join(Webhook(s).sign(msg_id, timestamp, body) for s in signing_secrets)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signatures,
        "content-type": "application/json",
        "user-agent": "tianxun-webhooks/1",
    }


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter until the nominal delays add up to `window_seconds`."""

    base_seconds: float
    max_seconds: float
    window_seconds: float

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(
            settings.webhook_retry_base_seconds,
            settings.webhook_retry_max_seconds,
            settings.webhook_retry_window_seconds,
        )

    def nominal_delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based), before jitter."""
        return min(self.max_seconds, self.base_seconds * 2.0 ** min(attempt - 1, 60))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        # "Equal jitter": between half and all of the nominal delay, so receivers that come
        # back are not hit by every retry at the same instant, yet backoff still grows.
        nominal = self.nominal_delay(attempt)
        return nominal / 2 + (rng or random).uniform(0, nominal / 2)

    @property
    def max_attempts(self) -> int:
        """Attempts before a delivery becomes a dead letter."""
        attempts, elapsed = 1, 0.0
        while elapsed < self.window_seconds:
            elapsed += self.nominal_delay(attempts)
            attempts += 1
        return attempts
