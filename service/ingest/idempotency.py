"""Safe retries of ingest POSTs: an `Idempotency-Key` header and the answer stored for it.

Same key and same request → the stored answer again; same key, other request → 422. The key
is reserved, the work done and the answer stored in one transaction, so either all of it
persists or none does: a request that meets an outage or a crash leaves no reservation behind
to block its retries. A concurrent retry waits for the first request's transaction (an advisory
lock on PostgreSQL, the write lock on SQLite) and then gets its answer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session, sessionmaker

from models.base import utcnow
from models.client import IdempotencyKey
from service.db import SQLITE_IMMEDIATE, transaction
from service.errors import InvalidInputError

MAX_KEY_LENGTH = 200


@dataclass(frozen=True)
class Answer:
    status_code: int
    body: dict[str, Any]
    replayed: bool  # True when the answer is the stored one of an earlier request


Work = Callable[[Session], tuple[int, dict[str, Any]]]


def request_fingerprint(*parts: str | Iterable[tuple[str, str]]) -> str:
    """A digest of what makes two requests "the same" (method, path, parameters, body hash)."""
    digest = hashlib.sha256()
    for part in parts:
        text = part if isinstance(part, str) else "&".join(f"{k}={v}" for k, v in sorted(part))
        digest.update(text.encode() + b"\x00")
    return digest.hexdigest()


def check_key(key: str) -> str:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise InvalidInputError(
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters, e.g. a UUID"
        )
    return key


def _of_client(client_id: int | None) -> ColumnElement[bool]:
    # Keys belong to the client that sent them: two gateways may pick the same UUID scheme.
    column = IdempotencyKey.client_id
    return column.is_(None) if client_id is None else column == client_id


def _find(session: Session, key: str, client_id: int | None) -> IdempotencyKey | None:
    statement = select(IdempotencyKey).where(_of_client(client_id), IdempotencyKey.key == key)
    return session.scalars(statement).first()


def _serialise_key(session: Session, key: str, client_id: int | None) -> None:
    # The unique constraint does not cover client_id NULL on PostgreSQL, and a reservation must
    # wait for a concurrent one to commit rather than fail, so reservations of one key are
    # serialised with a transaction-scoped advisory lock (SQLite: BEGIN IMMEDIATE).
    if session.get_bind().dialect.name == "postgresql":
        lock_name = f"{client_id}:{key}"
        session.execute(select(func.pg_advisory_xact_lock(func.hashtext(lock_name))))


def reserve_key(
    *,
    session: Session,
    key: str,
    fingerprint: str,
    client_id: int | None = None,
    now: datetime | None = None,
) -> Answer | None:
    """Reserve the client's `key` for this request (None), or the answer of an identical one."""
    now = now or utcnow()
    _serialise_key(session, key, client_id)
    row = _find(session, key, client_id)
    if row is None:
        session.add(
            IdempotencyKey(client_id=client_id, key=key, request_hash=fingerprint, created_at=now)
        )
        session.flush()
        return None
    if row.request_hash != fingerprint:
        raise InvalidInputError(
            f"Idempotency-Key {key!r} was already used for a different request; "
            "use a new key for a new request"
        )
    if row.status_code is None:
        # Reserved and answered in one transaction, a row is never seen unanswered unless an
        # older release of the service left it behind: its request is long gone, take it over.
        row.created_at = now
        session.flush()
        return None
    return Answer(row.status_code, dict(row.response or {}), replayed=True)


def record_answer(
    *,
    session: Session,
    key: str,
    status_code: int,
    body: dict[str, Any],
    client_id: int | None = None,
) -> None:
    row = _find(session, key, client_id)
    if row is None:
        raise LookupError(f"Idempotency-Key {key!r} was not reserved")
    row.status_code = status_code
    row.response = body
    session.flush()


def run_idempotent(
    factory: sessionmaker[Session],
    *,
    key: str | None,
    fingerprint: str,
    work: Work,
    client_id: int | None = None,
) -> Answer:
    """Run `work` in one transaction, at most once per key; replay its answer on retries.

    Every transaction here writes, so on SQLite each takes the write lock when it begins:
    a deferred one would fail with "database is locked" instead of waiting its turn.
    """
    if key is None:
        with _writing(factory) as session:
            status_code, body = work(session)
        return Answer(status_code, body, replayed=False)
    key = check_key(key)
    with _writing(factory) as session:
        stored = reserve_key(session=session, key=key, fingerprint=fingerprint, client_id=client_id)
        if stored is not None:
            return stored
        status_code, body = work(session)
        record_answer(
            session=session, key=key, status_code=status_code, body=body, client_id=client_id
        )
    return Answer(status_code, body, replayed=False)


@contextmanager
def _writing(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A transaction that takes SQLite's write lock as it begins (see `run_idempotent`)."""
    with transaction(factory) as session:
        session.connection(execution_options=SQLITE_IMMEDIATE)
        yield session
