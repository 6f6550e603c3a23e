"""Changes people make to a case through the API: status transitions, assignment, comments.

A change names the version it was based on (`If-Match`). The case is claimed at that version
with `SELECT ... WHERE id = :id AND version = :v ... FOR UPDATE`, which locks its row: of two
callers holding the same ETag, the second waits for the first and then finds no row at that
version any more, so exactly one wins and the other gets 412; nothing is overwritten silently.
Only when no row comes back is the case read again, to tell "not yours" (404) from "stale"
(412). The change itself, version included, is then one UPDATE: one new row version, one set
of index entries.
Every change appends one hash-chained event with actor, role, request id and the case's
fields before and after.

The status table is `service.cases.workflow.TRANSITIONS`; machine changes (new detections,
rebounds) live in `workflow`, people's changes here, on the same event chain.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, bindparam, insert, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from models import ApiClient, Case, CaseEvent
from models.base import table_of, utcnow
from models.case import CaseStatus
from models.client import Role
from service.alerts.outbox import (
    AlertType,
    insert_alert,
    layer_kinds_column,
    layer_kinds_of,
    record_alert,
)
from service.auth import Principal, principal_for
from service.cases.events import append_event, chain_head, next_event_fields
from service.cases.queries import get_case_or_raise
from service.cases.schemas import CommentCreate, InspectorTransitionCreate, TransitionCreate
from service.cases.workflow import MACHINE_ROLE, OPEN_STATUSES, check_transition, due_at_for
from service.errors import (
    InvalidInputError,
    PermissionDeniedError,
    PreconditionFailedError,
    PreconditionRequiredError,
)
from service.settings import Settings

S = CaseStatus
# Which target statuses each role may ask for; the transition table decides from where.
ROLE_TARGETS: dict[Role, frozenset[CaseStatus]] = {
    Role.admin: frozenset(S),
    # The monitoring centre triages (dismiss before dispatch), dispatches, closes, reopens.
    Role.monitor: frozenset({S.dispatched, S.dismissed, S.closed, S.new}),
    # The field chief checks on site, judges, and follows rectification.
    Role.inspector: frozenset({S.verifying, S.confirmed, S.dismissed, S.rectifying, S.rectified}),
}
ASSIGNING_ROLES = frozenset({Role.admin, Role.monitor})
_ETAG = re.compile(r'^(?:W/)?"(\d{1,9})"$')


def etag(version: int) -> str:
    return f'"{version}"'


def expected_version(if_match: str | None) -> int:
    """The version an `If-Match` header names: 428 when absent, 412 when it cannot match."""
    if if_match is None or not if_match.strip():
        raise PreconditionRequiredError(
            "changing a case needs an If-Match header with the ETag from GET /v1/cases/{id}, "
            'e.g. If-Match: "3", so that concurrent changes are not lost'
        )
    match = _ETAG.match(if_match.strip())
    if match is None:
        raise PreconditionFailedError(
            f"If-Match {if_match!r} is not an ETag this service issued: send the ETag header "
            'of GET /v1/cases/{id} unchanged, e.g. "3"'
        )
    return int(match.group(1))


def input_model_for(role: Role) -> type[InspectorTransitionCreate]:
    """Per-role input model: only roles that dispatch may name an assignee."""
    return TransitionCreate if role in ASSIGNING_ROLES else InspectorTransitionCreate


def apply_transition(
    case_id: int,
    change: InspectorTransitionCreate,
    *,
    session: Session,
    settings: Settings,
    principal: Principal,
    version: int,
    request_id: str | None = None,
    now: datetime | None = None,
) -> Case:
    """Move a visible case to `change.to` and/or assign it; flushes, never commits.

    The version is claimed first; a refusal after that (409, 422) raises, and the caller's
    rollback undoes everything. Four statements in all: the claim (which also reads the case,
    its chain head and its layers), one UPDATE of the case's new version, fields and chain
    head, the event and the outbox row. PostgreSQL requests take the same steps through the
    driver (`transitions_pg`).
    """
    now = now or utcnow()
    check_role_target(principal, change.to)
    case, layers = _claim_visible(case_id, version, principal, session=session)
    if change.to is not None:  # a forbidden move is 409 before the assignee is looked up
        check_transition(case.status, change.to)
    planned = plan_transition(
        case, change, version=version, principal=principal, settings=settings,
        assignee=_assignee(change, case, session=session), request_id=request_id, now=now,
    )  # fmt: skip
    _store(case, planned.stored, session=session)
    _show(case, planned.stored)
    session.execute(_INSERT_EVENT, planned.event)
    if planned.alert is not None:
        insert_alert(
            case, session=session, event_type=planned.alert, reason=str(change.to),
            layers=layers,
        )  # fmt: skip
    return case


def check_role_target(principal: Principal, target: CaseStatus | None) -> None:
    """403 unless the caller's role may ask for `target` (the table decides from where)."""
    if target is not None and target not in ROLE_TARGETS.get(principal.role, frozenset()):
        raise PermissionDeniedError(
            f"role {principal.role} may not move a case to {target}; it may move cases to: "
            f"{', '.join(sorted(ROLE_TARGETS.get(principal.role, ()))) or 'none'}"
        )


