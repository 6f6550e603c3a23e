"""Scenes from uploads: camera snapshots and remote-sensing tiles, each with its STAC item.

The same bytes are one scene (sha256 is unique): a duplicate upload returns the existing
scene. A new scene is stored, recorded as `received` and queued for validation, except a
snapshot of a calibrated preset: it is queued straight for analysis, whose decode checks
what validation would (and fails the scene with the reason), so it costs one job and one
JPEG decode less.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pystac
from pystac.extensions.file import FileExtension
from pystac.extensions.projection import ProjectionExtension
from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry
from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models.base import utcnow
from models.camera import Camera, CameraPreset
from models.scene import IngestJob, Scene, SceneKind, SceneStatus
from service.errors import InvalidInputError, NotFoundError
from service.ingest.store import StagedObject, commit_object, discard
from service.queue import enqueue
from service.settings import Settings

VALIDATE_TASK = "validate"
CAMERA_TASK = "analyse_camera"
SNAPSHOT_BANDS = ("red", "green", "blue")
# Older capture times come from cameras whose clock was reset, not from real archives.
EARLIEST_CAPTURE = datetime(1972, 7, 23, tzinfo=UTC)  # Landsat 1, the first land imagery


@dataclass(frozen=True)
class IngestResult:
    scene: Scene
    created: bool  # False when the bytes were already stored as this scene
    # The scene's jobs when this call made them (a new scene has only its first one), so
    # the answer needs no query for them; None means "look them up".
    jobs: list[IngestJob] | None = None


def get_scene(*, session: Session, scene_id: int) -> Scene | None:
    return session.get(Scene, scene_id)


def get_scene_or_raise(*, session: Session, scene_id: int) -> Scene:
    scene = get_scene(session=session, scene_id=scene_id)
    if scene is None:
        raise NotFoundError(f"scene {scene_id} does not exist")
    return scene


def scene_jobs(*, session: Session, scene_id: int) -> list[IngestJob]:
    return list(
        session.scalars(
            select(IngestJob).where(IngestJob.scene_id == scene_id).order_by(IngestJob.id)
        )
    )


def get_preset_with_camera_or_raise(
    *, session: Session, camera_code: str, preset: str
) -> tuple[CameraPreset, Camera]:
    # Unprintable codes (NUL bytes break PostgreSQL text) cannot name a registered camera.
    printable = camera_code.isprintable() and preset.isprintable()
    # One query for both rows (every snapshot asks); the camera alone only to say what is wrong.
    found = (
        session.execute(_PRESET_WITH_CAMERA, {"code": camera_code, "name": preset}).one_or_none()
        if printable
        else None
    )
    if found is not None:
        return found[0], found[1]
    camera = (
        session.scalars(select(Camera.id).where(Camera.code == camera_code)).one_or_none()
        if printable
        else None
    )
    if camera is None:
        raise NotFoundError(f"camera {camera_code!r} is not registered; register it first")
    raise NotFoundError(
        f"camera {camera_code!r} has no preset {preset!r}; register the preset first"
    )


def check_acquired_at(
    value: datetime, *, skew_seconds: float, now: datetime | None = None
) -> datetime:
    """The capture time in UTC; naive times and times in the future are refused."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInputError(
            f"capture time {value.isoformat()} has no timezone: send ISO 8601 with an offset, "
            "e.g. 2026-11-28T08:30:00+08:00"
        )
    try:
        value = value.astimezone(UTC)
    except OverflowError as error:
        raise InvalidInputError(f"capture time {value.isoformat()} is out of range") from error
    if value < EARLIEST_CAPTURE:
        raise InvalidInputError(
            f"capture time {value.isoformat()} is before {EARLIEST_CAPTURE.year}: "
            "check the sender's clock (a camera that lost its time often reports 1970)"
        )
    now = now or utcnow()
    if value > now + timedelta(seconds=skew_seconds):
        raise InvalidInputError(
            f"capture time {value.isoformat()} is in the future (server time "
            f"{now.isoformat()}); check the sender's clock"
        )
    return value


def ingest_snapshot(
    *,
    session: Session,
    settings: Settings,
    staged: StagedObject,
    camera_code: str,
    preset: str,
    captured_at: datetime,
    source: str = "",
) -> IngestResult:
    """Record a camera snapshot (JPEG bytes already staged) and queue its validation, or its
    analysis when the preset is calibrated."""
    try:
        found, camera = get_preset_with_camera_or_raise(
            session=session, camera_code=camera_code, preset=preset
        )
        acquired_at = check_acquired_at(
            captured_at, skew_seconds=settings.capture_clock_skew_seconds
        )
    except Exception:
        discard(staged)
        raise
    return _record_scene(
        session,
        settings,
        staged,
        kind=SceneKind.camera_snapshot,
        acquired_at=acquired_at,
        task=CAMERA_TASK if found.homography is not None else VALIDATE_TASK,
        # The worker that advanced the preset last may still hold its state decoded.
        preferred_worker=found.state_holder,
        camera_preset_id=found.id,
        sensor="tower-camera",
        source=source,
        view=CameraView.of(camera, found),
    )


