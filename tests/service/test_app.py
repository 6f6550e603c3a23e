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
