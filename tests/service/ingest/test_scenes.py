"""Scenes from snapshots and tiles: one scene per content, a queued validation, a STAC item."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.camera import Camera, CameraPreset
from models.scene import IngestJob, JobStatus, SceneStatus
from service.errors import InvalidInputError, NotFoundError
from service.ingest.scenes import CAMERA_TASK, VALIDATE_TASK, ingest_snapshot, ingest_tile
from service.ingest.store import JPEG, TIFF, object_path, stage_chunks
from service.ingest.validate import validate_scene
from service.queue import claim
from service.settings import Settings
from tests.service.ingest.conftest import add_camera, geotiff_bytes, jpeg_bytes

CAPTURED = datetime(2026, 11, 28, 8, 30, tzinfo=UTC)


def snapshot(
    session: Session,
    settings: Settings,
    data: bytes,
    code: str,
    preset: str,
    captured_at: datetime = CAPTURED,
):  # type: ignore[no-untyped-def]
    staged = stage_chunks([data], settings.data_dir, kind=JPEG, max_bytes=10**6)
    return ingest_snapshot(
        session=session,
        settings=settings,
        staged=staged,
        camera_code=code,
        preset=preset,
        captured_at=captured_at,
    )


def tile(session: Session, settings: Settings, data: bytes):  # type: ignore[no-untyped-def]
    staged = stage_chunks([data], settings.data_dir, kind=TIFF, max_bytes=10**6)
    return ingest_tile(
        session=session, settings=settings, staged=staged, acquired_at=CAPTURED, sensor="GF-2 PMS"
    )


def run_validation(session: Session, settings: Settings, scene_id: int) -> None:
    job = claim(session=session, owner="test", lease_seconds=60, tasks=[VALIDATE_TASK])
    while job is not None and job.scene_id != scene_id:
        job = claim(session=session, owner="test", lease_seconds=60, tasks=[VALIDATE_TASK])
    assert job is not None
    validate_scene(session, job, settings)


def test_snapshot_becomes_a_received_scene_with_a_queued_validation(
    db_session: Session, settings: Settings
) -> None:
    code, preset = add_camera(db_session)
    data = jpeg_bytes()
    result = snapshot(db_session, settings, data, code, preset)
    scene = result.scene
    assert result.created and scene.status == SceneStatus.received
    assert object_path(settings.data_dir, scene.storage_uri).read_bytes() == data
    job = db_session.scalars(select(IngestJob).where(IngestJob.scene_id == scene.id)).one()
    assert (job.task, job.status) == (VALIDATE_TASK, JobStatus.queued)
    item = scene.stac_item
    assert item is not None and item["id"] == scene.sha256
    assert item["properties"]["tianxun:camera"] == code
    assert item["properties"]["datetime"].startswith("2026-11-28T08:30:00")
    assert item["assets"]["data"]["file:size"] == len(data)


def test_the_same_bytes_again_return_the_existing_scene(
    db_session: Session, settings: Settings
) -> None:
    code, preset = add_camera(db_session)
    data = jpeg_bytes()
    first = snapshot(db_session, settings, data, code, preset)
    again = snapshot(db_session, settings, data, code, preset)
    assert not again.created and again.scene.id == first.scene.id
    jobs = db_session.scalars(select(IngestJob).where(IngestJob.scene_id == first.scene.id))
    assert len(list(jobs)) == 1


def test_unknown_camera_or_preset_is_named_in_the_error(
    db_session: Session, settings: Settings
) -> None:
    code, _ = add_camera(db_session)
    with pytest.raises(NotFoundError, match="camera 'nope' is not registered"):
        snapshot(db_session, settings, jpeg_bytes(), "nope", "1")
    with pytest.raises(NotFoundError, match=f"camera '{code}' has no preset '9'"):
        snapshot(db_session, settings, jpeg_bytes(), code, "9")
    assert list((settings.data_dir / "staging").iterdir()) == []


def test_a_calibrated_presets_snapshot_is_queued_straight_for_analysis(
    db_session: Session, settings: Settings
) -> None:
    code, preset = add_camera(db_session)
    row = db_session.scalars(select(CameraPreset).join(Camera).where(Camera.code == code)).one()
    row.homography = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    row.state_holder = "tower-host:4242"
    scene = snapshot(db_session, settings, jpeg_bytes(), code, preset).scene
    job = db_session.scalars(select(IngestJob).where(IngestJob.scene_id == scene.id)).one()
    assert (job.task, job.status) == (CAMERA_TASK, JobStatus.queued)
    assert job.preferred_worker == "tower-host:4242"  # where the preset's state is held


def test_validation_leaves_a_snapshot_analysed_meanwhile_alone(
    db_session: Session, settings: Settings
) -> None:
    code, preset = add_camera(db_session)
    scene = snapshot(db_session, settings, jpeg_bytes(size=(80, 48)), code, preset).scene
    scene.status = SceneStatus.analysed  # by a later snapshot's job, once calibrated
    run_validation(db_session, settings, scene.id)
    assert scene.status == SceneStatus.analysed and scene.failure_reason is None
    jobs = db_session.scalars(select(IngestJob.task).where(IngestJob.scene_id == scene.id))
    assert list(jobs) == [VALIDATE_TASK]  # no second analysis queued


@pytest.mark.parametrize(
    ("captured_at", "message"),
    [
        (datetime.now(UTC) + timedelta(hours=1), "in the future"),
        (datetime(2026, 11, 28, 8, 30), "has no timezone"),
    ],
)
def test_capture_time_must_be_aware_and_not_in_the_future(
    db_session: Session, settings: Settings, captured_at: datetime, message: str
) -> None:
    code, preset = add_camera(db_session)
    with pytest.raises(InvalidInputError, match=message):
        snapshot(db_session, settings, jpeg_bytes(), code, preset, captured_at)


def test_validation_records_the_snapshot_size(db_session: Session, settings: Settings) -> None:
    code, preset = add_camera(db_session)
    scene = snapshot(db_session, settings, jpeg_bytes(), code, preset).scene
    run_validation(db_session, settings, scene.id)
    assert scene.status == SceneStatus.received and scene.failure_reason is None
    assert (scene.width, scene.height) == (64, 48)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda data: data[: len(data) // 2], "truncated"),
        (lambda data: jpeg_bytes(size=(80, 48)), "calibrated for 64×48"),
    ],
)
def test_an_unusable_snapshot_fails_its_scene_with_the_reason(
    db_session: Session, settings: Settings, damage: object, reason: str
) -> None:
    code, preset = add_camera(db_session)
    data = damage(jpeg_bytes())  # type: ignore[operator]
    scene = snapshot(db_session, settings, data, code, preset).scene
    run_validation(db_session, settings, scene.id)
    assert scene.status == SceneStatus.failed
    assert reason in (scene.failure_reason or "")


def test_validation_reads_the_tile_footprint_and_crs(
    db_session: Session, settings: Settings, tmp_path: Path
) -> None:
    scene = tile(db_session, settings, geotiff_bytes(tmp_path)).scene
    run_validation(db_session, settings, scene.id)
    assert scene.status == SceneStatus.received, scene.failure_reason
    assert scene.crs == "EPSG:4549" and (scene.width, scene.height) == (32, 32)
    assert scene.geom is not None
    west, south, east, north = scene.geom.bounds
    assert 119.9 < west < east < 120.1 and 30.1 < south < north < 30.3
    assert scene.stac_item is not None
    assert scene.stac_item["properties"]["proj:code"] == "EPSG:4549"
    assert scene.stac_item["bbox"] == pytest.approx([west, south, east, north])


def test_a_tile_without_crs_fails_with_what_to_do(
    db_session: Session, settings: Settings, tmp_path: Path
) -> None:
    scene = tile(db_session, settings, geotiff_bytes(tmp_path, crs=None)).scene
    run_validation(db_session, settings, scene.id)
    assert scene.status == SceneStatus.failed
    assert "no CRS" in (scene.failure_reason or "")
