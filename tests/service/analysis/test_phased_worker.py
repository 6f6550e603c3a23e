"""Phased tasks in the worker: compute holds no write lock, a lost lease undoes the write, and
only a committed write reaches the task's `committed` step."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from models.base import utcnow
from models.scene import IngestJob, JobStatus, Scene
from service.db import SQLITE_IMMEDIATE, create_db_engine, create_session_factory, transaction
from service.queue import ClaimedJob, claim, enqueue
from service.settings import Settings
from service.tasks import PhasedTask, register
from service.worker import Worker
from tests.conftest import migrate
from tests.service.ingest.conftest import add_placeholder_scene

PHASED = "test-phased"
_computing = threading.Event()
_release = threading.Event()
_committed: list[int] = []


def read(session: Session, job: ClaimedJob, settings: Settings) -> int:
    return job.scene_id


def compute(scene_id: int, settings: Settings) -> int:
    _computing.set()
    assert _release.wait(timeout=30), "the test never released the compute step"
    return scene_id


def write(session: Session, job: ClaimedJob, settings: Settings, scene_id: int) -> None:
    scene = session.get(Scene, scene_id)
    assert scene is not None
    scene.sensor = "analysed"
    session.flush()


def committed(scene_id: int) -> None:
    _committed.append(scene_id)


register(PHASED, PhasedTask(read, compute, write, committed))


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[Worker]:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    migrate(url)
    settings = Settings(database_url=url, data_dir=tmp_path, _env_file=None)  # type: ignore[call-arg]
    worker = Worker(settings)
    _computing.clear()
    _release.clear()
    _committed.clear()
    yield worker
    _release.set()
    worker.engine.dispose()


def queue_scene(worker: Worker) -> int:
    with transaction(worker.sessions) as session:
        scene = add_placeholder_scene(session)
        enqueue(session=session, scene_id=scene.id, task=PHASED)
        return scene.id


def run_in_background(worker: Worker, job: ClaimedJob) -> tuple[threading.Thread, list[str]]:
    outcome: list[str] = []
    thread = threading.Thread(target=lambda: outcome.append(worker.run_job(job).status))
    thread.start()
    assert _computing.wait(timeout=30)
    return thread, outcome


def test_other_writers_proceed_while_a_phased_job_computes(worker: Worker) -> None:
    scene_id = queue_scene(worker)
    job = worker.claim_next("w1")
    assert job is not None
    thread, outcome = run_in_background(worker, job)
    # Another connection takes SQLite's write lock (as an ingest request would) with a short
    # busy timeout: it would time out if the job held the lock while computing.
    other = create_db_engine(worker.settings.database_url, busy_timeout_ms=200)
    immediate = create_session_factory(other.execution_options(**SQLITE_IMMEDIATE))
    with transaction(immediate) as session:
        session.execute(update(Scene).where(Scene.id == scene_id).values(source="ingest"))
    other.dispose()
    _release.set()
    thread.join(timeout=30)
    assert outcome == ["done"]
    with worker.sessions() as session:
        scene = session.get(Scene, scene_id)
        assert scene is not None and (scene.sensor, scene.source) == ("analysed", "ingest")
    assert _committed == [scene_id]


def test_a_lease_lost_during_compute_rolls_the_write_back(worker: Worker) -> None:
    scene_id = queue_scene(worker)
    job = worker.claim_next("w1")
    assert job is not None
    thread, outcome = run_in_background(worker, job)
    with transaction(worker.claims) as session:  # the lease expired and another worker took it
        session.execute(
            update(IngestJob).where(IngestJob.id == job.id).values(lease_expires_at=utcnow())
        )
        taken = claim(session=session, owner="w2", lease_seconds=60, now=utcnow())
        assert taken is not None and taken.id == job.id
    _release.set()
    thread.join(timeout=30)
    assert outcome == ["lease_lost"]
    with worker.sessions() as session:
        scene = session.get(Scene, scene_id)
        row = session.get(IngestJob, job.id)
        assert scene is not None and scene.sensor == ""  # the write was rolled back
        assert row is not None and row.status == JobStatus.running and row.lease_owner == "w2"
    assert _committed == []


PREPARED = "test-prepared"
_steps: list[str] = []


def _read_noting(session: Session, job: ClaimedJob, settings: Settings) -> int:
    _steps.append("read")
    return job.scene_id


register(
    PREPARED,
    PhasedTask(
        _read_noting,
        lambda scene_id, settings: scene_id,
        lambda session, job, settings, scene_id: None,
        committed=lambda scene_id: _steps.append("committed"),
        prepare=lambda: _steps.append("prepare"),
    ),
)


def test_a_worker_prepares_its_tasks_before_it_claims_a_job(worker: Worker) -> None:
    _steps.clear()
    with transaction(worker.sessions) as session:
        enqueue(session=session, scene_id=add_placeholder_scene(session).id, task=PREPARED)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while "committed" not in _steps and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        worker.stop()
        thread.join(timeout=60)
    assert _steps == ["prepare", "read", "committed"]
