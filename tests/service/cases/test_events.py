"""A case's history is hash-chained: editing or removing an event is found and named."""

from __future__ import annotations

from datetime import timedelta
from itertools import pairwise

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from models import AlertEvent, Case, CaseEvent
from models.case import CaseStatus, EvidenceKind
from models.client import Role
from models.layer import LayerKind
from service.auth import Principal
from service.cases.events import (
    GENESIS_HASH,
    append_event,
    attach_evidence,
    event_hash,
    verify_chain,
)
from service.cases.schemas import TransitionCreate
from service.cases.transitions import apply_transition
from service.cases.workflow import open_or_update_case
from service.screening.screen import screen_detection
from tests.service.cases.moves import transition_case
from tests.service.screening.places import (
    FARMLAND,
    PLOT,
    PLOT_EAST,
    SETTINGS,
    add_detection,
    add_layer_version,
    at,
)

S = CaseStatus


@pytest.fixture
def case(db_session: Session) -> Case:
    """A case with four events: opened, a second detection attached, two transitions."""
    add_layer_version(db_session, LayerKind.permanent_basic_farmland, [FARMLAND])
    opened = None
    for geom, when in ((PLOT, at(2024, 6, 1)), (PLOT_EAST, at(2024, 6, 2))):
        detection = add_detection(db_session, geom, when)
        result = screen_detection(detection, session=db_session, settings=SETTINGS)
        opened = open_or_update_case(detection, result, session=db_session, settings=SETTINGS)
    assert opened is not None
    for step, status in enumerate((S.dispatched, S.verifying), start=3):
        transition_case(
            opened,
            status,
            session=db_session,
            settings=SETTINGS,
            actor="centre-1",
            role="monitor",
            at=at(2024, 6, step),
        )
    return opened


def events_of(session: Session, case: Case) -> list[CaseEvent]:
    statement = select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.seq)
    return list(session.scalars(statement))


def test_an_untouched_history_verifies(db_session: Session, case: Case) -> None:
    events = events_of(db_session, case)

    report = verify_chain(db_session, case.id)

    assert report.ok and report.event_count == 4 and report.broken_seq is None
    assert [e.action for e in events] == [
        "opened",
        "detection_attached",
        "transition",
        "transition",
    ]
    assert [e.case_version for e in events] == [1, 2, 3, 4] and case.version == 4
    assert events[0].prev_hash == GENESIS_HASH
    assert all(later.prev_hash == earlier.hash for earlier, later in pairwise(events))


@pytest.mark.parametrize(
    "edit",
    [{"actor": "someone-else"}, {"to_status": "closed"}, {"payload": {"reason": "forged"}}],
    ids=["actor", "status", "payload"],
)
def test_an_event_edited_in_the_database_is_named(
    db_session: Session, case: Case, edit: dict[str, object]
) -> None:
    third = events_of(db_session, case)[2]

    db_session.execute(update(CaseEvent).where(CaseEvent.id == third.id).values(**edit))
    report = verify_chain(db_session, case.id)

    assert not report.ok
    assert report.broken_seq == 3 and report.broken_event_id == third.id
    assert "altered" in (report.reason or "")


def test_an_event_whose_time_was_moved_is_named(db_session: Session, case: Case) -> None:
    second = events_of(db_session, case)[1]
    moved = second.created_at - timedelta(hours=1)

    db_session.execute(update(CaseEvent).where(CaseEvent.id == second.id).values(created_at=moved))

    assert verify_chain(db_session, case.id).broken_seq == 2


def test_a_removed_event_is_named_by_its_missing_number(db_session: Session, case: Case) -> None:
    second = events_of(db_session, case)[1]

    db_session.execute(delete(CaseEvent).where(CaseEvent.id == second.id))
    report = verify_chain(db_session, case.id)

    assert not report.ok and report.broken_seq == 3
    assert "seq 2 is missing" in (report.reason or "")


def test_a_removed_last_event_is_found_from_the_case_version(
    db_session: Session, case: Case
) -> None:
    last = events_of(db_session, case)[-1]

    db_session.execute(delete(CaseEvent).where(CaseEvent.id == last.id))
    report = verify_chain(db_session, case.id)

    assert not report.ok and report.broken_seq == 4
    assert "removed" in (report.reason or "")


def test_a_removed_last_comment_is_found_from_the_chain_head(
    db_session: Session, case: Case
) -> None:
    # A comment leaves the case's version as it was, so only the head on the case shows it.
    updated_at = case.updated_at
    comment = append_event(
        case, session=db_session, action="comment", actor="inspector-7", role="inspector",
        payload={"text": "fenced off since Monday"},
    )  # fmt: skip
    assert (case.event_seq, case.event_hash) == (comment.seq, comment.hash) == (5, comment.hash)
    assert verify_chain(db_session, case.id).ok
    stored = db_session.execute(
        select(Case.event_seq, Case.updated_at).where(Case.id == case.id)
    ).one()
    assert tuple(stored) == (5, updated_at)  # the head moved; the case was not dated anew

    db_session.execute(delete(CaseEvent).where(CaseEvent.id == comment.id))
    report = verify_chain(db_session, case.id)

    assert not report.ok and report.broken_seq == 5
    assert "records event seq 5" in (report.reason or "")


def test_a_rewritten_chain_with_recomputed_hashes_still_breaks_at_the_link(
    db_session: Session, case: Case
) -> None:
    # Someone edits event 2 and recomputes its own hash: event 3 no longer points at it.
    second = events_of(db_session, case)[1]
    second.actor = "someone-else"
    second.hash = event_hash(second)
    db_session.flush()

    report = verify_chain(db_session, case.id)

    assert not report.ok and report.broken_seq == 3
    assert "does not follow" in (report.reason or "")


def test_evidence_is_attached_once_per_file_and_recorded_in_the_history(
    db_session: Session, case: Case
) -> None:
    chip = {
        "kind": EvidenceKind.chip_after,
        "sha256": "ab" * 32,
        "storage_uri": "file:///evidence/abab.png",
        "media_type": "image/png",
        "size_bytes": 5120,
        "uploaded_by": "analysis",
    }

    first = attach_evidence(case, session=db_session, **chip)
    again = attach_evidence(case, session=db_session, **chip)

    assert again.id == first.id and first.case_id == case.id
    assert events_of(db_session, case)[-1].action == "evidence_attached"
    assert case.version == 5
    assert verify_chain(db_session, case.id).ok


def test_a_transition_follows_the_chain_head_its_claim_read_and_moves_it(
    db_session: Session, case: Case
) -> None:
    admin = Principal(client_id=0, name="centre-1", role=Role.admin, jurisdiction_ids=frozenset())

    moved = apply_transition(
        case.id, TransitionCreate(to=S.confirmed), session=db_session, settings=SETTINGS,
        principal=admin, version=case.version,
    )  # fmt: skip

    last = events_of(db_session, case)[-1]
    assert (last.seq, last.action, last.to_status) == (5, "transition", "confirmed")
    stored = db_session.execute(
        select(Case.event_seq, Case.event_hash).where(Case.id == case.id)
    ).one()
    assert tuple(stored) == (moved.event_seq, moved.event_hash) == (5, last.hash)
    assert verify_chain(db_session, case.id).ok
    # Both detections hit the same layer: the outbox row names it once, as the query does.
    alert = db_session.scalars(
        select(AlertEvent).where(AlertEvent.case_id == case.id).order_by(AlertEvent.id.desc())
    ).first()
    assert alert is not None and alert.payload["status"] == "confirmed"
    assert alert.payload["layers"] == ["permanent_basic_farmland"]
