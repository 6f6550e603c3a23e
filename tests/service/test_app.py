"""The application factory, probes, problem+json errors and request ids, over real HTTP handling."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.main import create_app
from service.settings import Settings


def client_for(url: str, tmp_path: Path) -> TestClient:
    return TestClient(create_app(Settings(database_url=url, data_dir=tmp_path / "var")))


def test_healthz_answers(tmp_path: Path, sqlite_url: str) -> None:
    with client_for(sqlite_url, tmp_path) as client:
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_reports_the_migration_when_at_head(db_url: str, tmp_path: Path) -> None:
    with client_for(db_url, tmp_path) as client:
        response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["migration"] is not None


def test_readyz_says_what_to_do_on_an_unmigrated_database(tmp_path: Path) -> None:
    with client_for(f"sqlite:///{tmp_path / 'empty.db'}", tmp_path) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert "tianxun db upgrade" in response.json()["detail"]


def test_unknown_path_is_problem_json(tmp_path: Path, sqlite_url: str) -> None:
    with client_for(sqlite_url, tmp_path) as client:
        response = client.get("/no/such/thing")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 404 and body["title"] == "Not Found"


def test_request_id_is_echoed_or_made(tmp_path: Path, sqlite_url: str) -> None:
    with client_for(sqlite_url, tmp_path) as client:
        echoed = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
        made = client.get("/healthz")
        hostile = client.get("/healthz", headers={"X-Request-ID": "x" * 500})
    assert echoed.headers["X-Request-ID"] == "abc-123"
    assert len(made.headers["X-Request-ID"]) == 32
    assert hostile.headers["X-Request-ID"] != "x" * 500


def test_openapi_document_is_served(tmp_path: Path, sqlite_url: str) -> None:
    with client_for(sqlite_url, tmp_path) as client:
        spec = client.get("/openapi.json").json()
        docs = client.get("/docs")
    assert "/readyz" in spec["paths"]
    assert docs.status_code == 200


def test_settings_refuse_a_crs_that_is_not_an_epsg_code() -> None:
    with pytest.raises(ValueError, match="EPSG"):
        Settings(area_crs="http://example.com/crs")


def test_a_locked_database_answers_503_with_retry_after(tmp_path: Path) -> None:
    import sqlite3

    from tests.conftest import migrate

    sqlite_url = f"sqlite:///{tmp_path / 'locked.db'}"
    migrate(sqlite_url)

    from models.client import Role
    from service.clients import create_client
    from service.db import create_db_engine, create_session_factory, transaction

    engine = create_db_engine(sqlite_url)
    with transaction(create_session_factory(engine)) as session:
        key = create_client(
            "locked-gateway", session=session, role=Role.ingest, jurisdiction_codes=[]
        ).key
    engine.dispose()
    app = create_app(Settings(database_url=sqlite_url, sqlite_busy_timeout_ms=50))
    blocker = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with TestClient(app) as client:
            response = client.post(
                "/v1/cameras/T1/presets/1/snapshots",
                params={"captured_at": "2025-01-01T00:00:00Z"},
                content=b"\xff\xd8\xff\xe0" + b"0" * 100,
                headers={"Content-Type": "image/jpeg", "Authorization": f"Bearer {key}"},
            )
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "1"
