"""`tianxun ingest PATH...`: the same scenes as the API, from files, one bad file at a time."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from models.scene import Scene, SceneKind
from scripts.cli import app
from service.db import create_db_engine, create_session_factory, transaction
from tests.conftest import migrate
from tests.service.ingest.conftest import add_camera, geotiff_bytes, jpeg_bytes


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    migrate(url)
    monkeypatch.setenv("TIANXUN_DATABASE_URL", url)
    monkeypatch.setenv("TIANXUN_DATA_DIR", str(tmp_path / "data"))
    return url


def scenes(url: str) -> list[Scene]:
    engine = create_db_engine(url)
    try:
        with create_session_factory(engine)() as session:
            return list(session.scalars(select(Scene).order_by(Scene.id)))
    finally:
        engine.dispose()


def test_snapshots_are_ingested_and_a_bad_file_is_reported(database: str, tmp_path: Path) -> None:
    engine = create_db_engine(database)
    with transaction(create_session_factory(engine)) as session:
        code, preset = add_camera(session)
    engine.dispose()
    good, duplicate, bad = tmp_path / "a.jpg", tmp_path / "b.jpg", tmp_path / "c.jpg"
    good.write_bytes(jpeg_bytes(1))
    duplicate.write_bytes(jpeg_bytes(1))
    bad.write_bytes(b"GIF89a not a jpeg")
    result = CliRunner().invoke(
        app,
        [
            "ingest",
            str(good),
            str(duplicate),
            str(bad),
            "--camera",
            code,
            "--preset",
            preset,
            "--captured-at",
            "2026-11-28T08:30:00+08:00",
        ],
    )
    assert result.exit_code == 1
    assert "a.jpg: stored as scene" in result.output
    assert "b.jpg: already stored as scene" in result.output
    assert "c.jpg: refused: the body does not look like a JPEG" in result.output
    assert [s.kind for s in scenes(database)] == [SceneKind.camera_snapshot]


def test_tiles_are_ingested_with_their_sensor(database: str, tmp_path: Path) -> None:
    path = tmp_path / "tile.tif"
    path.write_bytes(geotiff_bytes(tmp_path))
    result = CliRunner().invoke(
        app, ["ingest", str(path), "--captured-at", "2026-11-27T02:30:00+00:00", "--sensor", "GF-2"]
    )
    assert result.exit_code == 0, result.output
    (scene,) = scenes(database)
    assert (scene.kind, scene.sensor) == (SceneKind.rs_tile, "GF-2")
