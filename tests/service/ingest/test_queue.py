"""The durable queue: leases, takeover of expired leases, retries with backoff, dead letters."""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from models.base import utcnow
from models.scene import IngestJob, JobStatus, SceneStatus
from service.queue import (
    Affinity,
    ClaimedJob,
    backoff_seconds,
    claim,
    complete,
    defer,
    enqueue,
    fail,
    heartbeat,
    queue_stats,
    requeue_dead,
    worker_process,
)
from tests.service.ingest.conftest import add_placeholder_scene

LEASE = 30.0
# Claims name this task only: PostgreSQL's test database keeps other tests' committed jobs.
TASK = f"test-{uuid.uuid4().hex[:8]}"
RETRY = {"retry_base_seconds": 10.0, "retry_max_seconds": 600.0}


def test_enqueue_twice_is_one_job(db_session: Session) -> None:
    scene = add_placeholder_scene(db_session)
    first = enqueue(session=db_session, scene_id=scene.id, task="validate")
    second = enqueue(session=db_session, scene_id=scene.id, task="validate")
    assert first.id == second.id
    assert db_session.query(IngestJob).filter_by(scene_id=scene.id).count() == 1


AFFINITY = Affinity(wait_seconds=2.0, limit_seconds=30.0)


def preferred_job(session: Session, worker: str, run_after: datetime) -> int:
    scene = add_placeholder_scene(session)
    job = enqueue(
        session=session, scene_id=scene.id, task=TASK, run_after=run_after, preferred_worker=worker
    )
    return job.id


def claim_as(session: Session, owner: str, now: datetime) -> ClaimedJob | None:
    return claim(
        session=session, owner=owner, lease_seconds=LEASE, now=now, tasks=[TASK], affinity=AFFINITY
    )


def test_an_idle_worker_helps_with_anothers_job_once_it_has_waited(db_session: Session) -> None:
    t0 = utcnow()
    job_id = preferred_job(db_session, "h:1", t0)
    assert claim_as(db_session, "h:2:0", t0) is None
    assert claim_as(db_session, "h:2:0", t0 + timedelta(seconds=1.9)) is None
    late = claim_as(db_session, "h:2:0", t0 + timedelta(seconds=2))
    assert late is not None and late.id == job_id


def test_the_preferred_worker_process_takes_its_job_at_once(db_session: Session) -> None:
    t0 = utcnow()
    job_id = preferred_job(db_session, "h:1", t0)
    job = claim_as(db_session, "h:1:3", t0)
    assert job is not None and job.id == job_id and worker_process(job.owner) == "h:1"


def test_under_a_backlog_a_worker_takes_its_own_jobs_before_older_ones_of_others(
    db_session: Session,
) -> None:
    t0 = utcnow()
    others = preferred_job(db_session, "h:1", t0)
    own = preferred_job(db_session, "h:2", t0 + timedelta(seconds=1))
    now = t0 + timedelta(seconds=10)  # both waited past the wait, neither past the limit
    first = claim_as(db_session, "h:2:0", now)
    second = claim_as(db_session, "h:2:0", now)
    assert (first and first.id, second and second.id) == (own, others)


def test_a_job_past_the_limit_comes_before_the_workers_own(db_session: Session) -> None:
    t0 = utcnow()
    others = preferred_job(db_session, "h:1", t0)
    preferred_job(db_session, "h:2", t0 + timedelta(seconds=1))
    job = claim_as(db_session, "h:2:0", t0 + timedelta(seconds=30))
    assert job is not None and job.id == others  # its worker is busy or gone


def test_without_affinity_any_worker_takes_a_preferred_job(db_session: Session) -> None:
    scene = add_placeholder_scene(db_session)
    t0 = utcnow()
    enqueue(session=db_session, scene_id=scene.id, task=TASK, run_after=t0, preferred_worker="h:1")
    job = claim(session=db_session, owner="h:2:0", lease_seconds=LEASE, now=t0, tasks=[TASK])
    assert job is not None