def ingest_tile(
    *,
    session: Session,
    settings: Settings,
    staged: StagedObject,
    acquired_at: datetime,
    sensor: str = "",
    source: str = "",
) -> IngestResult:
    """Record a remote-sensing tile (GeoTIFF bytes already staged) and queue its validation."""
    try:
        acquired_at = check_acquired_at(
            acquired_at, skew_seconds=settings.capture_clock_skew_seconds
        )
        if len(sensor) > 100 or not sensor.isprintable():
            raise InvalidInputError(
                "sensor must be at most 100 printable characters, e.g. 'GF-2 PMS'"
            )
    except Exception:
        discard(staged)
        raise
    return _record_scene(
        session,
        settings,
        staged,
        kind=SceneKind.rs_tile,
        task=VALIDATE_TASK,
        preferred_worker=None,
        acquired_at=acquired_at,
        camera_preset_id=None,
        sensor=sensor,
        source=source,
    )


def _find_by_sha256(session: Session, sha256: str) -> Scene | None:
    return session.scalars(_BY_SHA256, {"sha256": sha256}).one_or_none()


# Every upload asks both: built once, as building a statement costs several times what
# executing it does.
_PRESET_WITH_CAMERA = (
    select(CameraPreset, Camera)
    .join(Camera, CameraPreset.camera_id == Camera.id)
    .where(Camera.code == bindparam("code"), CameraPreset.preset == bindparam("name"))
)
_BY_SHA256 = select(Scene).where(Scene.sha256 == bindparam("sha256"))


def _record_scene(
    session: Session,
    settings: Settings,
    staged: StagedObject,
    *,
    task: str,
    preferred_worker: str | None,
    view: CameraView | None = None,
    **fields: Any,
) -> IngestResult:
    existing = _find_by_sha256(session, staged.sha256)
    if existing is not None:
        discard(staged)
        return IngestResult(existing, created=False)
    stored = commit_object(staged, settings.data_dir)
    scene = Scene(
        sha256=stored.sha256,
        storage_uri=stored.storage_uri,
        size_bytes=stored.size_bytes,
        media_type=stored.media_type,
        status=SceneStatus.received,
        received_at=utcnow(),
        bands=[],
        **fields,
    )
    # Built before the insert, so that the row is written once.
    scene.stac_item = build_stac_item(scene, view=view)
    try:
        with session.begin_nested():
            session.add(scene)
            session.flush()
    except IntegrityError:
        # The same bytes arrived in a concurrent request that committed first.
        existing = _find_by_sha256(session, stored.sha256)
        if existing is None:
            raise
        return IngestResult(existing, created=False)
    job = enqueue(
        session=session,
        scene_id=scene.id,
        task=task,
        max_attempts=settings.max_attempts,
        preferred_worker=preferred_worker,
        new_scene=True,
    )
    session.flush()
    return IngestResult(scene, created=True, jobs=[job])


@dataclass(frozen=True)
class CameraView:
    """The camera preset a snapshot came from, as its STAC item names it."""

    camera: str
    preset: str
    calibrated: bool
    geom: BaseGeometry | None  # the ground the preset sees

    @classmethod
    def of(cls, camera: Camera, preset: CameraPreset) -> CameraView:
        return cls(camera.code, preset.preset, preset.homography is not None, preset.geom)


def refresh_stac_item(*, session: Session, scene: Scene, view: CameraView | None = None) -> None:
    """Rebuild the scene's STAC item from what it is now; a snapshot's camera `view` is looked
    up unless the caller has it."""
    if view is None and scene.camera_preset_id is not None:
        preset = session.get(CameraPreset, scene.camera_preset_id)
        camera = session.get(Camera, preset.camera_id) if preset is not None else None
        view = CameraView.of(camera, preset) if camera is not None and preset is not None else None
    scene.stac_item = build_stac_item(scene, view=view)


def build_stac_item(scene: Scene, *, view: CameraView | None = None) -> dict[str, Any]:
    """The scene as a STAC 1.1 Item: where, when, which sensor, and its one data asset."""
    geom = scene.geom if scene.geom is not None else (view.geom if view else None)
    properties: dict[str, Any] = {
        "tianxun:kind": scene.kind.value,
        "tianxun:status": scene.status.value,
        "created": scene.received_at.isoformat(),
    }
    if scene.sensor:
        properties["instruments"] = [scene.sensor]
    if view is not None:
        properties["tianxun:camera"] = view.camera
        properties["tianxun:preset"] = view.preset
        properties["tianxun:calibrated"] = view.calibrated
    item = pystac.Item(
        id=scene.sha256,
        geometry=mapping(geom) if geom is not None else None,
        bbox=list(geom.bounds) if geom is not None else None,
        datetime=scene.acquired_at,
        properties=properties,
    )
    asset = pystac.Asset(href=scene.storage_uri, media_type=scene.media_type, roles=["data"])
    item.add_asset("data", asset)
    FileExtension.ext(asset, add_if_missing=True).size = scene.size_bytes
    if scene.crs is not None and scene.width is not None and scene.height is not None:
        projection = ProjectionExtension.ext(item, add_if_missing=True)
        projection.code = scene.crs
        projection.shape = [scene.height, scene.width]
    return item.to_dict(include_self_link=False)