@dataclass(frozen=True)
class PlannedTransition:
    """What a transition writes: the case's new column values (version and chain head
    included), the event's columns, and the kind of outbox row (None: assignment only)."""

    stored: dict[str, Any]
    event: dict[str, Any]
    alert: AlertType | None


def plan_transition(
    case: Any,
    change: InspectorTransitionCreate,
    *,
    version: int,
    principal: Principal,
    settings: Settings,
    assignee: ApiClient | None,
    request_id: str | None,
    now: datetime,
) -> PlannedTransition:
    """The writes of a transition of the claimed `case` (a `Case`, or any object with its
    columns as attributes); 409 when the table forbids the move. Touches no database."""
    target = change.to
    if target is not None:
        check_transition(case.status, target)
    before = _snapshot(case) | {"version": version}
    changes: dict[str, Any] = {"version": version + 1}
    if target is not None:
        changes |= _moved(case, target, change, settings=settings, actor=principal.name, now=now)
    if assignee is not None:
        changes["assignee_id"] = assignee.id
    payload: dict[str, Any] = {"before": before, "after": _snapshot(case, changes)}
    payload |= {k: v for k, v in (("reason_code", change.reason_code), ("note", change.note)) if v}
    if assignee is not None:
        payload["assignee"] = assignee.name
    # The claim locked the row, so its chain head is the last event: no query for it.
    event = next_event_fields(
        case.id,
        version + 1,
        tail=(case.event_seq, case.event_hash),
        action=_action(before["status"], target),
        actor=principal.name,
        role=str(principal.role),
        from_status=before["status"] if target else None,
        to_status=str(target) if target else None,
        payload=payload,
        request_id=request_id,
        at=now,
    )
    alert = _alert_type(target) if target is not None else None
    return PlannedTransition(changes | chain_head(event), event, alert)


def _alert_type(target: CaseStatus) -> AlertType:
    return {
        S.new: AlertType.case_reopened,
        S.dismissed: AlertType.case_dismissed,
        S.closed: AlertType.case_closed,
    }.get(target, AlertType.case_status_changed)


def add_comment(
    case_id: int,
    comment: CommentCreate,
    *,
    session: Session,
    principal: Principal,
    request_id: str | None = None,
) -> CaseEvent:
    """Append a comment to a visible case's history; the case and its ETag do not change."""
    # The row lock (PostgreSQL) orders concurrent comments so each gets its own seq.
    case = get_case_or_raise(case_id, principal, session=session, for_update=True)
    return append_event(
        case,
        session=session,
        action="comment",
        actor=principal.name,
        role=str(principal.role),
        payload={"text": comment.text},
        request_id=request_id,
    )


def _check_version(case: Case, version: int) -> None:
    if case.version != version:
        raise PreconditionFailedError(
            f"case {case.id} is at version {case.version}, not {version}: someone changed it "
            "since you read it; GET it again, check the change still makes sense, and retry"
        )


def _claim_visible(
    case_id: int, version: int, principal: Principal, *, session: Session
) -> tuple[Case, list[str]]:
    """The visible case at `version`, its row locked until the transaction ends: the
    lost-update guard and the read, with the legal layers its detections hit (for the outbox
    row).

    No row back means the case is out of reach (404), was at another version already (412),
    or was claimed by a concurrent change between the two (412 as well).
    """
    statement = _claim_statement(principal.sees_everything)
    parameters: dict[str, Any] = {"claimed_id": case_id, "claimed_version": version}
    if not principal.sees_everything:
        parameters["reach"] = sorted(principal.jurisdiction_ids)
    claimed = session.execute(statement, parameters).first()
    if claimed is not None:
        case, layers = claimed
        return case, layer_kinds_of(layers)
    current = get_case_or_raise(case_id, principal, session=session)
    _check_version(current, version)
    raise PreconditionFailedError(
        f"case {case_id} was changed by someone else at the same moment: GET it again "
        "and retry with the new ETag"
    )


@functools.cache
def _claim_statement(sees_everything: bool) -> Select[Case, str | None]:
    """The claim of `_claim_visible` with its values as parameters, built once per kind of
    caller; the jurisdictions are those of `queries.scope_clause`, bound as `reach`."""
    reach = (
        Case.id.is_not(None)
        if sees_everything
        else Case.jurisdiction_id.in_(bindparam("reach", expanding=True))
    )
    return (
        select(Case, layer_kinds_column())
        .where(Case.id == bindparam("claimed_id"), Case.version == bindparam("claimed_version"))
        .where(reach)
        .with_for_update(of=Case)
        # A case this session loaded before must show the row as locked, chain head included.
        .execution_options(populate_existing=True)
    )


