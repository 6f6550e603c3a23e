"""Idempotency-Key: retries get the stored answer, a reused key is 422, failures leave no trace."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from service.db import create_session_factory
from service.errors import InvalidInputError
from service.ingest.idempotency import (
    check_key,
    record_answer,
    request_fingerprint,
    reserve_key,
    run_idempotent,
)


def test_an_answered_key_replays_its_answer(db_session: Session) -> None:
    key = str(uuid.uuid4())
    fingerprint = request_fingerprint("POST", "/v1/scenes", [("sensor", "GF-2")], "abc")
    assert reserve_key(session=db_session, key=key, fingerprint=fingerprint) is None
    record_answer(session=db_session, key=key, status_code=202, body={"id": 7})
    answer = reserve_key(session=db_session, key=key, fingerprint=fingerprint)
    assert answer is not None and answer.replayed
    assert (answer.status_code, answer.body) == (202, {"id": 7})


def test_the_same_key_for_another_request_is_422(db_session: Session) -> None:
    key = str(uuid.uuid4())
    reserve_key(session=db_session, key=key, fingerprint=request_fingerprint("a"))
    with pytest.raises(InvalidInputError, match="different request"):
        reserve_key(session=db_session, key=key, fingerprint=request_fingerprint("b"))


def test_work_that_fails_leaves_no_reservation_behind(db_engine: Engine) -> None:
    factory = create_session_factory(db_engine)
    key, fingerprint = str(uuid.uuid4()), request_fingerprint("a")

    def failing(session: Session) -> tuple[int, dict[str, object]]:
        raise OSError("the database went away")

    with pytest.raises(OSError):
        run_idempotent(factory, key=key, fingerprint=fingerprint, work=failing)
    answer = run_idempotent(
        factory, key=key, fingerprint=fingerprint, work=lambda session: (202, {"id": 1})
    )
    assert (answer.status_code, answer.replayed) == (202, False)  # a retry is processed afresh
    again = run_idempotent(
        factory, key=key, fingerprint=fingerprint, work=lambda session: (500, {})
    )
    assert (again.status_code, again.body, again.replayed) == (202, {"id": 1}, True)


def test_parameter_order_does_not_change_the_fingerprint() -> None:
    assert request_fingerprint([("a", "1"), ("b", "2")]) == request_fingerprint(
        [("b", "2"), ("a", "1")]
    )
    assert request_fingerprint("a", "bc") != request_fingerprint("ab", "c")


@pytest.mark.parametrize("key", ["", "x" * 201, "naïve", "line\nbreak"])
def test_unusable_keys_are_refused(key: str) -> None:
    with pytest.raises(InvalidInputError, match="Idempotency-Key must be"):
        check_key(key)
