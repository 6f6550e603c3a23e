"""What the alert feeds and webhook endpoints read and return."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from models import AlertEvent, WebhookDelivery, WebhookSubscription
from models.alert import DeliveryStatus
from service.alerts.feed import EventFilter


class AlertEventRead(BaseModel):
    """One outbox event as feeds carry it (the SSE `data:` and the webhook body's `data`)."""

    id: int
    type: str
    case_id: int | None
    camera_id: int | None
    jurisdiction_id: int | None
    priority: int
    backfill: bool
    created_at: datetime
    payload: dict[str, Any]

    @classmethod
    def of(cls, event: AlertEvent) -> AlertEventRead:
        return cls(
            id=event.id,
            type=event.event_type,
            case_id=event.case_id,
            camera_id=event.camera_id,
            jurisdiction_id=event.jurisdiction_id,
            priority=event.priority,
            backfill=event.backfill,
            created_at=event.created_at,
            payload=dict(event.payload),
        )


class AlertPage(BaseModel):
    items: list[AlertEventRead]
    next_after: int = Field(description="Pass as `after` to read on; also a valid Last-Event-ID.")


class EventFilterFields(BaseModel):
    """Filters shared by the live stream and webhook subscriptions."""

    model_config = ConfigDict(extra="forbid")

    jurisdiction: list[str] = Field(default_factory=list, description="Jurisdiction codes.")
    priority_min: int | None = Field(None, ge=0, le=100)
    types: list[str] = Field(default_factory=list, description="Event types, e.g. case_created.")
    layers: list[str] = Field(default_factory=list, description="Layer kinds the case hit.")
    include_backfill: bool = Field(False, description="Also events of backfill-created cases.")

    def to_filter(self) -> EventFilter:
        return EventFilter(
            jurisdiction_codes=frozenset(self.jurisdiction),
            priority_min=self.priority_min,
            types=frozenset(self.types),
            layers=frozenset(self.layers),
            include_backfill=self.include_backfill,
        )


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2000, description="An http(s) URL that receives POSTs.")
    filters: EventFilterFields = EventFilterFields()  # pydantic copies defaults


class WebhookRead(BaseModel):
    id: int
    url: str
    filters: dict[str, Any]
    active: bool
    disabled_reason: str | None
    last_event_id: int
    secret_count: int = Field(description="Secrets that currently sign (2 while rotating).")
    created_at: datetime

    @classmethod
    def of(cls, sub: WebhookSubscription) -> WebhookRead:
        return cls(
            id=sub.id,
            url=sub.url,
            filters=dict(sub.filters),
            active=sub.active,
            disabled_reason=sub.disabled_reason,
            last_event_id=sub.last_event_id,
            secret_count=len(sub.secrets),
            created_at=sub.created_at,
        )


class WebhookSecretRead(BaseModel):
    """Returned once, at creation and at rotation: the secret is not shown again."""

    subscription: WebhookRead
    secret: str = Field(description="Standard Webhooks secret (whsec_…) to verify signatures.")


class DeliveryRead(BaseModel):
    id: int
    event_id: int
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None

    @classmethod
    def of(cls, delivery: WebhookDelivery) -> DeliveryRead:
        return cls.model_validate(delivery, from_attributes=True)
