"""Case transitions on PostgreSQL sent through the driver: the API's busiest write.

The rules, the rows and the answer are those of `transitions.apply_transition`: both plan the
change with `plan_transition`, and the statements are SQLAlchemy's, compiled once. Only the
way they travel differs: here on the event loop, through psycopg's async connections from a
pool of their own, as prepared statements in two round trips (the scope with the claim, the
writes with the commit). Through SQLAlchemy's session each statement cost ~120 µs of the
API's CPU on the benchmark machine and through the driver ~35 µs, and a transition sends six
with its commit; the thread-pool hop goes too (benchmarks/RESULTS.md).

Two kinds of request keep the session path, which has the queries for them: an assignment
(the inspector's reach is checked), and a claim that finds no row (404 or 412 is told apart
there). Database errors come out as SQLAlchemy's exceptions, so the API answers them as it
answers the session path's (503 + Retry-After, 422 for a value the database refuses).
"""

from __future__ import annotations

import functools
from collections import namedtuple
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, NamedTuple

import psycopg
from psycopg.rows import namedtuple_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import (
    BigInteger,
    any_,
    bindparam,
    func,
    insert,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement

from models import AlertEvent, ApiClient, Case, CaseEvent, Detection, Jurisdiction, LayerHit
from models.base import table_of, utcnow
from models.case import CaseStatus, ConfidenceLevel
from service.alerts.outbox import alert_row, layer_kinds_of
from service.auth import Principal
from service.cases.queries import case_read
from service.cases.schemas import InspectorTransitionCreate
from service.cases.transitions import check_role_target, plan_transition
from service.rls import SETTING, scope_value
from service.settings import Settings

# With the driver module: SQLAlchemy's disconnect check looks its error classes up there.
_DIALECT = postgresql.psycopg.dialect(dbapi=psycopg)  # type: ignore[attr-defined]
#: How these connections show in pg_stat_activity, apart from the engine's.
APPLICATION_NAME = "tianxun-api-transitions"
POOL_TIMEOUT_S = 5.0  # psycopg_pool's default, 30 s, would hold a request that long
_CASES = table_of(Case)
#: The case's columns a transition reads: all but the outline, whose bounds the bbox
#: columns hold (kept with it on every write, as SQLite's R*Tree needs them).
_READ_COLUMNS = tuple(column for column in _CASES.c if column.name != "geom")
_ROW_FIELDS = tuple(column.name for column in _READ_COLUMNS)
_TIMES = tuple(c.name for c in _READ_COLUMNS if c.type.python_type is datetime)
# The claimed case, as plan_transition reads it; its fields are the table's columns, known
# only once the models are imported, so no static type can name them.
_Claimed = namedtuple("_Claimed", _ROW_FIELDS)  # type: ignore[misc]


class Answer(NamedTuple):
    body: bytes  # the CaseRead JSON
    version: int


async def transition(
    pool: AsyncConnectionPool[Any],
    case_id: int,
    change: InspectorTransitionCreate,
    *,
    principal: Principal,
    version: int,
    settings: Settings,
    request_id: str | None,
) -> Answer | None:
    """Commit the transition and answer it; None when the session path must (see above).

    Raises what `apply_transition` raises for the same request (403, 409), and SQLAlchemy's
    exception for a database error; nothing is written unless everything is.
    """
    if getattr(change, "assignee", None) is not None:
        return None
    check_role_target(principal, change.to)
    now = utcnow()
    async with _driver(pool) as driver, driver.cursor(row_factory=namedtuple_row) as cursor:
        async with driver.pipeline():  # one round trip
            await cursor.execute(_SET_SCOPE, {"name": SETTING, "value": scope_value(principal)})
            claim = _claim_sql(principal.sees_everything)
            await cursor.execute(claim, _claim_parameters(case_id, version, principal))
            # The claim's columns and the joined jurisdiction, assignee and layers, by name.
            row: Any = await cursor.fetchone()
        if row is None:
            await driver.rollback()
            return None
        claimed = _as_read(row)
        planned = plan_transition(
            claimed, change, version=version, principal=principal, settings=settings,
            assignee=None, request_id=request_id, now=now,
        )  # fmt: skip
        stored = {**planned.stored, "updated_at": now}
        # A failed write makes the server skip the rest, commit included; psycopg raises it.
        async with driver.pipeline():
            await cursor.execute(_store_sql(tuple(stored)), {"stored_id": case_id, **stored})
            await cursor.execute(_INSERT_EVENT, _with_json(planned.event, "payload"))
            if planned.alert is not None:
                alert = alert_row(
                    claimed._replace(**planned.stored), event_type=planned.alert,
                    reason=str(change.to), layers=layer_kinds_of(row.layers),
                    backfill=claimed.backfill, bounds=_bounds(claimed),
                )  # fmt: skip
                alert_values = _with_json({**alert, "created_at": now}, "payload")
                await cursor.execute(_INSERT_ALERT, alert_values)
            await driver.commit()
    after = claimed._replace(**planned.stored)
    read = case_read(
        after, jurisdiction=row.jurisdiction, assignee=row.assignee, bounds=_bounds(after), now=now
    )
    return Answer(read.model_dump_json().encode(), read.version)


@asynccontextmanager
async def _driver(pool: AsyncConnectionPool[Any]) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A pooled connection; a database error in the block comes out as SQLAlchemy's."""
    try:
        # The pool rolls back whatever a failed block left open, and drops a broken connection.
        async with pool.connection() as driver:
            yield driver
    except psycopg.Error as error:
        raise _as_sqlalchemy_error(error) from error


def connection_pool(
    database_url: str, *, max_size: int, timeout_s: float = POOL_TIMEOUT_S
) -> AsyncConnectionPool[Any]:
    """The pool of driver connections `transition` takes (opened by the caller).

    A request waits at most `timeout_s` for a connection (the database down, or every
    connection busy), then is answered 503 + Retry-After like the session path's requests."""
    conninfo = make_url(database_url).set(drivername="postgresql")
    return AsyncConnectionPool(
        conninfo.render_as_string(hide_password=False),
        kwargs={"application_name": APPLICATION_NAME},
        min_size=1,
        max_size=max_size,
        timeout=timeout_s,
        open=False,
    )


def _claim_parameters(case_id: int, version: int, principal: Principal) -> dict[str, Any]:
    parameters: dict[str, Any] = {"claimed_id": case_id, "claimed_version": version}
    if not principal.sees_everything:
        parameters["reach"] = sorted(principal.jurisdiction_ids)
    return parameters


def _as_read(row: Any) -> Any:
    """The claimed row as the ORM would show it: UTC times, the enums as enums."""
    values = {name: getattr(row, name) for name in _ROW_FIELDS}
    for name in _TIMES:
        if values[name] is not None:
            values[name] = values[name].astimezone(UTC)
    values["status"] = CaseStatus(values["status"])
    values["confidence_level"] = ConfidenceLevel(values["confidence_level"])
    return _Claimed(**values)


def _bounds(case: Any) -> tuple[float, float, float, float]:
    return (case.minx, case.miny, case.maxx, case.maxy)


def _with_json(fields: dict[str, Any], name: str) -> dict[str, Any]:
    return {**fields, name: Jsonb(fields[name])}


def _as_sqlalchemy_error(error: psycopg.Error) -> DBAPIError:
    """The SQLAlchemy exception the session path would have raised for `error`, which the
    API's handlers answer (a dropped connection: 503 + Retry-After)."""
    invalidated = _DIALECT.is_disconnect(error, None, None)
    wrapped = DBAPIError.instance(
        None, None, error, psycopg.Error, connection_invalidated=invalidated, dialect=_DIALECT
    )
    return wrapped  # type: ignore[return-value]


def _sql(statement: ClauseElement) -> str:
    """`statement` as psycopg's SQL (named %(...)s parameters)."""
    return str(statement.compile(dialect=_DIALECT))


_SET_SCOPE = _sql(text("SELECT set_config(:name, :value, true)"))
_INSERT_EVENT = _sql(
    insert(table_of(CaseEvent))
    .inline()  # no RETURNING of the new id: nothing reads it
    .values({c.name: bindparam(c.name) for c in table_of(CaseEvent).c if c.name != "id"})
)
#: The outbox columns `alert_row` gives, and its creation time.
_ALERT_COLUMNS = ("event_type", "case_id", "jurisdiction_id", "priority", "backfill", "payload")
_INSERT_ALERT = _sql(
    insert(table_of(AlertEvent))
    .inline()
    .values({name: bindparam(name) for name in (*_ALERT_COLUMNS, "created_at")})
)


@functools.cache
def _claim_sql(sees_everything: bool) -> str:
    """The claim of `transitions._claim_statement` as psycopg's SQL, with the jurisdiction's
    code and the assignee's name the answer needs."""
    # `outbox.layer_kinds_column` with its separator written out: the driver gets no
    # parameter for it.
    layers = (
        select(func.string_agg(LayerHit.layer_kind, literal_column("','")))
        .join(Detection, Detection.id == LayerHit.detection_id)
        .where(Detection.case_id == _CASES.c.id)
    )
    jurisdiction = select(Jurisdiction.code).where(Jurisdiction.id == _CASES.c.jurisdiction_id)
    assignee = select(ApiClient.name).where(ApiClient.id == _CASES.c.assignee_id)
    statement = (
        select(
            *_READ_COLUMNS,
            layers.scalar_subquery().label("layers"),
            jurisdiction.scalar_subquery().label("jurisdiction"),
            assignee.scalar_subquery().label("assignee"),
        )
        .where(
            _CASES.c.id == bindparam("claimed_id"),
            _CASES.c.version == bindparam("claimed_version"),
        )
        .with_for_update(of=_CASES)
    )
    if not sees_everything:
        reach = bindparam("reach", type_=ARRAY(BigInteger))
        statement = statement.where(_CASES.c.jurisdiction_id == any_(reach))
    return _sql(statement)


@functools.cache
def _store_sql(columns: tuple[str, ...]) -> str:
    """One UPDATE of `columns` of the case `stored_id`, per set of columns a move changes."""
    return _sql(
        update(_CASES)
        .where(_CASES.c.id == bindparam("stored_id"))
        .values({name: bindparam(name) for name in columns})
    )