def test_a_leased_job_is_not_claimed_again_until_its_lease_expires(db_session: Session) -> None:
    scene = add_placeholder_scene(db_session)
    enqueue(session=db_session, scene_id=scene.id, task=TASK)
    now = utcnow()
    job = claim(session=db_session, owner="a", lease_seconds=LEASE, now=now, tasks=[TASK])
    assert job is not None and job.attempt == 1 and job.owner == "a"
    assert claim(session=db_session, owner="b", lease_seconds=LEASE, now=now, tasks=[TASK]) is None
    later = now + timedelta(seconds=LEASE - 1)
    assert (
        claim(session=db_session, owner="b", lease_seconds=LEASE, now=later, tasks=[TASK]) is None
    )


def test_heartbeat_keeps_the_lease_and_expiry_lets_another_worker_take_over(
    db_session: Session,
) -> None:
    scene = add_placeholder_scene(db_session)
    enqueue(session=db_session, scene_id=scene.id, task=TASK)
    t0 = utcnow()
    job_a = claim(session=db_session, owner="a", lease_seconds=LEASE, now=t0, tasks=[TASK])
    assert job_a is not None
    t1 = t0 + timedelta(seconds=LEASE * 0.8)
    assert heartbeat(session=db_session, job=job_a, lease_seconds=LEASE, now=t1)
    # Past the first lease, but within the extended one: still a's.
    t2 = t0 + timedelta(seconds=LEASE * 1.5)
    assert claim(session=db_session, owner="b", lease_seconds=LEASE, now=t2, tasks=[TASK]) is None
    # a stops heart-beating; once the extended lease runs out, b takes over.
    t3 = t1 + timedelta(seconds=LEASE + 1)
    job_b = claim(session=db_session, owner="b", lease_seconds=LEASE, now=t3, tasks=[TASK])
    assert job_b is not None and job_b.id == job_a.id and job_b.attempt == 2
    # a wakes up: it can neither extend nor complete a job it no longer holds.
    assert not heartbeat(session=db_session, job=job_a, lease_seconds=LEASE, now=t3)
    assert not complete(session=db_session, job=job_a, now=t3)
    assert complete(session=db_session, job=job_b, now=t3)
    row = db_session.get(IngestJob, job_a.id)
    assert row is not None
    db_session.refresh(row)
    assert row.status == JobStatus.done and row.attempts == 2
    assert "taken over by b" in (row.last_error or "")


def test_failure_retries_later_with_growing_backoff_then_dead_letter(db_session: Session) -> None:
    scene = add_placeholder_scene(db_session)
    enqueue(session=db_session, scene_id=scene.id, task=TASK, max_attempts=3)
    now = utcnow()
    delays = []
    for attempt in range(1, 4):
        job = claim(session=db_session, owner="w", lease_seconds=LEASE, now=now, tasks=[TASK])
        assert job is not None and job.attempt == attempt
        status = fail(session=db_session, job=job, reason=f"boom {attempt}", now=now, **RETRY)
        row = db_session.get(IngestJob, job.id)
        assert row is not None
        if attempt < 3:
            assert status == JobStatus.queued
            delay = (row.run_after - now).total_seconds()
            # Not due yet: a retry waits its backoff.
            assert (
                claim(session=db_session, owner="w", lease_seconds=LEASE, now=now, tasks=[TASK])
                is None
            )
            delays.append(delay)
            now = row.run_after
    assert status == JobStatus.dead
    assert row.dead_reason == "gave up after 3 attempts: boom 3"
    db_session.refresh(scene)
    assert scene.status == SceneStatus.failed
    assert scene.failure_reason == f"{TASK} job gave up: gave up after 3 attempts: boom 3"
    assert 5 <= delays[0] <= 10 and 10 <= delays[1] <= 20
    assert claim(session=db_session, owner="w", lease_seconds=LEASE, now=now, tasks=[TASK]) is None
    assert requeue_dead(session=db_session, job_id=row.id, now=now)
    assert (
        claim(session=db_session, owner="w", lease_seconds=LEASE, now=now, tasks=[TASK]) is not None
    )


