"""The durable ingest queue: jobs in the database, claimed under a lease a heartbeat extends.

A job is claimed with `FOR UPDATE SKIP LOCKED` on PostgreSQL, so workers on several machines
share one database; on SQLite the claim runs in a short `BEGIN IMMEDIATE` transaction (see
`claim_session_factory`). A lease that is not extended expires and another worker takes the
job over. Every state change checks the lease owner, so a worker that lost its lease cannot
complete or fail a job another worker now holds. Failures retry with exponential backoff and
jitter; after `max_attempts` the job is dead, with its reason kept.

A job may name a preferred worker process (e.g. the one holding its camera preset's detector
state in memory). A worker claims the oldest job that is its own, nobody's, or has waited past
`Affinity.limit_seconds` (its preferred worker is busy or gone); only when there is none does
it help with others' jobs that have waited `Affinity.wait_seconds`. Under a backlog each worker
keeps to its own jobs, and a job never waits on a vanished worker for longer than the limit.

A job that cannot run yet (it waits for another job's result) raises `NotYetError` and is put
back with `defer`: queued again shortly, without using up an attempt. A job that does other
queued jobs' work with its own (a camera job catching up its preset's snapshots) marks them
done in its transaction with `complete_queued`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args

from sqlalchemy import ColumnElement, Engine, Select, bindparam, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from models.base import table_of, utcnow
from models.scene import IngestJob, JobStatus, Scene, SceneStatus
from service.db import SQLITE_IMMEDIATE, machine_session_factory


@dataclass(frozen=True)
class ClaimedJob:
    """What a worker needs to run a job and to prove it still holds the lease."""

    id: int
    scene_id: int
    task: str
    attempt: int
    max_attempts: int
    owner: str
    lease_expires_at: datetime


class NotYetError(Exception):
    """The job cannot run yet: it waits for another job to finish. Deferred, not failed."""


@dataclass(frozen=True)
class Affinity:
    """How long jobs preferred by another worker process are left to it (see the module)."""

    wait_seconds: float  # an idle worker helps with them after this long
    limit_seconds: float  # after this long they come before the worker's own jobs


@dataclass(frozen=True)
class QueueStats:
    counts: dict[str, int]  # jobs by status
    ready: int  # queued and due now
    oldest_ready_age_seconds: float  # 0 when nothing is waiting
    expired_leases: int  # running jobs whose worker stopped heart-beating


def claim_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose transactions take SQLite's write lock at BEGIN, as a claim must.

    They see every jurisdiction's rows: on SQLite whole jobs run in them."""
    return machine_session_factory(engine.execution_options(**SQLITE_IMMEDIATE))


def enqueue(
    *,
    session: Session,
    scene_id: int,
    task: str,
    max_attempts: int = 5,
    run_after: datetime | None = None,
    preferred_worker: str | None = None,
    new_scene: bool = False,
) -> IngestJob:
    """The job for (scene, task), created if absent: enqueueing twice never duplicates.

    With `new_scene` (the scene was inserted in this transaction, so no other can have
    queued a job for it) the job is inserted without looking first or a savepoint: every
    upload pays for those otherwise.
    """
    if not new_scene and (existing := _find(session, scene_id, task)) is not None:
        return existing
    job = IngestJob(
        scene_id=scene_id,
        task=task,
        status=JobStatus.queued,
        attempts=0,
        max_attempts=max_attempts,
        run_after=run_after or utcnow(),
        preferred_worker=preferred_worker,
    )
    if new_scene:
        session.add(job)
        return job
    try:
        with session.begin_nested():
            session.add(job)
            session.flush()
    except IntegrityError:
        # Another transaction enqueued the same job between our look and our insert.
        existing = _find(session, scene_id, task)
        if existing is None:
            raise
        return existing
    return job


def _find(session: Session, scene_id: int, task: str) -> IngestJob | None:
    statement = select(IngestJob).where(IngestJob.scene_id == scene_id, IngestJob.task == task)
    return session.scalars(statement).one_or_none()


# Which jobs a claim looks among, in the order `_claim_order` asks (see the module): any job;
# those its worker takes before any other (its own, nobody's, and others' waiting since before
# `:waited_since`); or any waiting since before `:waited_since`.
Lookup = Literal["any", "first", "waited"]


def _claim_statement(lookup: Lookup, *, with_tasks: bool) -> Select[IngestJob]:
    """The oldest claimable job of the `lookup` (a due queued one, or a running one whose
    lease expired), locked; only of the `:tasks` when `with_tasks`."""
    claimable = or_(
        (IngestJob.status == JobStatus.queued) & (IngestJob.run_after <= bindparam("now")),
        (IngestJob.status == JobStatus.running) & (IngestJob.lease_expires_at < bindparam("now")),
    )
    statement = (
        select(IngestJob)
        .where(claimable)
        .order_by(IngestJob.run_after, IngestJob.id)
        .limit(1)
        .with_for_update(skip_locked=True)
        # The row may be in this session already, with values older than the lock we take.
        .execution_options(populate_existing=True)
    )
    if with_tasks:
        statement = statement.where(IngestJob.task.in_(bindparam("tasks", expanding=True)))
    waited = IngestJob.run_after <= bindparam("waited_since")
    if lookup == "first":
        mine = IngestJob.preferred_worker == bindparam("worker")
        return statement.where(or_(IngestJob.preferred_worker.is_(None), mine, waited))
    return statement.where(waited) if lookup == "waited" else statement


