"""The camera task: a preset's snapshots analysed once each, in capture order."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from prometheus_client import REGISTRY
from sqlalchemy import select
from sqlalchemy.orm import Session

from detection.camera_state import CameraState, decode_state
from models.base import utcnow
from models.camera import Camera, CameraHealth, CameraPreset
from models.layer import LayerFeature, LayerKind
from models.scene import IngestJob, JobStatus, Scene, SceneKind, SceneStatus
from service.analysis import camera
from service.analysis.camera import (
    StateAdvancedError,
    StateCache,
    analyse_camera_snapshots,
    keep_camera_state,
    read_camera_inputs,
    write_camera_outcome,
)
from service.analysis.coverage import last_observed
from service.cameras.registry import register_camera, register_preset
from service.cameras.state import load_state, stored_chunks
from service.ingest.scenes import CAMERA_TASK
from service.ingest.store import JPEG, commit_object, stage_chunks
from service.queue import ClaimedJob, enqueue
from service.settings import Settings
from tests.service.cameras.views import TOWER, control_points
from tests.service.screening.places import OUTSIDE, add_layer_version

SCALE = 3  # a 640×360 camera: the test tower's 1920×1080 view, reduced
SIZE = (640, 360)
T0 = datetime(2025, 5, 1, 1, 30, tzinfo=UTC)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(database_url="sqlite://", data_dir=tmp_path, _env_file=None)  # type: ignore[call-arg]


@pytest.fixture
def preset(db_session: Session) -> CameraPreset:
    register_camera(session=db_session, code="T-1", lon=TOWER[0], lat=TOWER[1])
    points = [
        {**p, "pixel": [p["pixel"][0] / SCALE, p["pixel"][1] / SCALE]}  # type: ignore[index]
        for p in control_points()
    ]
    row, _ = register_preset(
        session=db_session, camera_code="T-1", preset="P1", image_size=SIZE, control_points=points
    )
    return row


def snapshot(
    db_session: Session,
    settings: Settings,
    preset: CameraPreset,
    minutes: int,
    *,
    validated: bool = True,
    truncated: bool = False,
    view: int | None = None,
    stored_ago: timedelta = timedelta(minutes=1),
) -> Scene:
    """A snapshot at T0 + `minutes` of a random field, stored `stored_ago`; of the same field
    as other snapshots given the same `view` (each still a distinct file)."""
    rng = np.random.default_rng(minutes if view is None else view)
    field = np.kron(rng.integers(60, 200, (18, 32, 3)), np.ones((20, 20, 1))).astype(np.uint8)
    field[0, 0, 0] = minutes % 256
    buffer = io.BytesIO()
    Image.fromarray(field).save(buffer, format="JPEG", quality=90)
    data = buffer.getvalue()[: buffer.tell() // 2] if truncated else buffer.getvalue()
    staged = stage_chunks([data], settings.data_dir, kind=JPEG, max_bytes=10**7)
    stored = commit_object(staged, settings.data_dir)
    scene = Scene(
        kind=SceneKind.camera_snapshot,
        sha256=stored.sha256,
        storage_uri=stored.storage_uri,
        size_bytes=stored.size_bytes,
        media_type=stored.media_type,
        camera_preset_id=preset.id,
        acquired_at=T0 + timedelta(minutes=minutes),
        received_at=utcnow() - stored_ago,
        status=SceneStatus.received,
        width=SIZE[0] if validated else None,
        height=SIZE[1] if validated else None,
        bands=[],
    )
    db_session.add(scene)
    db_session.flush()
    return scene


def job_for(scene: Scene) -> ClaimedJob:
    return ClaimedJob(1, scene.id, "analyse_camera", 1, 5, "host:7:0", T0)


def run(db_session: Session, settings: Settings, scene: Scene) -> None:
    inputs = read_camera_inputs(db_session, job_for(scene), settings)
    outcome = analyse_camera_snapshots(inputs, settings)
    write_camera_outcome(db_session, job_for(scene), settings, outcome)


def one_at_most(settings: Settings) -> Settings:
    """A job takes newer snapshots only while none is taken: none once it has its own (or
    older ones), one when its own was already analysed."""
    return settings.model_copy(update={"camera_snapshots_per_job": 1})


def test_a_later_job_analyses_the_earlier_snapshots_first_and_once(
    db_session: Session, settings: Settings, preset: CameraPreset
) -> None:
    scenes = [snapshot(db_session, settings, preset, m) for m in (0, 10, 20)]
    run(db_session, one_at_most(settings), scenes[1])  # its job happened to run first
    assert [s.status for s in scenes] == [SceneStatus.analysed] * 2 + [SceneStatus.received]
    db_session.refresh(preset)  # the job updates the row, not objects loaded before
    assert preset.detector_state is not None and preset.detector_state_version == 1
    assert preset.state_holder == "host:7"  # the worker process that may hold it decoded
    analysed = stored_state(db_session, preset).last_captured_at
    # Its own snapshot was analysed by the later job: it goes on with the newer one only.
    run(db_session, one_at_most(settings), scenes[0])
    db_session.refresh(preset)
    assert scenes[2].status == SceneStatus.analysed and preset.detector_state_version == 2
    state = stored_state(db_session, preset)
    assert (analysed, state.last_captured_at) == (scenes[1].acquired_at, scenes[2].acquired_at)
    run(db_session, settings, scenes[2])  # nothing left to do: the state stays
    assert preset.detector_state_version == 2


def jobs_of(db_session: Session, scenes: list[Scene]) -> list[JobStatus]:
    statuses = dict(
        db_session.execute(
            select(IngestJob.scene_id, IngestJob.status).where(
                IngestJob.scene_id.in_([scene.id for scene in scenes])
            )
        ).all()
    )
    return [statuses[scene.id] for scene in scenes]


def test_a_job_goes_on_with_the_newer_snapshots_received_and_completes_their_jobs(
    db_session: Session, settings: Settings, preset: CameraPreset
) -> None:
    scenes = [snapshot(db_session, settings, preset, m) for m in (0, 10, 20, 30)]
    jobs = [enqueue(session=db_session, scene_id=s.id, task=CAMERA_TASK) for s in scenes]
    for job, owner in zip(jobs[:2], ("host:8:0", "host:9:0"), strict=True):
        job.status, job.lease_owner = JobStatus.running, owner  # as `claim` leaves them
        job.lease_expires_at = utcnow() + timedelta(minutes=1)
    db_session.flush()
    claimed, taken_elsewhere = (
        ClaimedJob(job.id, job.scene_id, CAMERA_TASK, 1, 5, job.lease_owner or "", T0)
        for job in jobs[:2]
    )

    limited = settings.model_copy(update={"camera_snapshots_per_job": 3})
    inputs = read_camera_inputs(db_session, claimed, limited)
    write_camera_outcome(db_session, claimed, limited, analyse_camera_snapshots(inputs, limited))

    assert [s.status for s in scenes] == [SceneStatus.analysed] * 3 + [SceneStatus.received]
    db_session.refresh(preset)
    assert preset.detector_state_version == 1  # one state advance for the three
    # Its own job is completed by the worker; the one another worker runs finds nothing
    # left to do; the third's is done with this one; the fourth was beyond the limit.
    assert jobs_of(db_session, scenes) == [
        JobStatus.running,
        JobStatus.running,
        JobStatus.done,
        JobStatus.queued,
    ]
    again = read_camera_inputs(db_session, taken_elsewhere, limited)
    assert [s.scene_id for s in again.snapshots] == [scenes[3].id]  # only the newer one left


def test_a_newer_snapshot_stored_under_a_second_ago_is_left_to_its_own_job(
    db_session: Session, settings: Settings, preset: CameraPreset
) -> None:
    # An upload of the preset sent before it may still be in flight: taking this one now would
    # leave that one older than the state, refused as out of order.
    first = snapshot(db_session, settings, preset, 0)
    just_in = snapshot(db_session, settings, preset, 10, stored_ago=timedelta(0))
    settled = snapshot(db_session, settings, preset, 20, stored_ago=timedelta(seconds=2))
    run(db_session, settings, first)
    assert [first.status, just_in.status, settled.status] == [
        SceneStatus.analysed,
        SceneStatus.received,
        SceneStatus.received,  # capture order: not before the one left
    ]


def test_snapshots_not_validated_are_checked_as_they_are_analysed_in_capture_order(
    db_session: Session, settings: Settings, preset: CameraPreset
) -> None:
    first = snapshot(db_session, settings, preset, 0, validated=False)
    broken = snapshot(db_session, settings, preset, 5, validated=False, truncated=True)
    later = snapshot(db_session, settings, preset, 10, validated=False)
    run(db_session, settings, later)
    assert [first.status, broken.status, later.status] == [
        SceneStatus.analysed,
        SceneStatus.failed,
        SceneStatus.analysed,
    ]
    assert (first.width, first.height, first.bands) == (*SIZE, ["red", "green", "blue"])
    assert broken.failure_reason is not None and "truncated" in broken.failure_reason
    assert broken.width is None  # nothing about it was read
    db_session.refresh(preset)
    assert preset.detector_state_version == 1  # one job, one state advance


def test_a_snapshot_older_than_what_was_analysed_is_refused_with_the_reason(
    db_session: Session, settings: Settings, preset: CameraPreset
) -> None:
    run(db_session, settings, snapshot(db_session, settings, preset, 10))
    late = snapshot(db_session, settings, preset, 0)
    run(db_session, settings, late)
    assert late.status == SceneStatus.failed
    assert late.failure_reason is not None and late.failure_reason.startswith("analysis: ")


def test_a_state_advanced_by_another_job_is_not_overwritten(
    db_session: Session, settings: Settings, preset: CameraPreset
) -> None:
    scene = snapshot(db_session, settings, preset, 0)
    inputs = read_camera_inputs(db_session, job_for(scene), settings)
    outcome = analyse_camera_snapshots(inputs, settings)
    preset.detector_state_version += 1  # another worker wrote first
    db_session.flush()
    with pytest.raises(StateAdvancedError):
        write_camera_outcome(db_session, job_for(scene), settings, outcome)


def run_and_commit(db_session: Session, settings: Settings, scene: Scene) -> None:
    """A worker's whole job: its write committed, then its state kept in this process."""
    inputs = read_camera_inputs(db_session, job_for(scene), settings)
    outcome = analyse_camera_snapshots(inputs, settings)
    write_camera_outcome(db_session, job_for(scene), settings, outcome)
    db_session.commit()  # the test's outer transaction still rolls everything back
    keep_camera_state(outcome)


