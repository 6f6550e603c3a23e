"""The camera analysis task: a preset's new snapshots, in capture order, through the detector.

The detector's memory of the view (`CameraState`) is kept in the preset's row and advances
in the same transaction as the detections it produced. One job analyses every received
snapshot of its preset up to its own, oldest first, so snapshots whose jobs run out of order
are still analysed in capture order; a snapshot older than the state is refused as out of
order, with the reason on its scene. It goes on with the newer snapshots already received (a
second ago at least), up to `camera_snapshots_per_job` in all, and completes their queued jobs
in its transaction: when jobs wait, a preset's snapshots share one state decode, one state
write and one commit instead of paying for them each. The detector's decode checks each
snapshot as the validation task would (header, size, truncation), so snapshots need not be
validated first: one that cannot be used fails its scene with the reason.

Decoding the stored state costs more than analysing a snapshot, so each worker process keeps
the states it committed (`StateCache`), by preset and state version: a job whose preset row
still carries the version the process committed starts from memory and does not read the
stored state at all. Any other version (another worker advanced it, or reset it) is read from
the row. The new state is still written with the detections, so nothing depends on memory.
The row also names the process that wrote it (`state_holder`), and the preset's next
snapshot is queued as preferring that process (see `service.queue`): with several workers, a
preset's jobs mostly run where its state already is.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import takewhile
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from shapely.geometry.base import BaseGeometry
from sqlalchemy import BindParameter, Row, Select, bindparam, or_, select, update
from sqlalchemy.orm import Session

from detection.camera import CameraParams, analyse_snapshot_bytes, utc_now
from detection.camera_state import (
    CameraDetection,
    CameraState,
    EncodedState,
    SnapshotResult,
    decode_state,
    encode_state,
)
from detection.errors import CalibrationError, DetectionError
from detection.geolocate import Calibration
from detection.io.snapshot import decode_snapshot
from models.base import table_of, utcnow
from models.camera import Camera, CameraHealth, CameraPreset
from models.detection import DetectionSource
from models.scene import Scene, SceneKind, SceneStatus
from service.analysis.coverage import farmland_view, record_feature_observations
from service.analysis.store import (
    DetectorRun,
    FoundChange,
    change_type_of,
    parameters_json,
    polygons_of,
    store_detections,
    store_png,
)
from service.cameras.registry import stored_calibration
from service.cameras.state import store_chunks, stored_chunks
from service.cases.workflow import lock_places
from service.ingest.scenes import SNAPSHOT_BANDS, CameraView, refresh_stac_item
from service.ingest.store import object_path
from service.metrics import CAMERA_STATE_READS
from service.queue import ClaimedJob, complete_queued, worker_process
from service.settings import Settings

CAMERA_DETECTOR_VERSION = "camera-1"
# A job takes a newer snapshot of its preset only once it has been stored this long: uploads
# of one preset that overtake each other in flight are then both in, and the earlier is not
# refused as out of order because a job analysed the later one first.
NEWER_SETTLE = timedelta(seconds=1)
CHIP_MARGIN_PX = 16  # working pixels of context around a detection in its chips
# Health events that mean the ground was not actually seen in that snapshot.
BLIND = frozenset({"no_signal", "obstructed", "moved"})


class StateAdvancedError(Exception):
    """Another job advanced this preset's detector state meanwhile; retrying sees its work."""


PresetKey = tuple[int, datetime]  # id and creation time: an id reused later is another preset