# Every job's claim runs one or two of these: built once, as building one cost several times
# what executing it does.
_CLAIMS = {
    (lookup, with_tasks): _claim_statement(lookup, with_tasks=with_tasks)
    for lookup in get_args(Lookup)
    for with_tasks in (False, True)
}


def _claim_order(
    owner: str, affinity: Affinity | None, now: datetime
) -> list[tuple[Lookup, dict[str, Any]]]:
    """The lookups to find a job with, and their parameters, in turn: the first that finds
    one wins."""
    if affinity is None:
        return [("any", {})]
    limit = now - timedelta(seconds=affinity.limit_seconds)
    wait = now - timedelta(seconds=affinity.wait_seconds)
    return [
        ("first", {"worker": worker_process(owner), "waited_since": limit}),
        ("waited", {"waited_since": wait}),
    ]


def worker_process(owner: str) -> str:
    """The worker process ("host:pid") of a lease owner ("host:pid:thread")."""
    return owner.rsplit(":", 1)[0]


def claim(
    *,
    session: Session,
    owner: str,
    lease_seconds: float,
    tasks: list[str] | None = None,
    now: datetime | None = None,
    affinity: Affinity | None = None,
) -> ClaimedJob | None:
    """Lease the next due job (or one whose lease expired) to `owner`, or None if idle.

    With `affinity`, jobs preferred by another worker process are left to it for a while
    (see the module). On SQLite the session must come from `claim_session_factory`; commit
    right after.
    """
    now = now or utcnow()
    of_tasks = {"tasks": tasks} if tasks is not None else {}
    for lookup, parameters in _claim_order(owner, affinity, now):
        statement = _CLAIMS[lookup, tasks is not None]
        values = {"now": now, **of_tasks, **parameters}
        while (job := session.scalars(statement, values).one_or_none()) is not None:
            if job.attempts < job.max_attempts:
                return _lease(session, job, owner=owner, lease_seconds=lease_seconds, now=now)
            # Its last attempt's worker died holding the lease: no attempts are left.
            _bury(
                session,
                job,
                f"lease of {job.lease_owner} expired on the last of {job.attempts} attempts; "
                f"last error: {job.last_error or 'none'}",
                now=now,
            )
            session.flush()
    return None


def _lease(
    session: Session, job: IngestJob, *, owner: str, lease_seconds: float, now: datetime
) -> ClaimedJob:
    if job.status == JobStatus.running:
        job.last_error = f"lease of {job.lease_owner} expired; taken over by {owner}"
    job.status = JobStatus.running
    job.attempts += 1
    job.lease_owner = owner
    job.lease_expires_at = now + timedelta(seconds=lease_seconds)
    job.heartbeat_at = now
    job.started_at = now
    session.flush()
    return ClaimedJob(
        job.id, job.scene_id, job.task, job.attempts, job.max_attempts, owner, job.lease_expires_at
    )


def _held(job_id: int, owner: str) -> ColumnElement[bool]:
    return (
        (IngestJob.id == job_id)
        & (IngestJob.lease_owner == owner)
        & (IngestJob.status == JobStatus.running)
    )


def heartbeat(
    *, session: Session, job: ClaimedJob, lease_seconds: float, now: datetime | None = None
) -> bool:
    """Extend the lease; False if the job is no longer ours (the lease expired and was taken)."""
    now = now or utcnow()
    return _update_held(
        session, job, lease_expires_at=now + timedelta(seconds=lease_seconds), heartbeat_at=now
    )


def complete(*, session: Session, job: ClaimedJob, now: datetime | None = None) -> bool:
    """Mark done; False (and nothing changed) if another worker holds the job now.

    Call it in the transaction that holds the task's effects, and roll back on False: the
    effects then happen exactly once, under whichever worker completes.
    """
    now = now or utcnow()
    result = session.execute(_COMPLETE, {"job_id": job.id, "owner": job.owner, "now": now})
    return bool(result.rowcount)  # type: ignore[attr-defined]


# Every job ends with it: built once (see `_CLAIMS`).
_jobs = table_of(IngestJob)
_COMPLETE = (
    update(_jobs)
    .where(
        _jobs.c.id == bindparam("job_id"),
        _jobs.c.lease_owner == bindparam("owner"),
        _jobs.c.status == JobStatus.running,
    )
    .values(
        status=JobStatus.done,
        finished_at=bindparam("now"),
        lease_owner=None,
        lease_expires_at=None,
        updated_at=bindparam("now"),
    )
)