def stored_state(db_session: Session, preset: CameraPreset) -> CameraState:
    db_session.refresh(preset)
    state = load_state(preset, session=db_session)
    assert state is not None
    return state


def snapshots_in(state: CameraState) -> int:
    """Snapshots a state went through after the first (which starts the background):
    registered against it (accepted) or not (failures)."""
    return state.accepted + state.failures


def test_the_next_job_of_a_preset_starts_from_the_state_this_process_committed(
    db_session: Session, settings: Settings, preset: CameraPreset
) -> None:
    run_and_commit(db_session, settings, snapshot(db_session, settings, preset, 0))
    later = snapshot(db_session, settings, preset, 10)
    inputs = read_camera_inputs(db_session, job_for(later), settings)
    assert inputs.cached is not None and inputs.state is None  # the stored state is not read
    outcome = analyse_camera_snapshots(inputs, settings)
    write_camera_outcome(db_session, job_for(later), settings, outcome)
    state = stored_state(db_session, preset)
    assert (snapshots_in(state), state.last_captured_at) == (1, later.acquired_at)
    assert preset.detector_state_version == 2


def state_reads() -> dict[str, float]:
    return {
        source: REGISTRY.get_sample_value("tianxun_camera_state_reads_total", {"source": source})
        or 0.0
        for source in ("none", "memory", "database")
    }


