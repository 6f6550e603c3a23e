"""HTTP endpoints of alerts: the live SSE stream, a catch-up page, CAP 1.2 and webhooks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request, Response
from sqlalchemy.orm import Session
from sse_starlette import EventSourceResponse

from models.alert import DeliveryStatus
from models.base import utcnow
from models.layer import LayerKind
from service.alerts import cap, webhooks
from service.alerts.feed import EventFilter, resolve_filter
from service.alerts.outbox import AlertType
from service.alerts.schemas import (
    AlertPage,
    DeliveryRead,
    WebhookCreate,
    WebhookRead,
    WebhookSecretRead,
)
from service.alerts.ssrf import parse_networks
from service.alerts.stream import OutboxReader, alert_events, parse_last_event_id
from service.auth import CaseReader
from service.db import SQLITE_IMMEDIATE
from service.deps import SessionDep, SettingsDep
from service.rls import apply_machine_scope, apply_scope

router = APIRouter(tags=["alerts"])
Id = Annotated[int, Path(ge=1, le=2**63 - 1)]
_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
PROBLEMS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No API key, or not a valid one.", **_PROBLEM},
    403: {"description": "The key's role may not read alerts.", **_PROBLEM},
    404: {"description": "Not found among what the caller may see.", **_PROBLEM},
    409: {"description": "The request conflicts with the current state.", **_PROBLEM},
    422: {"description": "A parameter makes no sense; the detail says which.", **_PROBLEM},
}


def write_session(request: Request, principal: CaseReader) -> Iterator[Session]:
    """A transaction that takes SQLite's write lock up front (the delivery loop writes too)."""
    with request.app.state.session_factory() as session, session.begin():
        session.connection(execution_options=SQLITE_IMMEDIATE)
        apply_machine_scope(session)  # webhook tables are scoped by owner, not jurisdiction
        yield session


WriteSession = Annotated[Session, Depends(write_session, scope="function")]


def event_filter(
    jurisdiction: Annotated[list[str] | None, Query(description="Jurisdiction code.")] = None,
    priority_min: Annotated[int | None, Query(ge=0, le=100)] = None,
    type: Annotated[list[AlertType] | None, Query(description="Event type.")] = None,
    layer: Annotated[list[LayerKind] | None, Query(description="Layer kind the case hit.")] = None,
    include_backfill: bool = False,
) -> EventFilter:
    return EventFilter(
        jurisdiction_codes=frozenset(jurisdiction or ()),
        priority_min=priority_min,
        types=frozenset(str(t) for t in type or ()),
        layers=frozenset(str(k) for k in layer or ()),
        include_backfill=include_backfill,
    )


