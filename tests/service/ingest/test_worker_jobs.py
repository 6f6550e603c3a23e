"""One job through the worker in-process: failures are recorded with their reason and counted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from sqlalchemy.orm import Session

from models.base import utcnow
from models.scene import IngestJob, JobStatus, Scene, SceneStatus
from service.db import transaction
from service.queue import Affinity, ClaimedJob, NotYetError, enqueue
from service.settings import Settings
from service.tasks import PermanentTaskError, register
from service.worker import Worker
from tests.conftest import migrate
from tests.service.ingest.conftest import add_placeholder_scene

FLAKY = "test-flaky"
DOOMED = "test-doomed"
EARLY = "test-early"
DONE = "test-done"


def flaky(session: Session, job: ClaimedJob, settings: Settings) -> None:
    raise RuntimeError("the tile server timed out")


def doomed(session: Session, job: ClaimedJob, settings: Settings) -> None:
    raise PermanentTaskError("the reference scene was deleted")


def early(session: Session, job: ClaimedJob, settings: Settings) -> None:
    raise NotYetError("the tile taken before this one is not analysed yet")


def done(session: Session, job: ClaimedJob, settings: Settings) -> None:
    return None


register(DONE, done)
register(FLAKY, flaky)
register(DOOMED, doomed)
register(EARLY, early)


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[Worker]:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    migrate(url)
    settings = Settings(database_url=url, data_dir=tmp_path, _env_file=None)  # type: ignore[call-arg]
    worker = Worker(settings)
    yield worker
    worker.engine.dispose()


def queue_job(worker: Worker, task: str) -> int:
    with transaction(worker.sessions) as session:
        scene = add_placeholder_scene(session)
        enqueue(session=session, scene_id=scene.id, task=task)
        return scene.id


def failures(task: str, reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "tianxun_job_failures_total", {"task": task, "reason": reason}
    )
    return value or 0.0


def test_a_raising_task_is_retried_later_with_its_reason(worker: Worker) -> None:
    scene_id = queue_job(worker, FLAKY)
    before = failures(FLAKY, "RuntimeError")
    job = worker.claim_next("w")
    assert job is not None
    outcome = worker.run_job(job)
    assert outcome.status == "retry"
    assert outcome.reason == "RuntimeError: the tile server timed out"
    assert failures(FLAKY, "RuntimeError") == before + 1
    with worker.sessions() as session:
        row = session.query(IngestJob).filter_by(scene_id=scene_id).one()
        assert row.status == JobStatus.queued and row.attempts == 1
        assert row.last_error == outcome.reason and row.run_after > utcnow()
    assert worker.claim_next("w") is None  # backing off, not hammering


def test_a_permanent_failure_dead_letters_the_job_and_fails_the_scene(worker: Worker) -> None:
    scene_id = queue_job(worker, DOOMED)
    job = worker.claim_next("w")
    assert job is not None
    assert worker.run_job(job).status == "dead"
    with worker.sessions() as session:
        scene = session.get(Scene, scene_id)
        assert scene is not None and scene.status == SceneStatus.failed
        assert "the reference scene was deleted" in (scene.failure_reason or "")


def test_a_worker_leaves_a_fresh_job_to_the_process_it_prefers(worker: Worker) -> None:
    worker.affinity = Affinity(wait_seconds=600.0, limit_seconds=600.0)
    with transaction(worker.sessions) as session:
        for preferred in ("other-host:99", worker.name):
            scene = add_placeholder_scene(session)
            enqueue(session=session, scene_id=scene.id, task=FLAKY, preferred_worker=preferred)
    mine = worker.claim_next(f"{worker.name}:0")
    assert mine is not None
    assert worker.claim_next(f"{worker.name}:0") is None  # the other one waits for its worker
    with transaction(worker.sessions) as session:
        job = session.get(IngestJob, mine.id)
        assert job is not None and job.preferred_worker == worker.name


def test_a_job_that_cannot_run_yet_is_put_back_without_using_an_attempt(worker: Worker) -> None:
    scene_id = queue_job(worker, EARLY)
    before = failures(EARLY, "NotYetError")
    for _ in range(3):  # more often than a failing job could be retried before it
        job = worker.claim_next("w")
        assert job is not None and job.attempt == 1
        outcome = worker.run_job(job)
        assert outcome.status == "deferred"
        with transaction(worker.sessions) as session:
            row = session.query(IngestJob).filter_by(scene_id=scene_id).one()
            assert row.status == JobStatus.queued and row.attempts == 0
            assert (
                row.last_error == "NotYetError: the tile taken before this one is not analysed yet"
            )
            assert row.run_after > utcnow()
            row.run_after = utcnow()  # the poll interval has passed
    assert failures(EARLY, "NotYetError") == before  # waiting is no failure


def job_row(worker: Worker, scene_id: int) -> IngestJob:
    with worker.sessions() as session:
        return session.query(IngestJob).filter_by(scene_id=scene_id).one()


def test_completing_a_job_claims_the_next_one_in_the_same_transaction(worker: Worker) -> None:
    first, second = queue_job(worker, DONE), queue_job(worker, DONE)
    job = worker.claim_next("w")
    assert job is not None and job.scene_id == first
    claims = []
    claim_transactions = worker.claims
    worker.claims = lambda: claims.append(1) or claim_transactions()  # type: ignore[assignment]
    assert worker.run_job(job).status == "done"
    row = job_row(worker, second)
    assert row.status == JobStatus.running and row.lease_owner == "w"  # claimed, committed
    following = worker.claim_next("w")
    assert following is not None and following.scene_id == second
    assert claims == []  # neither the completion nor the hand-over opened a claim of its own
    assert worker.run_job(following).status == "done"
    assert worker.claim_next("w") is None


def test_a_stopping_worker_claims_nothing_with_its_last_completion(worker: Worker) -> None:
    queue_job(worker, DONE)
    second = queue_job(worker, DONE)
    job = worker.claim_next("w")
    assert job is not None
    worker.stop()
    assert worker.run_job(job).status == "done"
    assert job_row(worker, second).status == JobStatus.queued


def test_a_job_claimed_but_not_started_goes_back_when_its_thread_stops(worker: Worker) -> None:
    queue_job(worker, DONE)
    second = queue_job(worker, DONE)
    job = worker.claim_next("w")
    assert job is not None and worker.run_job(job).status == "done"
    assert job_row(worker, second).status == JobStatus.running
    worker._put_back_claimed("w")  # what the thread's loop does as it stops
    row = job_row(worker, second)
    assert row.status == JobStatus.queued and row.attempts == 0 and row.lease_owner is None
    assert row.run_after <= utcnow()  # due at once, for another worker
