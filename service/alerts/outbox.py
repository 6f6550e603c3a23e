"""The alert outbox: one row per case change, written in the same transaction as the change."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy import ScalarSelect, func, insert, select
from sqlalchemy.orm import Session

from models import AlertEvent, Case, Detection, LayerHit
from models.base import table_of

#: A `Session.info` key: a batch that sets it decides whether the alerts it causes are backfill
#: (hidden from the live feeds) or live, whatever their case's origin. A backfill that extends a
#: live case must not page anyone; a backfill run with `--alert` must.
ALERT_BACKFILL = "tianxun.alert_backfill"


class AlertType(StrEnum):
    case_created = "case_created"
    case_updated = "case_updated"  # outline grown or confidence raised
    case_reopened = "case_reopened"  # a rebound over a rectified or closed case
    case_status_changed = "case_status_changed"
    case_dismissed = "case_dismissed"
    case_closed = "case_closed"


def record_alert(
    case: Case,
    *,
    session: Session,
    event_type: AlertType,
    reason: str,
    details: dict[str, Any] | None = None,
) -> AlertEvent:
    """Add the outbox row for a change to `case`; flushes so the row has its sequence id.

    The id is the feed's replay cursor: it comes from the database (an autoincrement that
    SQLite never reuses, a sequence on PostgreSQL), so it only grows. Because the row is part
    of the caller's transaction, a rolled-back change leaves no alert behind.
    """
    session.flush()
    alert = AlertEvent(**_alert_fields(case, session, event_type, reason, details))
    session.add(alert)
    session.flush()
    return alert


def insert_alert(
    case: Case,
    *,
    session: Session,
    event_type: AlertType,
    reason: str,
    details: dict[str, Any] | None = None,
    layers: list[str] | None = None,
) -> None:
    """`record_alert` as one INSERT statement, without an ORM object (the API's transitions).

    The case's own changes must already be in the database. `layers`, when the caller read
    them with the case (`layer_kinds_column`), spares a query."""
    fields = _alert_fields(case, session, event_type, reason, details, layers)
    session.execute(_INSERT_ALERT, fields)


# Values go in as parameters, not into the statement: built once, compiled once.
_INSERT_ALERT = insert(table_of(AlertEvent))


def _alert_fields(
    case: Case,
    session: Session,
    event_type: AlertType,
    reason: str,
    details: dict[str, Any] | None,
    layers: list[str] | None = None,
) -> dict[str, Any]:
    if layers is None:
        layers = _layer_kinds(case, session=session)
    backfill = bool(session.info.get(ALERT_BACKFILL, case.backfill))
    return alert_row(
        case, event_type=event_type, reason=reason, layers=layers, backfill=backfill,
        bounds=case.geom.bounds, details=details,
    )  # fmt: skip


def alert_row(
    case: Any,
    *,
    event_type: AlertType,
    reason: str,
    layers: list[str],
    backfill: bool,
    bounds: tuple[float, float, float, float],
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The outbox row's columns for a change to `case` (a `Case`, or any object with its
    columns as attributes, such as a transition's claim), the outline's `bounds` given."""
    return {
        "event_type": event_type.value,
        "case_id": case.id,
        "jurisdiction_id": case.jurisdiction_id,
        "priority": case.priority,
        "backfill": backfill,
        "payload": _case_summary(case, bounds)
        | {"layers": layers, "reason": reason}
        | (details or {}),
    }


def _layer_kinds(case: Case, *, session: Session) -> list[str]:
    """The legal layers the case's detections hit, for the feeds' layer filter."""
    hits = (
        select(LayerHit.layer_kind)
        .join(Detection, Detection.id == LayerHit.detection_id)
        .where(Detection.case_id == case.id)
        .distinct()
    )
    return sorted(session.scalars(hits))


def layer_kinds_column() -> ScalarSelect[str | None]:
    """The legal layers the case's detections hit, as one comma-joined string (or NULL),
    correlated to the `case` row of the query it is put in; `layer_kinds_of` reads it.

    For a query that reads the case anyway (a transition's claim), so the outbox row needs
    no query of its own."""
    return (
        select(func.aggregate_strings(LayerHit.layer_kind, ","))
        .join(Detection, Detection.id == LayerHit.detection_id)
        .where(Detection.case_id == Case.id)
        .scalar_subquery()
    )


def layer_kinds_of(joined: str | None) -> list[str]:
    """`layer_kinds_column`'s value as the sorted, distinct kinds `_layer_kinds` gives."""
    return sorted(set(joined.split(","))) if joined else []


def _case_summary(case: Any, bounds: tuple[float, float, float, float]) -> dict[str, Any]:
    minx, miny, maxx, maxy = bounds
    return {
        "code": case.code,
        "status": str(case.status),
        "case_version": case.version,
        "confidence": round(case.confidence, 4),
        "confidence_level": str(case.confidence_level),
        "area_m2": round(case.area_m2, 2),
        "change_types": list(case.change_types),
        "sources": list(case.sources),
        "bbox": [minx, miny, maxx, maxy],
        "last_seen_at": case.last_seen_at.isoformat(),
        "escalated": case.escalated,
    }
