"""Idempotency-Key: a retry gets the stored answer, a reused key is refused, in flight is 409."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from models.base import utcnow
from service.errors import ConflictError, InvalidInputError
from service.ingest.idempotency import (
    check_key,
    record_answer,
    release_key,
    request_fingerprint,
    reserve_key,
)


def test_a_retry_while_the_first_request_runs_is_409_then_gets_its_answer(
    db_session: Session,
) -> None:
    key = str(uuid.uuid4())
    fingerprint = request_fingerprint("POST", "/v1/scenes", [("sensor", "GF-2")], "abc")
    assert reserve_key(session=db_session, key=key, fingerprint=fingerprint) is None
    with pytest.raises(ConflictError, match="still being processed"):
        reserve_key(session=db_session, key=key, fingerprint=fingerprint)
    record_answer(session=db_session, key=key, status_code=202, body={"id": 7})
    answer = reserve_key(session=db_session, key=key, fingerprint=fingerprint)
    assert answer is not None and answer.replayed
    assert (answer.status_code, answer.body) == (202, {"id": 7})


def test_the_same_key_for_another_request_is_422(db_session: Session) -> None:
    key = str(uuid.uuid4())
    reserve_key(session=db_session, key=key, fingerprint=request_fingerprint("a"))
    with pytest.raises(InvalidInputError, match="different request"):
        reserve_key(session=db_session, key=key, fingerprint=request_fingerprint("b"))


def test_an_abandoned_reservation_is_taken_over(db_session: Session) -> None:
    key, fingerprint = str(uuid.uuid4()), request_fingerprint("a")
    reserve_key(session=db_session, key=key, fingerprint=fingerprint)
    later = utcnow() + timedelta(minutes=10)
    assert reserve_key(session=db_session, key=key, fingerprint=fingerprint, now=later) is None


def test_a_released_key_can_be_used_afresh(db_session: Session) -> None:
    key = str(uuid.uuid4())
    reserve_key(session=db_session, key=key, fingerprint=request_fingerprint("a"))
    release_key(session=db_session, key=key)
    assert reserve_key(session=db_session, key=key, fingerprint=request_fingerprint("b")) is None


def test_parameter_order_does_not_change_the_fingerprint() -> None:
    assert request_fingerprint([("a", "1"), ("b", "2")]) == request_fingerprint(
        [("b", "2"), ("a", "1")]
    )
    assert request_fingerprint("a", "bc") != request_fingerprint("ab", "c")


@pytest.mark.parametrize("key", ["", "x" * 201, "naïve", "line\nbreak"])
def test_unusable_keys_are_refused(key: str) -> None:
    with pytest.raises(InvalidInputError, match="Idempotency-Key must be"):
        check_key(key)
