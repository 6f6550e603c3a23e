"""A case's append-only record: hash-chained events, the check that they are intact, evidence."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from models import Case, CaseEvent, Evidence
from models.base import table_of, utcnow
from models.case import GENESIS_HASH, EvidenceKind

# The fields the hash covers: everything but the row id, which the database assigns.
HASHED_FIELDS = (
    "case_id",
    "seq",
    "action",
    "from_status",
    "to_status",
    "actor",
    "role",
    "request_id",
    "case_version",
    "payload",
    "created_at",
    "prev_hash",
)


def canonical_json(fields: dict[str, Any]) -> bytes:
    """One byte string per set of values: sorted keys, no spaces, UTF-8, ISO 8601 times."""
    return json.dumps(
        fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_iso
    ).encode("utf-8")


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat(timespec="microseconds")
    raise TypeError(f"{type(value).__name__} cannot go into a case event: use JSON values")


def event_hash(event: CaseEvent) -> str:
    """sha256 (hex) of the event's canonical JSON, which includes the previous event's hash."""
    return _hash_of({name: getattr(event, name) for name in HASHED_FIELDS})


def _hash_of(fields: dict[str, Any]) -> str:
    hashed = {name: fields[name] for name in HASHED_FIELDS}
    return hashlib.sha256(canonical_json(hashed)).hexdigest()


def chain_tail(case_id: int, *, session: Session) -> tuple[int, str]:
    """(seq, hash) of the case's last event; (0, GENESIS_HASH) before its first one."""
    statement = (
        select(CaseEvent.seq, CaseEvent.hash)
        .where(CaseEvent.case_id == case_id)
        .order_by(CaseEvent.seq.desc())
        .limit(1)
    )
    row = session.execute(statement).first()
    return (row.seq, row.hash) if row is not None else (0, GENESIS_HASH)


def append_event(
    case: Case,
    *,
    session: Session,
    action: str,
    actor: str,
    role: str,
    from_status: str | None = None,
    to_status: str | None = None,
    payload: dict[str, Any] | None = None,
    request_id: str | None = None,
    at: datetime | None = None,
) -> CaseEvent:
    """Append one event to `case`'s chain at its current version and move the chain head on
    `case` to it; flushes, never commits.

    The tail is read from the events, not from `case`, which may have been loaded before
    another transaction appended."""
    session.flush()  # the case needs its id, and the previous event must be visible
    fields = next_event_fields(
        case.id, case.version, tail=chain_tail(case.id, session=session), action=action,
        actor=actor, role=role, from_status=from_status, to_status=to_status, payload=payload,
        request_id=request_id, at=at,
    )  # fmt: skip
    event = CaseEvent(**fields)
    session.add(event)
    head = chain_head(fields)
    # Only the head moves: `updated_at` stays, so a comment does not date the case anew (a
    # closed case's CAP cancel message is sent at its `updated_at`).
    cases = table_of(Case)
    session.execute(
        update(cases)
        .where(cases.c.id == case.id)
        .values({**head, "updated_at": cases.c.updated_at})
    )
    for name, value in head.items():
        set_committed_value(case, name, value)
    session.flush()
    return event


def next_event_fields(
    case_id: int,
    case_version: int,
    *,
    tail: tuple[int, str],
    action: str,
    actor: str,
    role: str,
    from_status: str | None,
    to_status: str | None,
    payload: dict[str, Any] | None,
    request_id: str | None,
    at: datetime | None,
) -> dict[str, Any]:
    """The column values of the event that follows `tail` (seq, hash) on case `case_id` at
    `case_version`, its hash included."""
    previous_seq, previous_hash = tail
    fields: dict[str, Any] = {
        "case_id": case_id,
        "seq": previous_seq + 1,
        "action": action,
        "from_status": from_status,
        "to_status": to_status,
        "actor": actor,
        "role": role,
        "request_id": request_id,
        "case_version": case_version,
        # A JSON round trip now, so the hash sees exactly what the database gives back.
        "payload": json.loads(canonical_json(payload or {})),
        # Microseconds are the finest time both backends keep.
        "created_at": (at or utcnow()).astimezone(UTC),
        "prev_hash": previous_hash,
    }
    fields["hash"] = _hash_of(fields)
    return fields


def chain_head(event_fields: dict[str, Any]) -> dict[str, Any]:
    """The case columns that make the event with `event_fields` the head of its chain."""
    return {"event_seq": event_fields["seq"], "event_hash": event_fields["hash"]}