class StateCache:
    """Detector states this process committed, by preset, with the version they were written as.

    A job takes its preset's entry out (so two jobs of one process never share a state) and the
    entry comes back only once the job's write has committed; a job that fails leaves none.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[PresetKey, tuple[int, EncodedState]] = OrderedDict()
        self._lock = threading.Lock()

    def resize(self, capacity: int) -> None:
        with self._lock:
            self.capacity = capacity
            self._trim()

    def take(self, key: PresetKey, version: int) -> EncodedState | None:
        """The state committed as `version`, if this process holds it; forgets the entry."""
        with self._lock:
            entry = self._entries.pop(key, None)
        return entry[1] if entry is not None and entry[0] == version else None

    def keep(self, key: PresetKey, version: int, state: EncodedState) -> None:
        with self._lock:
            self._entries[key] = (version, state)
            self._entries.move_to_end(key)
            self._trim()

    def _trim(self) -> None:
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)


STATES = StateCache(Settings.model_fields["camera_states_cached"].default)


@dataclass(frozen=True)
class PendingSnapshot:
    scene_id: int
    acquired_at: datetime
    path: Path


@dataclass(frozen=True)
class CameraInputs:
    preset_id: int
    preset_key: PresetKey
    camera_id: int
    # The preset as its snapshots' STAC items name it; its ground is where coverage is marked.
    camera_view: CameraView
    image_size: tuple[int, int]
    control_points: list[dict[str, Any]]
    homography: list[list[float]] | None  # as `register_preset` fitted it
    rms_error_m: float | None
    state: bytes | None  # as stored; not read when `cached` holds it
    state_chunks: Mapping[str, bytes]  # the stored chunks `state` names, when it is read
    state_version: int
    farmland: BaseGeometry | None
    snapshots: list[PendingSnapshot]
    parcels: tuple[BaseGeometry, ...] = ()  # the cultivated-land parcels in view
    # The farmland parcels in view at the job's own capture time, for its coverage.
    view_at: datetime | None = None
    view_parcel_ids: tuple[int, ...] = ()
    refusal: str | None = None  # why none of them can be analysed (e.g. no calibration)
    cached: EncodedState | None = None  # the state of `state_version`, from this process

    @property
    def stored_chunk_keys(self) -> frozenset[str]:
        """The chunks the preset's row held at `state_version`: those this process wrote with
        it (`cached`), or every one read (none when no state was stored, or stored whole)."""
        return frozenset(self.cached.chunks if self.cached is not None else self.state_chunks)


@dataclass(frozen=True)
class SnapshotOutcome:
    scene_id: int
    result: SnapshotResult
    changes: list[FoundChange]


@dataclass(frozen=True)
class CameraOutcome:
    inputs: CameraInputs
    state: EncodedState | None
    snapshots: list[SnapshotOutcome]


def prepare_camera_detector() -> None:
    """Load the detector's compiled passes: most of a second, kept off the first job."""
    # Imported here, as the detector does: the API imports this module and never needs them.
    from detection.camera_kernels import load_passes

    load_passes()


def read_camera_inputs(session: Session, job: ClaimedJob, settings: Settings) -> CameraInputs:
    scene, preset, camera = _scene_preset_camera(session, job)
    pending = _pending_snapshots(
        session, preset.id, own=scene, limit=settings.camera_snapshots_per_job
    )
    usable = [s for s in pending if s.status == SceneStatus.received]
    refusal = None
    if preset.homography is None:
        refusal = (
            f"preset {preset.preset!r} of camera {camera.code!r} is not calibrated: PUT "
            f"/v1/cameras/{camera.code}/presets/{preset.preset} with control points, then "
            "ingest the snapshot again"
        )
    key = (preset.id, preset.created_at)
    version = preset.detector_state_version
    STATES.resize(settings.camera_states_cached)  # the process's setting: the same every job
    # Only a job that will advance the state takes it from the cache (and then owns it).
    cached = STATES.take(key, version) if usable and refusal is None else None
    # A deferred column: the stored state is only fetched when it is needed.
    stored = preset.detector_state if usable and cached is None else None
    if usable and refusal is None:
        source = "memory" if cached is not None else "database" if stored is not None else "none"
        CAMERA_STATE_READS.labels(source).inc()
    view = (
        farmland_view(preset.geom, at=scene.acquired_at, session=session)
        if preset.geom is not None
        else None
    )
    return CameraInputs(
        preset_id=preset.id,
        preset_key=key,
        camera_id=camera.id,
        camera_view=CameraView.of(camera, preset),
        image_size=(preset.image_width, preset.image_height),
        control_points=list(preset.control_points),
        homography=preset.homography,
        rms_error_m=preset.rms_error_m,
        state=stored,
        state_chunks=stored_chunks(preset.id, session=session) if stored is not None else {},
        state_version=version,
        farmland=view.geometry if view is not None else None,
        snapshots=[
            PendingSnapshot(s.id, s.acquired_at, object_path(settings.data_dir, s.storage_uri))
            for s in usable
        ],
        parcels=view.parcels if view is not None else (),
        view_at=scene.acquired_at,
        view_parcel_ids=view.feature_ids if view is not None else (),
        refusal=refusal,
        cached=cached,
    )


