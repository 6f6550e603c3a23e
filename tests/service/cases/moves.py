"""A shortcut for tests: move a case along the transition table without going through HTTP.

The API applies people's changes in `service.cases.transitions` (If-Match, roles, request
ids); tests that only need a case in some state use this, which keeps the same table, the
same deadlines and the same event chain.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from models import Case
from models.case import CaseStatus
from service.cases.events import append_event
from service.cases.workflow import DISMISSAL_REASONS, check_transition, due_at_for
from service.settings import Settings


def transition_case(
    case: Case,
    target: CaseStatus,
    *,
    session: Session,
    settings: Settings,
    actor: str,
    role: str,
    reason: str | None = None,
    at: datetime,
) -> None:
    """Move `case` to `target` if the table allows it, and record the event."""
    check_transition(case.status, target)
    assert target != CaseStatus.dismissed or reason in DISMISSAL_REASONS, reason
    previous = case.status
    case.status = target
    if target == CaseStatus.dismissed:
        case.dismissal_reason = reason
    case.due_at = due_at_for(target, at, settings)
    case.version += 1
    append_event(
        case,
        session=session,
        action="transition",
        actor=actor,
        role=role,
        from_status=previous,
        to_status=target,
        payload={"reason": reason} if reason else {},
        at=at,
    )