def status_entered_at(case_id: int, status: str, *, session: Session) -> datetime | None:
    """When the case last moved into `status`, from its history."""
    statement = select(func.max(CaseEvent.created_at)).where(
        CaseEvent.case_id == case_id, CaseEvent.to_status == status
    )
    return session.scalar(statement)


@dataclass(frozen=True)
class ChainReport:
    """Outcome of `verify_chain`: `ok`, or the first event found broken and why."""

    case_id: int
    event_count: int
    ok: bool
    broken_seq: int | None = None
    broken_event_id: int | None = None
    reason: str | None = None


def verify_chain(session: Session, case_id: int) -> ChainReport:
    """Re-hash a case's events in order and report the first edited, removed or missing one.

    An edited row no longer matches its hash; a removed row leaves a gap in `seq` and a
    `prev_hash` that points at nothing; a removed last event leaves the case at a version
    that no remaining event recorded, or a case whose chain head names another last event.
    """
    events = list(
        session.scalars(
            select(CaseEvent)
            .where(CaseEvent.case_id == case_id)
            .order_by(CaseEvent.seq)
            .execution_options(populate_existing=True)
        )
    )
    previous_hash = GENESIS_HASH
    for expected_seq, event in enumerate(events, start=1):
        problem = _event_problem(event, expected_seq, previous_hash)
        if problem:
            return ChainReport(case_id, len(events), False, event.seq, event.id, problem)
        previous_hash = event.hash
    tail_problem = _tail_problem(session, case_id, events)
    if tail_problem:
        last = events[-1] if events else None
        return ChainReport(
            case_id,
            len(events),
            False,
            last.seq + 1 if last else 1,
            None,
            tail_problem,
        )
    return ChainReport(case_id, len(events), True)


def _event_problem(event: CaseEvent, expected_seq: int, previous_hash: str) -> str | None:
    if event.seq != expected_seq:
        return f"event seq {expected_seq} is missing: the next stored event is seq {event.seq}"
    if event.prev_hash != previous_hash:
        return f"event seq {event.seq} does not follow the event before it (prev_hash differs)"
    if event_hash(event) != event.hash:
        return f"event seq {event.seq} was altered after it was written (hash differs)"
    return None


def _tail_problem(session: Session, case_id: int, events: list[CaseEvent]) -> str | None:
    case = session.execute(
        select(Case.version, Case.event_seq, Case.event_hash).where(Case.id == case_id)
    ).first()
    if case is None:
        return f"case {case_id} does not exist"
    recorded = events[-1].case_version if events else 0
    if recorded < case.version:
        return (
            f"case {case_id} is at version {case.version} but its last event records version "
            f"{recorded}: events at the end of the history were removed"
        )
    last_seq, last_hash = (events[-1].seq, events[-1].hash) if events else (0, GENESIS_HASH)
    if (case.event_seq, case.event_hash) != (last_seq, last_hash):
        return (
            f"case {case_id} records event seq {case.event_seq} as the last of its history "
            f"but the last stored event is seq {last_seq}: events at the end were removed "
            "or replaced"
        )
    return None


def attach_evidence(
    case: Case,
    *,
    session: Session,
    kind: EvidenceKind,
    sha256: str,
    storage_uri: str,
    media_type: str,
    size_bytes: int,
    uploaded_by: str,
    role: str = "system",
    detection_id: int | None = None,
    taken_at: datetime | None = None,
    lon: float | None = None,
    lat: float | None = None,
    note: str | None = None,
    request_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> Evidence:
    """Attach stored evidence (before/after chips, photos) to `case`; the same file once only.

    `details` go into the event's payload next to the kind and the file's hash."""
    existing = session.scalars(
        select(Evidence).where(
            Evidence.case_id == case.id, Evidence.kind == kind, Evidence.sha256 == sha256
        )
    ).first()
    if existing is not None:
        return existing
    evidence = Evidence(
        case_id=case.id,
        kind=kind,
        sha256=sha256,
        storage_uri=storage_uri,
        media_type=media_type,
        size_bytes=size_bytes,
        uploaded_by=uploaded_by,
        detection_id=detection_id,
        taken_at=taken_at,
        lon=lon,
        lat=lat,
        note=note,
    )
    session.add(evidence)
    case.version += 1
    append_event(
        case,
        session=session,
        action="evidence_attached",
        actor=uploaded_by,
        role=role,
        payload={**(details or {}), "kind": str(kind), "sha256": sha256},
        request_id=request_id,
    )
    return evidence
