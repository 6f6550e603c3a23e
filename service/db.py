"""Engines and sessions for SQLite (embedded default) and PostgreSQL + PostGIS."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from service import rls

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ALEMBIC_INI = PROJECT_ROOT / "alembic.ini"

# Execution option that makes the next SQLite transaction take the write lock up front
# (`BEGIN IMMEDIATE`), as a queue claim must; ignored on PostgreSQL.
SQLITE_IMMEDIATE = {"sqlite_begin": "IMMEDIATE"}


def create_db_engine(
    url: str, *, busy_timeout_ms: int = 10_000, echo: bool = False, pre_ping: bool = True
) -> Engine:
    """An engine for `url`; `pre_ping` tests each pooled PostgreSQL connection before use.

    Without the test (the API's choice: it costs a round trip and most of a millisecond of
    CPU per request), a connection the server dropped fails its request, which the API
    answers 503 with Retry-After, and the pool replaces every connection made before.
    """
    if make_url(url).get_backend_name() == "sqlite":
        return _create_sqlite_engine(url, busy_timeout_ms=busy_timeout_ms, echo=echo)
    # Room for every request a process runs at once (its thread pool has 40 threads): with
    # the default 5 (+10 overflow) a busy API process kept closing and opening connections,
    # each new one a PostgreSQL backend to start.
    return create_engine(url, echo=echo, pool_pre_ping=pre_ping, pool_size=20, max_overflow=20)


def _create_sqlite_engine(url: str, *, busy_timeout_ms: int, echo: bool) -> Engine:
    engine = create_engine(url, echo=echo, connect_args={"check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin (the
        # documented recipe), so that SAVEPOINT and BEGIN IMMEDIATE work.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys = ON")
        if make_url(url).database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "")
        connection.exec_driver_sql(f"BEGIN {mode}".strip())

    return engine


def create_session_factory(engine: Engine, *, scope: str = rls.NOTHING) -> sessionmaker[Session]:
    """Sessions whose every transaction starts in the row-level security `scope`.

    The default shows no jurisdiction-scoped rows on PostgreSQL until a request sets its
    caller's scope (`rls.apply_scope`); jobs that act for nobody in particular (workers,
    delivery, commands) ask for `rls.EVERYTHING`, see `machine_session_factory`.
    """
    factory = sessionmaker(engine, expire_on_commit=False, info={rls.SETTING: scope})
    event.listen(factory, "after_begin", rls.set_scope_on_begin)
    return factory


def machine_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that see every jurisdiction's rows: for jobs that act for no caller."""
    return create_session_factory(engine, scope=rls.EVERYTHING)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: committed when the block ends, rolled back if it raises."""
    with factory() as session, session.begin():
        yield session


def alembic_config(url: str | None = None) -> Config:
    config = Config(str(ALEMBIC_INI))
    config.set_main_option("script_location", str(PROJECT_ROOT / "alembic"))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migration_state(engine: Engine) -> tuple[str | None, str | None]:
    """(revision the database is at, head revision of the code)."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    return current, head