def test_permanent_failure_goes_straight_to_the_dead_letter(db_session: Session) -> None:
    scene = add_placeholder_scene(db_session)
    enqueue(session=db_session, scene_id=scene.id, task=TASK)
    job = claim(session=db_session, owner="w", lease_seconds=LEASE, tasks=[TASK])
    assert job is not None
    assert fail(session=db_session, job=job, reason="no handler", permanent=True, **RETRY) == (
        JobStatus.dead
    )


def test_a_worker_dying_on_the_last_attempt_dead_letters_the_job(db_session: Session) -> None:
    scene = add_placeholder_scene(db_session)
    enqueue(session=db_session, scene_id=scene.id, task=TASK, max_attempts=1)
    now = utcnow()
    assert (
        claim(session=db_session, owner="a", lease_seconds=LEASE, now=now, tasks=[TASK]) is not None
    )
    later = now + timedelta(seconds=LEASE + 1)
    assert (
        claim(session=db_session, owner="b", lease_seconds=LEASE, now=later, tasks=[TASK]) is None
    )
    row = db_session.query(IngestJob).filter_by(scene_id=scene.id).one()
    assert row.status == JobStatus.dead
    assert "lease of a expired" in (row.dead_reason or "")


def test_claim_can_be_limited_to_known_tasks(db_session: Session) -> None:
    scene = add_placeholder_scene(db_session)
    enqueue(session=db_session, scene_id=scene.id, task=TASK)
    assert claim(session=db_session, owner="w", lease_seconds=LEASE, tasks=["validate-x"]) is None
    assert claim(session=db_session, owner="w", lease_seconds=LEASE, tasks=[TASK]) is not None


def test_queue_stats_report_depth_and_age(db_session: Session) -> None:
    before = queue_stats(session=db_session)
    scene = add_placeholder_scene(db_session)
    now = utcnow()
    enqueue(session=db_session, scene_id=scene.id, task="a", run_after=now - timedelta(minutes=5))
    enqueue(session=db_session, scene_id=scene.id, task="b", run_after=now + timedelta(hours=1))
    stats = queue_stats(session=db_session, now=now)
    assert stats.counts["queued"] == before.counts["queued"] + 2
    assert stats.ready == before.ready + 1
    assert stats.oldest_ready_age_seconds >= 300


@pytest.mark.parametrize("attempt", [1, 2, 5, 30])
def test_backoff_grows_exponentially_within_jitter_and_is_capped(attempt: int) -> None:
    rng = random.Random(attempt)
    delays = [backoff_seconds(attempt, base=10, cap=600, rng=rng) for _ in range(200)]
    nominal = min(600, 10 * 2 ** (attempt - 1))
    assert min(delays) >= nominal / 2 and max(delays) <= nominal
    assert len(set(delays)) > 100  # jittered, so retries do not arrive in lockstep


def test_a_deferred_job_is_queued_again_with_its_attempt_given_back(db_session: Session) -> None:
    scene = add_placeholder_scene(db_session)
    enqueue(session=db_session, scene_id=scene.id, task=TASK)
    now = utcnow()
    job = claim(session=db_session, owner="a", lease_seconds=LEASE, now=now, tasks=[TASK])
    assert job is not None
    assert defer(session=db_session, job=job, reason="waits", delay_seconds=5, now=now)
    again = claim(session=db_session, owner="b", lease_seconds=LEASE, now=now, tasks=[TASK])
    assert again is None  # not before its delay
    later = now + timedelta(seconds=5)
    again = claim(session=db_session, owner="b", lease_seconds=LEASE, now=later, tasks=[TASK])
    assert again is not None and again.attempt == 1
    assert not defer(session=db_session, job=job, reason="waits", delay_seconds=5, now=later)