def test_each_job_counts_where_its_state_came_from(
    db_session: Session, settings: Settings, preset: CameraPreset, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = state_reads()
    run_and_commit(db_session, settings, snapshot(db_session, settings, preset, 0))
    run_and_commit(db_session, settings, snapshot(db_session, settings, preset, 10))
    monkeypatch.setattr(camera, "STATES", StateCache(4))  # another process
    run_and_commit(db_session, settings, snapshot(db_session, settings, preset, 20))
    after = state_reads()
    assert {source: after[source] - before[source] for source in after} == {
        "none": 1,
        "memory": 1,
        "database": 1,
    }


def test_a_worker_keeps_as_many_states_as_its_settings_say(
    db_session: Session, settings: Settings, preset: CameraPreset, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(camera, "STATES", StateCache(32))
    run_and_commit(db_session, settings, snapshot(db_session, settings, preset, 0))
    later = snapshot(db_session, settings, preset, 10)
    none_kept = settings.model_copy(update={"camera_states_cached": 0})
    inputs = read_camera_inputs(db_session, job_for(later), none_kept)
    assert inputs.cached is None and inputs.state is not None  # read back from the database
    assert camera.STATES.capacity == 0


def test_the_state_in_memory_is_not_used_once_another_worker_advanced_it(
    db_session: Session, settings: Settings, preset: CameraPreset, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_and_commit(db_session, settings, snapshot(db_session, settings, preset, 0))
    mine = camera.STATES  # holds the state of version 1
    with monkeypatch.context() as other_worker:  # another process: memory of its own
        other_worker.setattr(camera, "STATES", StateCache(4))
        run_and_commit(db_session, settings, snapshot(db_session, settings, preset, 10))
    assert camera.STATES is mine and preset.detector_state_version == 2
    latest = snapshot(db_session, settings, preset, 20)
    inputs = read_camera_inputs(db_session, job_for(latest), settings)
    assert inputs.cached is None and inputs.state is not None  # read from the row instead
    outcome = analyse_camera_snapshots(inputs, settings)
    write_camera_outcome(db_session, job_for(latest), settings, outcome)
    # From the stale state (one snapshot) the third would count as the second; from the row,
    # as the third.
    state = stored_state(db_session, preset)
    assert (snapshots_in(state), state.last_captured_at) == (2, latest.acquired_at)
    assert preset.detector_state_version == 3


def test_the_preset_holds_the_chunks_of_its_latest_state_and_no_others(
    db_session: Session, settings: Settings, preset: CameraPreset, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The write knows which chunks are stored from what its job read (memory or row) instead
    # of looking them up: a wrong guess would leave unused chunks or insert a key twice.
    for minutes in (0, 10, 20):  # from nothing, then from memory
        run_and_commit(
            db_session, settings, snapshot(db_session, settings, preset, minutes, view=1)
        )
        assert stored_chunk_keys(db_session, preset) == manifest_keys(db_session, preset)
    monkeypatch.setattr(camera, "STATES", StateCache(4))  # another process: from the row
    for minutes in (30, 40):
        run_and_commit(
            db_session, settings, snapshot(db_session, settings, preset, minutes, view=1)
        )
        assert stored_chunk_keys(db_session, preset) == manifest_keys(db_session, preset)
    assert snapshots_in(stored_state(db_session, preset)) == 4


def stored_chunk_keys(db_session: Session, preset: CameraPreset) -> set[str]:
    return set(stored_chunks(preset.id, session=db_session))


def manifest_keys(db_session: Session, preset: CameraPreset) -> set[str]:
    db_session.refresh(preset)
    assert preset.detector_state is not None
    return set(
        decode_state(preset.detector_state, stored_chunks(preset.id, session=db_session)).keys
    )


def test_a_job_whose_write_fails_leaves_no_state_in_memory(
    db_session: Session, settings: Settings, preset: CameraPreset
) -> None:
    run_and_commit(db_session, settings, snapshot(db_session, settings, preset, 0))
    later = snapshot(db_session, settings, preset, 10)
    inputs = read_camera_inputs(db_session, job_for(later), settings)
    assert inputs.cached is not None
    outcome = analyse_camera_snapshots(inputs, settings)
    preset.detector_state_version += 1  # another worker wrote first
    db_session.flush()
    with pytest.raises(StateAdvancedError):
        write_camera_outcome(db_session, job_for(later), settings, outcome)
    preset.detector_state_version -= 1  # as if that write had never been
    db_session.flush()
    retried = read_camera_inputs(db_session, job_for(later), settings)
    assert retried.cached is None and retried.state is not None


def test_the_detector_is_given_the_cultivated_parcels_in_the_view(
    db_session: Session, settings: Settings, preset: CameraPreset
) -> None:
    assert preset.geom is not None
    in_view = preset.geom.centroid.buffer(0.0002)  # about 20 m around the middle of the view
    add_layer_version(db_session, LayerKind.cultivated_land, [in_view, OUTSIDE])
    scene = snapshot(db_session, settings, preset, 0)

    inputs = read_camera_inputs(db_session, job_for(scene), settings)

    assert len(inputs.parcels) == 1
    assert inputs.parcels[0].symmetric_difference(in_view).area < 1e-3 * in_view.area
    assert camera.preset_calibration_from(inputs).parcels == inputs.parcels


def test_the_farmland_in_view_is_marked_seen_by_the_latest_snapshot_of_a_batch(
    db_session: Session, settings: Settings, preset: CameraPreset
) -> None:
    assert preset.geom is not None
    in_view = preset.geom.centroid.buffer(0.0002)
    add_layer_version(db_session, LayerKind.cultivated_land, [in_view, OUTSIDE])
    features = db_session.scalars(  # the parcel in view and the one outside it
        select(LayerFeature.id).order_by(LayerFeature.id.desc()).limit(2)
    ).all()
    scenes = [snapshot(db_session, settings, preset, m, view=1) for m in (0, 10, 20)]

    # Analyses the first two: the view at the job's own time was read with its inputs.
    run(db_session, one_at_most(settings), scenes[1])
    assert {scene.status for scene in scenes[:2]} == {SceneStatus.analysed}
    seen = {feature: last_observed(feature, session=db_session) for feature in features}
    assert sorted(seen.values(), key=len) == [{}, {"camera": scenes[1].acquired_at}]
    run(db_session, settings, scenes[2])
    assert {"camera": scenes[2].acquired_at} in [
        last_observed(feature, session=db_session) for feature in features
    ]


def test_the_camera_is_last_seen_at_its_latest_analysed_snapshot(
    db_session: Session, settings: Settings, preset: CameraPreset
) -> None:
    tower = db_session.get(Camera, preset.camera_id)
    assert tower is not None
    scenes = [snapshot(db_session, settings, preset, m, view=1) for m in (0, 10)]
    run(db_session, settings, scenes[1])  # analyses both, in capture order
    db_session.refresh(tower)
    assert tower.last_seen_at == scenes[1].acquired_at and tower.health == CameraHealth.ok
    # Another of its presets was seen later meanwhile: an earlier snapshot does not undo that.
    later = T0 + timedelta(hours=1)
    tower.last_seen_at, tower.health = later, CameraHealth.obstructed
    db_session.flush()
    run(db_session, settings, snapshot(db_session, settings, preset, 20, view=1))
    db_session.refresh(tower)
    assert (tower.last_seen_at, tower.health) == (later, CameraHealth.obstructed)