def complete_queued(
    *, session: Session, task: str, scene_ids: list[int], now: datetime | None = None
) -> int:
    """Mark done the queued `task` jobs of `scene_ids`, whose work the caller's job has done.

    Call it in the transaction that holds that work. A job another worker has claimed is left
    running: it finds its work done and ends without effects. Returns how many were marked.
    """
    if not scene_ids:
        return 0
    now = now or utcnow()
    result = session.execute(
        update(IngestJob)
        .where(
            IngestJob.task == task,
            IngestJob.scene_id.in_(scene_ids),
            IngestJob.status == JobStatus.queued,
        )
        .values(status=JobStatus.done, finished_at=now, last_error=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def defer(
    *,
    session: Session,
    job: ClaimedJob,
    reason: str,
    delay_seconds: float,
    now: datetime | None = None,
) -> bool:
    """Put a job that cannot run yet back in the queue, its attempt not counted.

    False (and nothing changed) if another worker holds the job now.
    """
    now = now or utcnow()
    return _update_held(
        session,
        job,
        status=JobStatus.queued,
        attempts=IngestJob.attempts - 1,
        run_after=now + timedelta(seconds=delay_seconds),
        lease_owner=None,
        lease_expires_at=None,
        last_error=reason,
        updated_at=now,
    )


def _update_held(session: Session, job: ClaimedJob, **values: Any) -> bool:
    """Set `values` on the job if `job.owner` still holds it; False (nothing changed) if not."""
    result = session.execute(
        update(IngestJob)
        .where(_held(job.id, job.owner))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def backoff_seconds(
    attempt: int, *, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """Delay before retry `attempt` + 1: exponential, capped, with jitter in [50 %, 100 %].

    Jitter spreads the retries of jobs that failed together (e.g. a database restart).
    """
    delay = min(cap, base * 2 ** max(0, attempt - 1))
    return delay * (0.5 + 0.5 * (rng or random).random())


def fail(
    *,
    session: Session,
    job: ClaimedJob,
    reason: str,
    retry_base_seconds: float,
    retry_max_seconds: float,
    permanent: bool = False,
    now: datetime | None = None,
    rng: random.Random | None = None,
) -> JobStatus | None:
    """Record a failed attempt: retried later, or dead when attempts are spent (or `permanent`).

    Returns the job's new status, or None if the job is no longer ours.
    """
    now = now or utcnow()
    row = session.scalars(
        select(IngestJob)
        .where(_held(job.id, job.owner))
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if row is None:
        return None
    row.last_error = reason
    row.lease_owner = None
    row.lease_expires_at = None
    if permanent or row.attempts >= row.max_attempts:
        _bury(
            session,
            row,
            reason if permanent else f"gave up after {row.attempts} attempts: {reason}",
            now=now,
        )
    else:
        delay = backoff_seconds(
            row.attempts, base=retry_base_seconds, cap=retry_max_seconds, rng=rng
        )
        row.status = JobStatus.queued
        row.run_after = now + timedelta(seconds=delay)
    session.flush()
    return row.status


def _bury(session: Session, job: IngestJob, reason: str, *, now: datetime) -> None:
    job.status = JobStatus.dead
    job.dead_reason = reason
    job.finished_at = now
    job.lease_owner = None
    job.lease_expires_at = None
    # The scene cannot get further without this job: say so where users look.
    session.execute(
        update(Scene)
        .where(Scene.id == job.scene_id, Scene.status != SceneStatus.failed)
        .values(status=SceneStatus.failed, failure_reason=f"{job.task} job gave up: {reason}")
        .execution_options(synchronize_session="fetch")
    )


def requeue_dead(*, session: Session, job_id: int, now: datetime | None = None) -> bool:
    """Give a dead job a fresh set of attempts (after its cause was fixed)."""
    result = session.execute(
        update(IngestJob)
        .where(IngestJob.id == job_id, IngestJob.status == JobStatus.dead)
        .values(status=JobStatus.queued, attempts=0, run_after=now or utcnow(), dead_reason=None)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def queue_stats(*, session: Session, now: datetime | None = None) -> QueueStats:
    now = now or utcnow()
    counts = {status.value: 0 for status in JobStatus}
    for status, count in session.execute(
        select(IngestJob.status, func.count()).group_by(IngestJob.status)
    ):
        counts[JobStatus(status).value] = count
    ready, oldest = session.execute(
        select(func.count(), func.min(IngestJob.run_after)).where(
            IngestJob.status == JobStatus.queued, IngestJob.run_after <= now
        )
    ).one()
    expired = session.scalar(
        select(func.count()).where(
            IngestJob.status == JobStatus.running, IngestJob.lease_expires_at < now
        )
    )
    oldest_at = _as_utc(oldest)
    age = max(0.0, (now - oldest_at).total_seconds()) if oldest_at is not None else 0.0
    return QueueStats(counts, int(ready), age, int(expired or 0))


def _as_utc(value: datetime | str | None) -> datetime | None:
    # Aggregates bypass the column type, so SQLite hands back its stored text.
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
