"""A committed database per test, a real uvicorn server on 127.0.0.1 and helpers to fill them.

Feeds are read by other connections and other threads, so these tests commit for real: on
SQLite each test gets a copy of a migrated file under tmp_path; on PostgreSQL (when
TIANXUN_TEST_POSTGRES_URL is set) the shared test database, from which every row a test added
is removed afterwards (alert ids are only ever compared relative to the test's own).
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
import uvicorn
from shapely.geometry import MultiPolygon, Polygon
from sqlalchemy import Engine, delete, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import sessionmaker

from models import (
    AlertEvent,
    ApiClient,
    Case,
    ClientJurisdiction,
    Jurisdiction,
    WebhookDelivery,
    WebhookSubscription,
)
from models.client import Role
from models.jurisdiction import JurisdictionLevel
from service.clients import create_client
from service.db import SQLITE_IMMEDIATE, create_db_engine, create_session_factory, transaction
from service.main import create_app
from service.settings import Settings


@dataclass
class LiveDb:
    url: str
    engine: Engine
    sessions: sessionmaker[Any]

    def add_event(self, event_type: str = "case_created", **fields: Any) -> int:
        with transaction(self.sessions) as session:
            event = AlertEvent(event_type=event_type, payload=fields.pop("payload", {}), **fields)
            session.add(event)
            session.flush()
            return event.id

    def add_jurisdiction(self, label: str) -> tuple[int, str]:
        square = Polygon([(120, 30), (120.1, 30), (120.1, 30.1), (120, 30.1)])
        with transaction(self.sessions) as session:
            area = Jurisdiction(
                code=f"{label}-{uuid4().hex[:8]}", name=label, level=JurisdictionLevel.district,
                geom=MultiPolygon([square]), area_m2=1.0,
            )  # fmt: skip
            session.add(area)
            session.flush()
            return area.id, area.code

    def add_client(
        self, role: Role, jurisdiction_codes: list[str] | None = None
    ) -> tuple[int, str]:
        with transaction(self.sessions) as session:
            issued = create_client(
                f"{role}-{uuid4().hex[:8]}", session=session, role=role,
                jurisdiction_codes=jurisdiction_codes or [],
            )  # fmt: skip
            return issued.client_id, issued.key


@pytest.fixture(scope="session")
def migrated_sqlite_template(sqlite_url: str) -> Path:
    return Path(make_url(sqlite_url).database or "")


@pytest.fixture(params=["sqlite", "postgresql"])
def live_db(
    request: pytest.FixtureRequest, tmp_path: Path, migrated_sqlite_template: Path
) -> Iterator[LiveDb]:
    if request.param == "sqlite":
        path = tmp_path / "alerts.db"
        shutil.copyfile(migrated_sqlite_template, path)
        url = f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("postgresql_url")
    engine = create_db_engine(url)
    # Writers take SQLite's lock at BEGIN, as the service's own writers do.
    db = LiveDb(url, engine, create_session_factory(engine.execution_options(**SQLITE_IMMEDIATE)))
    before = _last_ids(db)
    try:
        yield db
    finally:
        _remove_rows_after(db, before)
        engine.dispose()


_ADDED_ROWS = (AlertEvent, ApiClient, Case, Jurisdiction)


def _last_ids(db: LiveDb) -> dict[type, int]:
    with db.sessions() as session:
        return {m: session.scalar(select(func.coalesce(func.max(m.id), 0))) for m in _ADDED_ROWS}


def _remove_rows_after(db: LiveDb, before: dict[type, int]) -> None:
    """Leave a shared database as the test found it: other tests count its rows."""
    with transaction(db.sessions) as session:
        session.execute(delete(WebhookDelivery))
        session.execute(delete(WebhookSubscription))
        session.execute(delete(AlertEvent).where(AlertEvent.id > before[AlertEvent]))
        session.execute(delete(Case).where(Case.id > before[Case]))
        session.execute(
            delete(ClientJurisdiction).where(ClientJurisdiction.client_id > before[ApiClient])
        )
        session.execute(delete(ApiClient).where(ApiClient.id > before[ApiClient]))
        session.execute(delete(Jurisdiction).where(Jurisdiction.id > before[Jurisdiction]))


def live_settings(db: LiveDb, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": db.url,
        "alert_poll_seconds": 0.05,
        "alert_gap_max_wait_seconds": 10.0,
        "webhook_poll_seconds": 0.05,
        "webhook_retry_base_seconds": 0.05,
        "webhook_retry_max_seconds": 0.2,
        "webhook_retry_window_seconds": 60.0,
        "webhook_timeout_seconds": 2.0,
        "webhook_allowed_networks": ["127.0.0.0/8"],
    }
    return Settings(**(values | overrides))


@dataclass
class LiveServer:
    base_url: str
    settings: Settings


@contextmanager
def running_server(settings: Settings) -> Iterator[LiveServer]:
    """The app under uvicorn on a free 127.0.0.1 port, in a thread, until the block ends."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(settings), log_level="warning", lifespan="on", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)  # uvicorn offers no event to wait on for "started"
        yield LiveServer(f"http://127.0.0.1:{port}", settings)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