@router.get("/v1/alerts/stream", responses=PROBLEMS)
def stream_alerts(
    request: Request,
    principal: CaseReader,
    settings: SettingsDep,
    session: SessionDep,
    jurisdiction: Annotated[list[str] | None, Query()] = None,
    priority_min: Annotated[int | None, Query(ge=0, le=100)] = None,
    type: Annotated[list[AlertType] | None, Query()] = None,
    layer: Annotated[list[LayerKind] | None, Query()] = None,
    include_backfill: bool = False,
    after: Annotated[str | None, Query(description="Replay after this event id.")] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> EventSourceResponse:
    """Live alerts as Server-Sent Events (`id:` is the event id); reconnect with
    `Last-Event-ID` to receive every missed event once, in order. Heartbeat comments keep
    proxies from closing an idle stream."""
    filters = event_filter(jurisdiction, priority_min, type, layer, include_backfill)
    resolved = resolve_filter(principal, filters, session=session)
    reader = OutboxReader.starting_at(
        parse_last_event_id(last_event_id if last_event_id is not None else after),
        sessions=request.app.state.session_factory,
        principal=principal,
        resolved=resolved,
        max_gap_wait_seconds=settings.alert_gap_max_wait_seconds,
    )
    events = alert_events(reader, poll_seconds=settings.alert_poll_seconds)
    return EventSourceResponse(events, ping=settings.alert_heartbeat_seconds)


@router.get("/v1/alerts", response_model=AlertPage, responses=PROBLEMS)
def list_alerts(
    request: Request,
    principal: CaseReader,
    settings: SettingsDep,
    session: SessionDep,
    after: Annotated[int, Query(ge=0, le=2**63 - 1, description="Events after this id.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    jurisdiction: Annotated[list[str] | None, Query()] = None,
    priority_min: Annotated[int | None, Query(ge=0, le=100)] = None,
    type: Annotated[list[AlertType] | None, Query()] = None,
    layer: Annotated[list[LayerKind] | None, Query()] = None,
    include_backfill: bool = False,
) -> Any:
    """Alerts after an id, oldest first: the polling twin of the stream."""
    filters = event_filter(jurisdiction, priority_min, type, layer, include_backfill)
    resolved = resolve_filter(principal, filters, session=session)
    reader = OutboxReader.starting_at(
        after,
        sessions=request.app.state.session_factory,
        principal=principal,
        resolved=resolved,
        max_gap_wait_seconds=settings.alert_gap_max_wait_seconds,
    )
    items = reader.poll(limit=limit)
    return AlertPage(items=items, next_after=reader.cursor)


@router.get(
    "/v1/alerts/cap.atom",
    responses=PROBLEMS | {200: {"content": {cap.ATOM_MEDIA_TYPE: {}}}},
    response_class=Response,
)
def cap_feed(
    request: Request,
    principal: CaseReader,
    settings: SettingsDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Response:
    """The newest case alerts as an Atom feed with one CAP 1.2 message per entry."""
    apply_scope(session, principal)
    base = str(request.base_url).rstrip("/")
    entries = cap.feed_entries(
        principal, session=session, sender=settings.cap_sender, base_url=base, limit=limit
    )
    updated = entries[0].event.created_at if entries else utcnow()
    body = cap.atom_feed(entries, feed_url=f"{base}/v1/alerts/cap.atom", updated=updated)
    return Response(body, media_type=cap.ATOM_MEDIA_TYPE)


@router.get(
    "/v1/cases/{case_id}.cap",
    responses=PROBLEMS | {200: {"content": {cap.CAP_MEDIA_TYPE: {}}}},
    response_class=Response,
)
def case_cap(
    case_id: Id, principal: CaseReader, settings: SettingsDep, session: SessionDep
) -> Response:
    """The case's current CAP 1.2 message: Alert, then Update, and Cancel once closed."""
    apply_scope(session, principal)
    body = cap.case_cap_document(case_id, principal, session=session, sender=settings.cap_sender)
    return Response(body, media_type=cap.CAP_MEDIA_TYPE)


@router.post("/v1/webhooks", status_code=201, response_model=WebhookSecretRead, responses=PROBLEMS)
def create_webhook(
    principal: CaseReader,
    settings: SettingsDep,
    session: WriteSession,
    spec: Annotated[WebhookCreate, Body()],
) -> Any:
    """Subscribe a URL to alerts from now on; the signing secret is shown only in this answer."""
    subscription, secret = webhooks.create_subscription(
        principal, spec.url, spec.filters.to_filter(), session=session,
        allowed_networks=parse_networks(settings.webhook_allowed_networks),
    )  # fmt: skip
    return WebhookSecretRead(subscription=WebhookRead.of(subscription), secret=secret)


@router.get("/v1/webhooks", response_model=list[WebhookRead], responses=PROBLEMS)
def list_webhooks(principal: CaseReader, session: SessionDep) -> Any:
    return [WebhookRead.of(s) for s in webhooks.list_subscriptions(principal, session=session)]


@router.post("/v1/webhooks/{webhook_id}/disable", response_model=WebhookRead, responses=PROBLEMS)
def disable_webhook(webhook_id: Id, principal: CaseReader, session: WriteSession) -> Any:
    reason = f"disabled by {principal.name} at {utcnow().isoformat()}"
    subscription = webhooks.disable_subscription(
        webhook_id, principal, session=session, reason=reason
    )
    return WebhookRead.of(subscription)


@router.post("/v1/webhooks/{webhook_id}/enable", response_model=WebhookRead, responses=PROBLEMS)
def enable_webhook(
    webhook_id: Id, principal: CaseReader, settings: SettingsDep, session: WriteSession
) -> Any:
    """Resume a disabled webhook (after a 410, say) where it stopped, in order."""
    subscription = webhooks.enable_subscription(
        webhook_id, principal, session=session,
        allowed_networks=parse_networks(settings.webhook_allowed_networks),
    )  # fmt: skip
    return WebhookRead.of(subscription)


@router.post(
    "/v1/webhooks/{webhook_id}/rotate-secret",
    response_model=WebhookSecretRead,
    responses=PROBLEMS,
)
def rotate_webhook_secret(webhook_id: Id, principal: CaseReader, session: WriteSession) -> Any:
    """A new secret; deliveries carry signatures by it and by the previous one until the next
    rotation, so receivers can switch without missing a message."""
    subscription, secret = webhooks.rotate_secret(webhook_id, principal, session=session)
    return WebhookSecretRead(subscription=WebhookRead.of(subscription), secret=secret)


@router.get(
    "/v1/webhooks/{webhook_id}/deliveries", response_model=list[DeliveryRead], responses=PROBLEMS
)
def list_webhook_deliveries(
    webhook_id: Id,
    principal: CaseReader,
    session: SessionDep,
    status: DeliveryStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Any:
    """Deliveries, newest event first; `status=dead` lists the dead letters."""
    deliveries = webhooks.list_deliveries(
        webhook_id, principal, session=session, status=status, limit=limit
    )
    return [DeliveryRead.of(d) for d in deliveries]


@router.post(
    "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver",
    response_model=DeliveryRead,
    responses=PROBLEMS,
)
def redeliver_webhook(
    webhook_id: Id, delivery_id: Id, principal: CaseReader, session: WriteSession
) -> Any:
    """Queue a dead letter (or a delivered event) again with a fresh retry schedule."""
    delivery = webhooks.redeliver(webhook_id, delivery_id, principal, session=session)
    return DeliveryRead.of(delivery)