def _scene_preset_camera(session: Session, job: ClaimedJob) -> tuple[Scene, CameraPreset, Camera]:
    """The job's snapshot with its preset and camera, in one query."""
    row = session.execute(_SCENE_PRESET_CAMERA, {"scene_id": job.scene_id}).one_or_none()
    if row is None or row[0].camera_preset_id is None:
        raise LookupError(f"scene {job.scene_id} of job {job.id} is not a stored camera snapshot")
    scene, preset, camera = row
    if preset is None or camera is None:
        raise LookupError(f"the preset of scene {scene.id} no longer exists")
    return scene, preset, camera


def _pending_snapshots(
    session: Session, preset_id: int, *, own: Scene, limit: int
) -> list[Row[int, datetime, datetime, str, SceneStatus]]:
    """The preset's snapshots not analysed yet, oldest first: every one up to `own`'s capture
    time, then newer ones stored for `NEWER_SETTLE` already, while fewer than `limit` are taken.
    """
    # The first `limit` in capture order: the older ones come first, then the newer ones.
    first = list(session.execute(_WAITING, {"preset_id": preset_id, "limit": limit}))
    older = [scene for scene in first if scene.acquired_at <= own.acquired_at]
    if len(older) == limit:  # a backlog: every older one is taken, however many
        rest = (
            _waiting(preset_id)
            .where(Scene.acquired_at <= own.acquired_at)
            .order_by(*_IN_ORDER)
            .offset(limit)
        )
        return older + list(session.execute(rest))
    settled = utcnow() - NEWER_SETTLE
    # Up to the first one stored too recently: those after it would overtake it.
    newer = first[len(older) :]
    return older + list(takewhile(lambda scene: scene.received_at <= settled, newer))


def _waiting(
    preset_id: int | BindParameter[int],
) -> Select[int, datetime, datetime, str, SceneStatus]:
    """The preset's snapshots not analysed yet: the columns a job uses of them, not whole rows
    (each row's STAC item would be parsed)."""
    return select(
        Scene.id, Scene.acquired_at, Scene.received_at, Scene.storage_uri, Scene.status
    ).where(
        Scene.kind == SceneKind.camera_snapshot,
        Scene.camera_preset_id == preset_id,
        Scene.status.in_([SceneStatus.received, SceneStatus.processing]),
    )


# Every job reads with these: built once, as building a statement costs several times what
# executing it does.
_SCENE_PRESET_CAMERA = (
    select(Scene, CameraPreset, Camera)
    .outerjoin(CameraPreset, CameraPreset.id == Scene.camera_preset_id)
    .outerjoin(Camera, Camera.id == CameraPreset.camera_id)
    .where(Scene.id == bindparam("scene_id"))
    # Read afresh: a job's write updates the preset's row without touching loaded objects.
    .execution_options(populate_existing=True)
)
_IN_ORDER = (Scene.acquired_at, Scene.id)
_WAITING = _waiting(bindparam("preset_id")).order_by(*_IN_ORDER).limit(bindparam("limit"))


