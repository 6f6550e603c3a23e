"""`tianxun ingest PATH...`: snapshots or tiles from files, through the functions the API uses."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.orm import Session, sessionmaker

from service.db import create_db_engine, machine_session_factory, transaction
from service.errors import TianxunError
from service.ingest.scenes import IngestResult, ingest_snapshot, ingest_tile
from service.ingest.store import JPEG, TIFF, stage_file
from service.settings import Settings


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)


def ingest(
    paths: Annotated[list[Path], typer.Argument(help="JPEG snapshots, or GeoTIFF tiles.")],
    captured_at: Annotated[
        datetime,
        typer.Option(
            formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%f%z"],
            help="Capture time with a UTC offset, e.g. 2026-11-28T08:30:00+08:00.",
        ),
    ],
    camera: Annotated[
        str | None, typer.Option(help="Camera code: the files are its snapshots.")
    ] = None,
    preset: Annotated[str | None, typer.Option(help="PTZ preset of the snapshots.")] = None,
    sensor: Annotated[str, typer.Option(help="Sensor of the tiles, e.g. 'GF-2 PMS'.")] = "",
) -> None:
    """Store files as scenes and queue their validation; refused files are reported, exit 1."""
    if (camera is None) != (preset is None):
        raise typer.BadParameter("give --camera and --preset together (snapshots), or neither")
    settings = Settings()
    engine = create_db_engine(settings.database_url)
    factory = machine_session_factory(engine)
    refused = 0
    try:
        for path in paths:
            try:
                result = _ingest_one(factory, settings, path, camera, preset, captured_at, sensor)
            except TianxunError as error:
                refused += 1
                typer.echo(f"{path}: refused: {error}", err=True)
                continue
            verb = "stored as" if result.created else "already stored as"
            typer.echo(f"{path}: {verb} scene {result.scene.id} (sha256 {result.scene.sha256})")
    finally:
        engine.dispose()
    if refused:
        raise typer.Exit(1)


def _ingest_one(
    factory: sessionmaker[Session],
    settings: Settings,
    path: Path,
    camera: str | None,
    preset: str | None,
    captured_at: datetime,
    sensor: str,
) -> IngestResult:
    snapshot = camera is not None and preset is not None
    kind, limit = (
        (JPEG, settings.max_snapshot_bytes) if snapshot else (TIFF, settings.max_tile_bytes)
    )
    staged = stage_file(path, settings.data_dir, kind=kind, max_bytes=limit)
    with transaction(factory) as session:
        if camera is not None and preset is not None:
            return ingest_snapshot(
                session=session,
                settings=settings,
                staged=staged,
                camera_code=camera,
                preset=preset,
                captured_at=captured_at,
                source="cli",
            )
        return ingest_tile(
            session=session,
            settings=settings,
            staged=staged,
            acquired_at=captured_at,
            sensor=sensor,
            source="cli",
        )
