"""Reading the alert outbox after an id, with filters and the caller's jurisdiction scope.

Outbox ids only grow, but on PostgreSQL they are handed out when a row is inserted, and
transactions commit in another order: id 7 can become visible after id 8. A reader that
remembers "the last id I saw" would then skip 7 for ever. `OutboxHorizon` therefore tracks the
highest id up to which every id is *settled* (committed, or rolled back and never coming), and
feeds read only up to it. A missing id is settled once every transaction that was running when
the gap was seen has ended (`pg_snapshot_xmin` has passed the `pg_snapshot_xmax` taken then).
SQLite has a single writer that holds its lock from the first write to the commit, so there
ids become visible in order and the horizon is simply the highest id.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import ColumnElement, false, func, select, text, true
from sqlalchemy.orm import Session

from models import AlertEvent, Jurisdiction
from models.base import utcnow
from service.auth import Principal, descendant_ids
from service.errors import InvalidInputError

log = structlog.get_logger("tianxun.alerts")
HORIZON_SCAN_LIMIT = 2_000


@dataclass(frozen=True)
class EventFilter:
    """What a feed narrows events to; empty sets mean "any" (all conditions ANDed)."""

    jurisdiction_codes: frozenset[str] = frozenset()
    priority_min: int | None = None
    types: frozenset[str] = frozenset()
    layers: frozenset[str] = frozenset()
    include_backfill: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "jurisdiction_codes": sorted(self.jurisdiction_codes),
            "priority_min": self.priority_min,
            "types": sorted(self.types),
            "layers": sorted(self.layers),
            "include_backfill": self.include_backfill,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EventFilter:
        return cls(
            jurisdiction_codes=frozenset(data.get("jurisdiction_codes") or ()),
            priority_min=data.get("priority_min"),
            types=frozenset(data.get("types") or ()),
            layers=frozenset(data.get("layers") or ()),
            include_backfill=bool(data.get("include_backfill", False)),
        )


@dataclass(frozen=True)
class ResolvedFilter:
    """An `EventFilter` with jurisdiction codes turned into ids the caller may see."""

    filters: EventFilter
    jurisdiction_ids: frozenset[int] | None  # None: no jurisdiction filter beyond the scope


def resolve_filter(
    principal: Principal, filters: EventFilter, *, session: Session
) -> ResolvedFilter:
    """Check the filter's jurisdiction codes against the caller's reach and expand them."""
    if not filters.jurisdiction_codes:
        return ResolvedFilter(filters, None)
    codes = sorted(filters.jurisdiction_codes)
    found = dict(
        session.execute(
            select(Jurisdiction.code, Jurisdiction.id).where(Jurisdiction.code.in_(codes))
        ).all()
    )
    visible = {
        code
        for code, jid in found.items()
        if principal.sees_everything or jid in principal.jurisdiction_ids
    }
    if unknown := sorted(set(codes) - visible):
        # Unknown and out-of-reach codes get one message, so existence does not leak.
        raise InvalidInputError(
            f"jurisdiction {', '.join(unknown)} is not one of yours: filter by the codes of "
            "your own jurisdictions or their sub-areas"
        )
    return ResolvedFilter(filters, descendant_ids(found.values(), session=session))


def _scope(principal: Principal) -> ColumnElement[bool]:
    if principal.sees_everything:
        return true()
    if not principal.jurisdiction_ids:
        return false()
    return AlertEvent.jurisdiction_id.in_(sorted(principal.jurisdiction_ids))


def _clauses(resolved: ResolvedFilter) -> Iterable[ColumnElement[bool]]:
    filters = resolved.filters
    if resolved.jurisdiction_ids is not None:
        yield AlertEvent.jurisdiction_id.in_(sorted(resolved.jurisdiction_ids))
    if filters.priority_min is not None:
        yield AlertEvent.priority >= filters.priority_min
    if filters.types:
        yield AlertEvent.event_type.in_(sorted(filters.types))
    if not filters.include_backfill:
        yield AlertEvent.backfill.is_(False)


def matches_layers(event: AlertEvent, layers: frozenset[str]) -> bool:
    """An event passes a layer filter when its payload names one of the layers it hit."""
    if not layers:
        return True
    return bool(layers & set(event.payload.get("layers") or ()))


def read_events(
    principal: Principal,
    resolved: ResolvedFilter,
    *,
    session: Session,
    after_id: int,
    upto_id: int,
    limit: int,
) -> tuple[list[AlertEvent], int]:
    """Visible events with `after_id < id <= upto_id` in id order, and the cursor to go on from.

    The cursor is the id of the last row examined, so filtered-out rows are not read again.
    """
    statement = (
        select(AlertEvent)
        .where(AlertEvent.id > after_id, AlertEvent.id <= upto_id, _scope(principal))
        .where(*_clauses(resolved))
        .order_by(AlertEvent.id)
        .limit(limit)
    )
    rows = list(session.scalars(statement))
    cursor = rows[-1].id if len(rows) == limit else upto_id
    layers = resolved.filters.layers
    return [row for row in rows if matches_layers(row, layers)], cursor


def latest_event_id(*, session: Session) -> int:
    return int(session.scalar(select(func.coalesce(func.max(AlertEvent.id), 0))) or 0)


@dataclass
class _Gap:
    upto: int  # every id up to here had been handed out when the gap was seen
    xmax: int  # no transaction that could hold one of them has an xid at or above this
    seen_at: float = field(default_factory=time.monotonic)


@dataclass
class OutboxHorizon:
    """The highest outbox id below which no event can still appear; advance it with `advance`."""

    settled: int
    max_gap_wait_seconds: float = 60.0
    _gap: _Gap | None = None

    def advance(self, *, session: Session) -> int:
        """Move the horizon as far as the ids visible now allow; returns it.

        `session` should see every row (no row-level scope): only ids are read.
        """
        if session.get_bind().dialect.name != "postgresql":
            self.settled = max(self.settled, latest_event_id(session=session))
            return self.settled
        xmin = _snapshot_bound(session, "pg_snapshot_xmin")
        rows = session.execute(
            select(AlertEvent.id, AlertEvent.created_at)
            .where(AlertEvent.id > self.settled)
            .order_by(AlertEvent.id)
            .limit(HORIZON_SCAN_LIMIT)
        )
        ids = [(event_id, created_at) for event_id, created_at in rows]
        floor = self._settled_gap_floor(xmin)
        # A gap followed by rows older than the longest wait is history (a rollback long
        # ago), so a reader that starts far back is not held up by it.
        old = utcnow() - timedelta(seconds=self.max_gap_wait_seconds)
        self.settled = _contiguous_end(max(self.settled, floor), ids, old_before=old)
        if ids and ids[-1][0] > self.settled and self._gap is None:
            # Taken after reading the ids, so it is an upper bound for whoever holds a gap.
            self._gap = _Gap(upto=ids[-1][0], xmax=_snapshot_bound(session, "pg_snapshot_xmax"))
        return self.settled

    def _settled_gap_floor(self, xmin: int) -> int:
        gap = self._gap
        if gap is None:
            return 0
        if xmin >= gap.xmax:
            self._gap = None
            return gap.upto
        if time.monotonic() - gap.seen_at > self.max_gap_wait_seconds:
            # A transaction older than the gap is still open (a long job, or one left idle):
            # waiting longer would stall every feed, so the gap is given up on and logged.
            log.warning("outbox gap skipped after waiting", below=gap.upto, xmin=xmin)
            self._gap = None
            return gap.upto
        return 0


def _contiguous_end(
    settled: int, rows: Sequence[tuple[int, datetime]], *, old_before: datetime
) -> int:
    for event_id, created_at in rows:
        if event_id <= settled:
            continue
        if event_id != settled + 1 and created_at >= old_before:
            break
        settled = event_id
    return settled


def _snapshot_bound(session: Session, function: str) -> int:
    value = session.scalar(text(f"SELECT {function}(pg_current_snapshot())::text::bigint"))
    return int(value or 0)