def analyse_camera_snapshots(inputs: CameraInputs, settings: Settings) -> CameraOutcome:
    """Run the detector over the pending snapshots; no database is touched here."""
    if not inputs.snapshots or inputs.refusal is not None:
        return CameraOutcome(inputs, None, [])
    params = CameraParams()
    try:
        calibration = preset_calibration_from(inputs)
    except DetectionError as error:  # the stored calibration no longer fits (bad data)
        refused = dataclasses.replace(inputs, refusal=f"the preset's calibration: {error}")
        return CameraOutcome(refused, None, [])
    previous = inputs.cached
    if previous is None and inputs.state is not None:
        previous = decode_state(inputs.state, inputs.state_chunks)
    state = previous.state if previous is not None else None
    outcomes = []
    for snapshot in inputs.snapshots:
        data = snapshot.path.read_bytes()
        before = state
        state, result = analyse_snapshot_bytes(
            state,
            data,
            snapshot.acquired_at,
            calibration=calibration,
            params=params,
            now=utc_now(),
        )
        changes = [
            change
            for detection in result.detections
            for change in _changes(detection, before, data, params, settings)
        ]
        outcomes.append(SnapshotOutcome(snapshot.scene_id, result, changes))
    return CameraOutcome(inputs, _encoded(state, previous), outcomes)


def _encoded(state: CameraState | None, previous: EncodedState | None) -> EncodedState | None:
    """`state` serialised, compressing only what changed since `previous`."""
    if state is None:
        return None
    if previous is not None and state is previous.state:  # every snapshot was refused
        return previous
    return encode_state(state, reuse=previous.chunks if previous is not None else None)


def preset_calibration_from(inputs: CameraInputs) -> Calibration:
    if inputs.homography is None:  # refused before it gets here
        raise CalibrationError(
            f"camera {inputs.camera_view.camera!r}: the preset is not calibrated"
        )
    return stored_calibration(
        camera_code=inputs.camera_view.camera,
        image_size=inputs.image_size,
        control_points=inputs.control_points,
        homography=inputs.homography,
        rms_error_m=inputs.rms_error_m,
        farmland=inputs.farmland,
        parcels=inputs.parcels,
    )


def _changes(
    detection: CameraDetection,
    before: CameraState | None,
    data: bytes,
    params: CameraParams,
    settings: Settings,
) -> list[FoundChange]:
    parts = polygons_of(detection.ground)
    total = sum(part.area for part in parts) or 1.0
    chips = _chips(detection, before, data, params, settings)
    return [
        FoundChange(
            geom=part,
            change_type=change_type_of(detection.type),
            benign=False,
            confidence=detection.confidence,
            area_m2=detection.area_m2 * part.area / total,
            onset_at=detection.onset,
            chips=chips,
        )
        for part in parts
    ]


def _chips(
    detection: CameraDetection,
    before: CameraState | None,
    data: bytes,
    params: CameraParams,
    settings: Settings,
) -> Any:
    """Before (the background the change was measured against) and after crops, as PNGs."""
    if before is None or not before.references:
        return None
    reference = before.references.get(before.last_mode) or next(iter(before.references.values()))
    after = decode_snapshot(data, reduce=params.reduce).image
    window = _window(detection.outline, params.reduce, after.shape)
    if window is None or reference.median.shape[:2] != after.shape[:2]:
        return None
    crop = (slice(window[0], window[1]), slice(window[2], window[3]))
    return (
        store_png(_rgb(reference.median[crop]), settings.data_dir),
        store_png(_rgb(after[crop]), settings.data_dir),
    )


def _rgb(image: NDArray[np.uint8]) -> NDArray[np.uint8]:
    return np.ascontiguousarray(image[..., :3] if image.ndim == 3 else np.dstack([image] * 3))


