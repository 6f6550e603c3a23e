"""Shared fixtures: a migrated database on SQLite and, when configured, PostgreSQL + PostGIS.

Database tests take the `db_session` (or `db_engine`) fixture and then run once per backend.
PostgreSQL runs when TIANXUN_TEST_POSTGRES_URL points at an empty database with PostGIS.
Each test runs inside a transaction that is rolled back at the end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from service.db import alembic_config, create_db_engine

POSTGRES_URL = os.environ.get("TIANXUN_TEST_POSTGRES_URL")
SHARED_CD = Path(__file__).resolve().parents[2] / "shared" / "data" / "cd"
BACKENDS = ["sqlite", "postgresql"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _uses_a_database(item):
            item.add_marker(pytest.mark.db)


def _uses_a_database(item: pytest.Item) -> bool:
    """Database tests take a database fixture or are parametrised over the backends."""
    if {"db_engine", "db_session", "db_url"} & set(getattr(item, "fixturenames", ())):
        return True
    callspec = getattr(item, "callspec", None)
    params = callspec.params.values() if callspec is not None else ()
    return any(isinstance(value, str) and value in BACKENDS for value in params)


def migrate(url: str) -> None:
    config = alembic_config(url)
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head")


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
    migrate(url)
    return url


@pytest.fixture(scope="session")
def postgresql_url() -> str:
    if not POSTGRES_URL:
        pytest.skip("TIANXUN_TEST_POSTGRES_URL not set: PostgreSQL tests run in .ci/run")
    migrate(POSTGRES_URL)
    return POSTGRES_URL


@pytest.fixture(params=BACKENDS)
def fresh_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new migrated database that only this test (and the processes it starts) uses."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'fresh.db'}"
        migrate(url)
        yield url
        return
    with fresh_postgresql_database() as url:
        yield url


# Parametrised by its one backend so that the test's id names it, as .ci/run selects them.
@pytest.fixture(params=["postgresql"])
def fresh_postgresql_engine() -> Iterator[Engine]:
    """An engine on a new migrated PostgreSQL database, for races between concurrent
    transactions that SQLite, one writer at a time, cannot have."""
    with fresh_postgresql_database() as url:
        engine = create_db_engine(url)
        try:
            yield engine
        finally:
            engine.dispose()


@contextmanager
def fresh_postgresql_database() -> Iterator[str]:
    if not POSTGRES_URL:
        pytest.skip("TIANXUN_TEST_POSTGRES_URL not set: PostgreSQL tests run in .ci/run")
    server = make_url(POSTGRES_URL)
    name = f"{server.database}_fresh_{uuid.uuid4().hex[:8]}"
    # Pre-ping: a test may have restarted the server since this connection was pooled.
    admin = create_engine(server, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = server.set(database=name).render_as_string(hide_password=False)
    postgis = create_engine(url, isolation_level="AUTOCOMMIT")
    with postgis.connect() as connection:
        connection.execute(text("CREATE EXTENSION postgis"))
    postgis.dispose()
    try:
        migrate(url)
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest) -> str:
    """A migrated database URL, once per backend."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


_engines: dict[str, Engine] = {}


@pytest.fixture
def db_engine(db_url: str) -> Engine:
    if db_url not in _engines:
        _engines[db_url] = create_db_engine(db_url)
    return _engines[db_url]


@pytest.fixture
def db_session(db_engine: Engine) -> Iterator[Session]:
    """A session joined to an outer transaction that is rolled back after the test."""
    with db_engine.connect() as connection:
        outer = connection.begin()
        session = Session(bind=connection, join_transaction_mode="create_savepoint")
        try:
            yield session
        finally:
            session.close()
            outer.rollback()


@pytest.fixture(scope="session", autouse=True)
def _dispose_engines() -> Iterator[None]:
    yield
    for engine in _engines.values():
        engine.dispose()


@pytest.fixture
def shared_cd() -> Path:
    """The external labelled pairs (read-only, never copied); tests skip without them."""
    if not SHARED_CD.is_dir():
        pytest.skip(f"{SHARED_CD} is absent")
    return SHARED_CD


@contextmanager
def ordinary_role(owner_url: str) -> Iterator[str]:
    """The URL of a new login role that row-level security applies to, as in production.

    Not a superuser, no BYPASSRLS, owns nothing: it may read and write the tables the
    migrations made (as `owner_url`'s role), nothing more. Dropped, with its grants, at the end.
    """
    owner = make_url(owner_url)
    name = f"tianxun_app_{uuid.uuid4().hex[:8]}"
    admin = create_engine(owner, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        for statement in (
            f"CREATE ROLE {name} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE",
            f"GRANT USAGE ON SCHEMA public TO {name}",
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {name}",
            f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {name}",
        ):
            connection.execute(text(statement))
    try:
        yield owner.set(username=name, password=None).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f"DROP OWNED BY {name}"))  # its grants in this database
            connection.execute(text(f"DROP ROLE {name}"))
        admin.dispose()