def _claim(case: Case, version: int, *, session: Session) -> None:
    """Bump the version only if it is still `version`: the lost-update guard."""
    result = session.execute(
        update(Case)
        .where(Case.id == case.id, Case.version == version)
        .values(version=version + 1)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise PreconditionFailedError(
            f"case {case.id} was changed by someone else at the same moment: GET it again "
            "and retry with the new ETag"
        )


def _moved(
    case: Any,
    target: CaseStatus,
    change: InspectorTransitionCreate,
    *,
    settings: Settings,
    actor: str,
    now: datetime,
) -> dict[str, Any]:
    """The fields a move to `target` changes, with their new values."""
    fields: dict[str, Any] = {"status": target, "due_at": due_at_for(target, now, settings)}
    if target == S.new:  # a reopen by a person: escalated like a rebound
        fields["reopen_count"] = (case.reopen_count or 0) + 1
        fields["escalated"] = True
        fields["escalation_reason"] = f"reopened by {actor}: {change.note}"
    if target == S.dismissed:
        fields["dismissal_reason"] = str(change.reason_code)
    return fields


def _store(case: Case, changes: dict[str, Any], *, session: Session) -> None:
    """Write `changes` to the claimed row with one UPDATE.

    Not through the unit of work: a flush of `case` would cost more CPU than the statement,
    on the API's busiest write. The row is locked by the claim, so nothing else changed it
    in between."""
    session.execute(_STORE, {"stored_id": case.id, **changes})


# Statements of the transition path, built once; values go in as parameters (an UPDATE without
# values() sets the columns its parameters name). Building them per call cost more CPU than
# sending them.
_cases = table_of(Case)
_STORE = update(_cases).where(_cases.c.id == bindparam("stored_id"))
_INSERT_EVENT = insert(table_of(CaseEvent))


def _show(case: Case, changes: dict[str, Any]) -> None:
    """Show `changes` on `case` as if loaded, without making it dirty (`_store` writes them)."""
    for name, value in changes.items():
        set_committed_value(case, name, value)


def _assignee(
    change: InspectorTransitionCreate, case: Case, *, session: Session
) -> ApiClient | None:
    name = getattr(change, "assignee", None)
    if name is None:
        return None
    client = session.scalars(select(ApiClient).where(ApiClient.name == name)).first()
    if client is None or not client.active or client.role != Role.inspector:
        raise InvalidInputError(f"assignee {name!r} is not an active inspector: name one")
    reach = principal_for(client, session=session).jurisdiction_ids
    if case.jurisdiction_id not in reach:
        raise InvalidInputError(
            f"inspector {name!r} does not cover this case's jurisdiction: assign an inspector "
            "of that area"
        )
    return client


def _snapshot(case: Any, changes: dict[str, Any] | None = None) -> dict[str, Any]:
    """The fields an event records before and after, with `changes` applied over `case`."""
    changes = changes or {}
    value = {name: changes.get(name, getattr(case, name)) for name in SNAPSHOT_FIELDS}
    due_at = value["due_at"]
    return value | {
        "status": str(value["status"]),
        "due_at": due_at.isoformat() if due_at else None,
    }


SNAPSHOT_FIELDS = ("status", "assignee_id", "dismissal_reason", "due_at", "escalated", "version")


def _action(previous: str, target: CaseStatus | None) -> str:
    if target is None:
        return "assigned"
    if target == S.new and previous in {S.rectified, S.closed}:
        return "reopened"
    return "transition"


DEADLINE_ACTOR = "deadline-watch"


def escalate_overdue(*, session: Session, now: datetime | None = None) -> list[int]:
    """Escalate open cases past the deadline of their current state; returns their ids.

    Each case is claimed at the version it was read with, so a person's concurrent change
    wins and the case is looked at again on the next run. Flushes, never commits.
    """
    now = now or utcnow()
    overdue = session.scalars(
        select(Case)
        .where(Case.status.in_(OPEN_STATUSES), Case.due_at < now, Case.escalated.is_(False))
        .order_by(Case.due_at, Case.id)
    )
    escalated = []
    for case in list(overdue):
        version = case.version
        if case.due_at is None:  # excluded by the query; keeps the type checker informed
            continue
        try:
            _claim(case, version, session=session)
        except PreconditionFailedError:
            continue
        late_hours = (now - case.due_at) / timedelta(hours=1)
        case.escalated = True
        case.escalation_reason = (
            f"overdue: still {case.status} {late_hours:.1f} h after its deadline "
            f"{case.due_at.isoformat(timespec='minutes')}"
        )
        case.version = version + 1
        append_event(
            case, session=session, action="escalated", actor=DEADLINE_ACTOR, role=MACHINE_ROLE,
            payload={"reason": case.escalation_reason, "due_at": case.due_at.isoformat()}, at=now,
        )  # fmt: skip
        record_alert(
            case, session=session, event_type=AlertType.case_updated, reason="overdue",
            details={"escalation_reason": case.escalation_reason},
        )  # fmt: skip
        escalated.append(case.id)
    return escalated