def _window(
    outline: BaseGeometry, reduce: int, shape: tuple[int, ...]
) -> tuple[int, int, int, int] | None:
    col0, row0, col1, row1 = (v / reduce for v in outline.bounds)
    rows, cols = shape[0], shape[1]
    r0, r1 = max(0, int(row0) - CHIP_MARGIN_PX), min(rows, int(row1) + CHIP_MARGIN_PX + 1)
    c0, c1 = max(0, int(col0) - CHIP_MARGIN_PX), min(cols, int(col1) + CHIP_MARGIN_PX + 1)
    return (r0, r1, c0, c1) if r1 > r0 and c1 > c0 else None


def write_camera_outcome(
    session: Session, job: ClaimedJob, settings: Settings, outcome: CameraOutcome
) -> None:
    inputs = outcome.inputs
    others = [s.scene_id for s in inputs.snapshots if s.scene_id != job.scene_id]
    if inputs.refusal is not None:
        _refuse(inputs, session=session)
        complete_queued(session=session, task=job.task, scene_ids=others)
        return
    if not outcome.snapshots:
        return
    _advance_state(session, job, inputs, outcome.state)
    # Every place this batch may open a case at, before the first case is opened.
    changes = [change.geom for snapshot in outcome.snapshots for change in snapshot.changes]
    lock_places(changes, session=session, settings=settings)
    seen, looked = [], None
    for snapshot in outcome.snapshots:
        scene = session.get(Scene, snapshot.scene_id)
        if scene is None:
            continue
        if _record_snapshot(scene, snapshot, inputs=inputs, session=session, settings=settings):
            seen.append(scene)
        if snapshot.result.rejection is None:
            looked = (snapshot.result, scene.acquired_at)
    if looked is not None:
        _update_health(session, inputs.camera_id, *looked)
    if inputs.camera_view.geom is not None:
        _record_coverage(inputs.camera_view.geom, seen, inputs=inputs, session=session)
    complete_queued(session=session, task=job.task, scene_ids=others)
    session.flush()


def _advance_state(
    session: Session, job: ClaimedJob, inputs: CameraInputs, state: EncodedState | None
) -> None:
    """Store the preset's new state as the version after the one the job started from, or
    raise `StateAdvancedError` if another job has advanced it meanwhile.

    The version is checked by the update itself, first of the job's writes: on PostgreSQL it
    locks the row until commit, so of two jobs advancing one preset the second waits, then
    finds the version moved and retries instead of overwriting the first one's state.
    """
    advanced = session.execute(
        _ADVANCE,
        {
            "preset_id": inputs.preset_id,
            "version": inputs.state_version,
            "state": state.manifest if state is not None else None,
            "next_version": inputs.state_version + 1,
            # The process that now holds the state decoded (`keep_camera_state`).
            "holder": worker_process(job.owner),
        },
    )
    if not advanced.rowcount:  # type: ignore[attr-defined]
        raise StateAdvancedError(
            f"the detector state of preset {inputs.preset_id} advanced while this job computed"
        )
    # The version just checked is the one the job read: the chunks it read are still all there.
    store_chunks(inputs.preset_id, state, session=session, present=inputs.stored_chunk_keys)


def keep_camera_state(outcome: CameraOutcome) -> None:
    """Once the outcome is committed, keep its state for this preset's next job here."""
    if outcome.snapshots and outcome.state is not None and outcome.inputs.refusal is None:
        inputs = outcome.inputs
        STATES.keep(inputs.preset_key, inputs.state_version + 1, outcome.state)


def _refuse(inputs: CameraInputs, *, session: Session) -> None:
    for snapshot in inputs.snapshots:
        scene = session.get(Scene, snapshot.scene_id)
        if scene is not None and scene.status == SceneStatus.received:
            scene.status = SceneStatus.failed
            scene.failure_reason = f"analysis: {inputs.refusal}"
            refresh_stac_item(session=session, scene=scene, view=inputs.camera_view)
    session.flush()


