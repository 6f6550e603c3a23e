"""The `validate` queue task: decode a stored scene safely and record what it is, or why not.

A file that cannot be used marks its scene `failed` with the reason (the job itself is done:
retrying would not change the bytes). Unexpected errors propagate so the queue retries.
A usable scene is queued for analysis (camera or tile) in the same transaction, snapshots
only once their preset is calibrated. (A calibrated preset's snapshots skip this task: their
analysis checks them as it decodes.)
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from rasterio.transform import array_bounds
from rasterio.warp import transform_bounds
from shapely.geometry import box
from sqlalchemy.orm import Session

from detection.errors import DetectionError
from detection.io.raster import ReadLimits, read_raster
from detection.io.snapshot import decode_snapshot
from models.camera import CameraPreset
from models.scene import Scene, SceneKind, SceneStatus
from service.ingest.scenes import CAMERA_TASK, SNAPSHOT_BANDS, refresh_stac_item
from service.ingest.store import STAGING, object_path
from service.queue import ClaimedJob, enqueue
from service.settings import Settings

# The analysis task of each kind of scene (registered in service.tasks).
ANALYSIS_TASKS = {SceneKind.camera_snapshot: CAMERA_TASK, SceneKind.rs_tile: "analyse_tile"}


class UnusableSceneError(Exception):
    """The stored bytes are not a usable scene; the message is the reason users see."""


def validate_scene(session: Session, job: ClaimedJob, settings: Settings) -> None:
    scene = session.get(Scene, job.scene_id)
    if scene is None:
        raise LookupError(f"scene {job.scene_id} of job {job.id} no longer exists")
    if scene.status == SceneStatus.analysed:
        # A snapshot taken before its preset was calibrated, analysed since with a later one.
        return
    path = object_path(settings.data_dir, scene.storage_uri)
    try:
        if scene.kind == SceneKind.camera_snapshot:
            _validate_snapshot(session, scene, path, settings)
        else:
            _validate_tile(scene, path, settings)
        if scene.status == SceneStatus.failed:  # a requeued job that now succeeds
            scene.status, scene.failure_reason = SceneStatus.received, None
        if _analysable(session, scene):
            enqueue(
                session=session,
                scene_id=scene.id,
                task=ANALYSIS_TASKS[scene.kind],
                max_attempts=settings.max_attempts,
            )
    except (DetectionError, UnusableSceneError) as error:
        scene.status = SceneStatus.failed
        scene.failure_reason = f"validation: {error}"
    refresh_stac_item(session=session, scene=scene)
    session.flush()


def _analysable(session: Session, scene: Scene) -> bool:
    # Snapshots of an uncalibrated preset stay validated but unanalysed: nothing they show
    # can be placed on the map. Calibrating the preset starts analysis from its next snapshot.
    if scene.kind != SceneKind.camera_snapshot:
        return True
    preset = session.get(CameraPreset, scene.camera_preset_id)
    return preset is not None and preset.homography is not None


def _validate_snapshot(session: Session, scene: Scene, path: Path, settings: Settings) -> None:
    preset = session.get(CameraPreset, scene.camera_preset_id)
    expected = (preset.image_width, preset.image_height) if preset is not None else None
    # Decoding at 1/8 scale still reads every entropy-coded block, so truncation shows.
    decoded = decode_snapshot(
        path.read_bytes(),
        expected_size=expected,
        reduce=8,
        max_pixels=settings.max_snapshot_pixels,
    )
    scene.width, scene.height = decoded.full_size
    scene.bands = list(SNAPSHOT_BANDS)


def _validate_tile(scene: Scene, path: Path, settings: Settings) -> None:
    # The reader picks its driver allow-list by suffix; stored objects have none, so it
    # reads them through a suffixed link (the bytes were already checked to be TIFF).
    staging = settings.data_dir / STAGING
    staging.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=staging) as folder:
        link = Path(folder) / "upload.tif"
        link.symlink_to(path.resolve())
        raster = read_raster(link, limits=ReadLimits())
    if raster.crs is None or raster.transform is None:
        raise UnusableSceneError(
            "the tile has no CRS or geotransform: write them (e.g. gdal_edit.py -a_srs "
            "EPSG:4549 -a_ullr ...) and upload again"
        )
    if not raster.crs.startswith("EPSG:"):
        raise UnusableSceneError(
            "the tile's CRS has no EPSG code: reproject it to an EPSG CRS (e.g. EPSG:4549)"
        )
    transform = raster.transform
    if transform.b != 0 or transform.d != 0:
        raise UnusableSceneError(
            "the tile's geotransform is rotated or sheared: warp it north-up and upload again"
        )
    rows, cols = raster.shape
    bounds = transform_bounds(raster.crs, "EPSG:4326", *array_bounds(rows, cols, transform))
    scene.crs = raster.crs
    scene.width, scene.height = cols, rows
    scene.bands = [role or f"band{index + 1}" for index, role in enumerate(raster.band_roles)]
    scene.geom = box(*bounds)