def _record_snapshot(
    scene: Scene,
    snapshot: SnapshotOutcome,
    *,
    inputs: CameraInputs,
    session: Session,
    settings: Settings,
) -> bool:
    """Store what one snapshot found; True when it saw the ground (for coverage).

    A snapshot the detector decoded has the preset's image size (the decode refuses any
    other), which validation would otherwise have recorded."""
    result = snapshot.result
    if result.rejection is not None:
        scene.status = SceneStatus.failed
        scene.failure_reason = f"analysis: {result.message or result.rejection}"
        refresh_stac_item(session=session, scene=scene, view=inputs.camera_view)
        return False
    if snapshot.changes:
        run = DetectorRun(
            source=DetectionSource.camera,
            detector_version=CAMERA_DETECTOR_VERSION,
            parameters=parameters_json(CameraParams()),
        )
        store_detections(scene, snapshot.changes, run=run, session=session, settings=settings)
    if scene.width is None:
        scene.width, scene.height = inputs.image_size
        scene.bands = list(SNAPSHOT_BANDS)
    scene.status = SceneStatus.analysed
    scene.failure_reason = None
    refresh_stac_item(session=session, scene=scene, view=inputs.camera_view)
    return not ({event.kind for event in result.health} & BLIND)


def _record_coverage(
    view: BaseGeometry, scenes: list[Scene], *, inputs: CameraInputs, session: Session
) -> None:
    """Mark the view's farmland as seen by the last of `scenes` (capture order) that saw it.

    One batch of snapshots makes one write per parcel, not one per snapshot. The parcels in
    view at the job's own capture time were read with its inputs (a layer version imported
    since then counts from the next snapshot on); other times are looked up.
    """
    latest: dict[int, Scene] = {}
    for scene in scenes:
        in_view = (
            inputs.view_parcel_ids
            if scene.acquired_at == inputs.view_at
            else farmland_view(view, at=scene.acquired_at, session=session).feature_ids
        )
        for feature_id in in_view:
            latest[feature_id] = scene
    by_scene: dict[int, list[int]] = {}
    for feature_id, scene in latest.items():
        by_scene.setdefault(scene.id, []).append(feature_id)
    for scene in scenes:
        if scene.id in by_scene:
            record_feature_observations(
                by_scene[scene.id], source=DetectionSource.camera, scene=scene, session=session
            )


def _update_health(
    session: Session, camera_id: int, result: SnapshotResult, acquired_at: datetime
) -> None:
    """The camera last seen at `acquired_at`, in the health that snapshot showed, unless a
    later snapshot (of another of its presets) has been recorded already."""
    kinds = [event.kind for event in result.health if event.kind in CameraHealth.__members__]
    health = CameraHealth(kinds[-1]) if kinds else CameraHealth.ok
    session.execute(_SEEN, {"camera_id": camera_id, "seen_at": acquired_at, "health": health})


# Built once, for every job: building a statement costs several times what executing it
# does. On the tables, not the mapped classes: rows loaded in a session are not brought up to
# date (the worker's write session holds none, and `read_camera_inputs` reads afresh).
_preset = table_of(CameraPreset)
_ADVANCE = (
    update(_preset)
    .where(
        _preset.c.id == bindparam("preset_id"),
        _preset.c.detector_state_version == bindparam("version"),
    )
    .values(
        detector_state=bindparam("state"),
        detector_state_version=bindparam("next_version"),
        state_holder=bindparam("holder"),
    )
)
_camera = table_of(Camera)
_SEEN = (
    update(_camera)
    .where(
        _camera.c.id == bindparam("camera_id"),
        or_(_camera.c.last_seen_at.is_(None), _camera.c.last_seen_at <= bindparam("seen_at")),
    )
    .values(last_seen_at=bindparam("seen_at"), health=bindparam("health"))
)
