"""The worker: threads that claim ingest jobs, run their task and record the outcome.

Each job's effects are written in one transaction together with its completion, so they
happen exactly once; a heartbeat thread extends the lease meanwhile. A phased task (the
analysis) reads its inputs and computes with no write transaction open, then writes briefly.
A failing job is recorded (retry with backoff, or dead letter) and the worker goes on; a job
that cannot run yet (`NotYetError`) is put back for a poll interval, its attempt not counted.
SIGTERM/SIGINT stop claiming; running jobs finish first. A worker may also run the webhook
delivery loop in a thread of its own, so that a deployment needs no extra process for it.

On SQLite a job's transaction takes the write lock at its start (`BEGIN IMMEDIATE`): SQLite
has one writer, and a deferred transaction could not commit after a heartbeat or claim from
another connection had written. Plain handlers therefore run one at a time there, and nobody can
take over a lease while its holder is running (the lock is the lease). Phased tasks hold the
lock only while writing, so ingest and other jobs proceed during their compute; a lease lost
meanwhile is found when writing, and the write is rolled back. Use PostgreSQL for parallel
jobs on several machines.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from dataclasses import dataclass
from types import FrameType

import structlog
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from service.alerts.delivery import WebhookDeliverer
from service.db import create_db_engine, machine_session_factory, transaction
from service.logging import configure_logging
from service.metrics import JOB_FAILURES, JOB_SECONDS, JOBS_DEAD
from service.queue import (
    Affinity,
    ClaimedJob,
    NotYetError,
    claim,
    claim_session_factory,
    complete,
    defer,
    fail,
    heartbeat,
)
from service.settings import Settings
from service.tasks import (
    PermanentTaskError,
    PhasedTask,
    get_handler,
    load_task_modules,
    prepare_tasks,
    registered_tasks,
)

log = structlog.get_logger("tianxun.worker")


class LeaseLostError(Exception):
    """Another worker took the job over while this one ran it; its effects are rolled back."""


@dataclass(frozen=True)
class JobOutcome:
    status: str  # "done", "deferred", "retry", "dead", "lease_lost"
    reason: str | None = None


class Worker:
    """`concurrency` job threads (and optionally webhook delivery) sharing one engine;
    `run()` blocks until `stop()`."""

    def __init__(
        self,
        settings: Settings,
        *,
        concurrency: int = 1,
        engine: Engine | None = None,
        deliver_webhooks: bool = False,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.settings = settings
        self.concurrency = concurrency
        self.deliver_webhooks = deliver_webhooks
        self.engine = engine or create_db_engine(
            settings.database_url, busy_timeout_ms=settings.sqlite_busy_timeout_ms
        )
        self.sessions = machine_session_factory(self.engine)  # jobs act for no one caller
        # Claims, and on SQLite whole jobs, take the write lock at BEGIN.
        self.claims = claim_session_factory(self.engine)
        self.job_sessions: sessionmaker[Session] = (
            self.claims if self.engine.dialect.name == "sqlite" else self.sessions
        )
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.affinity = Affinity(settings.job_affinity_seconds, settings.job_affinity_limit_seconds)
        self.stopping = threading.Event()
        # The job each thread (by lease owner) claimed when it completed its last one.
        self._claimed_next: dict[str, ClaimedJob] = {}

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        load_task_modules(self.settings.task_modules)
        prepare_tasks()
        log.info(
            "worker started",
            name=self.name,
            concurrency=self.concurrency,
            tasks=registered_tasks(),
            webhooks=self.deliver_webhooks,
        )
        threads = [
            threading.Thread(target=self._loop, args=(f"{self.name}:{index}",), name=f"job-{index}")
            for index in range(self.concurrency)
        ]
        if self.deliver_webhooks:
            # Built here so that a bad webhook setting stops the worker at start, loudly.
            deliverer = WebhookDeliverer(self.settings, engine=self.engine)
            threads.append(
                threading.Thread(target=self._deliver, args=(deliverer,), name="webhooks")
            )
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        log.info("worker stopped", name=self.name)

    def _deliver(self, deliverer: WebhookDeliverer) -> None:
        try:
            deliverer.run(self.stopping)
        finally:
            deliverer.http.close()

    def _loop(self, owner: str) -> None:
        while not self.stopping.is_set():
            try:
                job = self.claim_next(owner)
            except SQLAlchemyError as error:
                # Database restarting or locked: wait a poll interval and try again.
                log.warning("claim failed", owner=owner, error=str(error).splitlines()[0])
                job = None
            if job is None:
                self.stopping.wait(self.settings.worker_poll_seconds)
                continue
            self.run_job(job)
        self._put_back_claimed(owner)

    def claim_next(self, owner: str) -> ClaimedJob | None:
        """The job `owner` claimed when it completed its last one, or the next one due."""
        held = self._claimed_next.pop(owner, None)
        if held is not None:
            return held
        with transaction(self.claims) as session:
            return self._claim(session, owner)

    def _claim(self, session: Session, owner: str) -> ClaimedJob | None:
        return claim(
            session=session,
            owner=owner,
            lease_seconds=self.settings.lease_seconds,
            tasks=registered_tasks(),
            affinity=self.affinity,
        )

    def run_job(self, job: ClaimedJob) -> JobOutcome:
        """Run one claimed job to an outcome; never raises for what the job does."""
        started = time.monotonic()
        log.info("job started", job=job.id, task=job.task, scene=job.scene_id, attempt=job.attempt)
        with _Heartbeat(self, job):
            try:
                self._execute(job)
                outcome = JobOutcome("done")
            except LeaseLostError as error:
                outcome = JobOutcome("lease_lost", str(error))
            except NotYetError as error:
                outcome = self._defer(job, error)
            except Exception as error:  # a bad job must never stop the worker
                outcome = self._record_failure(job, error)
        JOB_SECONDS.labels(job.task, outcome.status).observe(time.monotonic() - started)
        if outcome.status not in ("done", "deferred"):
            JOB_FAILURES.labels(job.task, _reason_label(outcome)).inc()
        log.info(
            "job finished", job=job.id, task=job.task, outcome=outcome.status, reason=outcome.reason
        )
        return outcome

    def _execute(self, job: ClaimedJob) -> None:
        handler = get_handler(job.task)
        if handler is None:
            raise PermanentTaskError(f"no handler is registered for task {job.task!r}")
        if isinstance(handler, PhasedTask):
            self._execute_phased(handler, job)
            return
        with transaction(self.job_sessions) as session:
            handler(session, job, self.settings)
            following = self._complete(session, job)
        self._keep_claimed(job.owner, following)

    def _execute_phased(self, task: PhasedTask, job: ClaimedJob) -> None:
        with transaction(self.sessions) as session:  # reads only: takes no write lock
            inputs = task.read(session, job, self.settings)
        result = task.compute(inputs, self.settings)
        with transaction(self.job_sessions) as session:
            task.write(session, job, self.settings, result)
            following = self._complete(session, job)
        self._keep_claimed(job.owner, following)
        if task.committed is not None:
            task.committed(result)

    def _complete(self, session: Session, job: ClaimedJob) -> ClaimedJob | None:
        """Mark `job` done and claim the thread's next job in the same transaction.

        A claim is a write transaction of its own otherwise, and on SQLite every write
        transaction waits its turn for the database's one write lock: at 50 snapshots a second
        a worker spent about 9 ms a job between one job and the next. The claim commits or
        rolls back with the completion; none is made once the worker is stopping.
        """
        if not complete(session=session, job=job):
            raise LeaseLostError(
                f"job {job.id} was taken over after the lease of {job.owner} expired"
            )
        return None if self.stopping.is_set() else self._claim(session, job.owner)

    def _keep_claimed(self, owner: str, job: ClaimedJob | None) -> None:
        """Hold a job claimed with a completion (now committed) for the thread's next turn."""
        if job is not None:
            self._claimed_next[owner] = job

    def _put_back_claimed(self, owner: str) -> None:
        """A stopping thread's claimed but unstarted job goes back to the queue at once."""
        job = self._claimed_next.pop(owner, None)
        if job is None:
            return
        try:
            with transaction(self.claims) as session:
                defer(
                    session=session,
                    job=job,
                    reason="claimed by a worker that stopped before starting it",
                    delay_seconds=0,
                )
        except SQLAlchemyError as error:
            # Its lease expires and another worker takes it over: it is not lost.
            log.warning("could not put back", job=job.id, error=str(error).splitlines()[0])

    def _defer(self, job: ClaimedJob, error: NotYetError) -> JobOutcome:
        reason = _reason_of(error)
        try:
            with transaction(self.claims) as session:
                held = defer(
                    session=session,
                    job=job,
                    reason=reason,
                    delay_seconds=self.settings.worker_poll_seconds,
                )
        except SQLAlchemyError as db_error:
            # The lease will expire and the job be claimed again: it is not lost.
            log.warning("could not defer", job=job.id, error=str(db_error).splitlines()[0])
            return JobOutcome("retry", reason)
        return JobOutcome("deferred", reason) if held else JobOutcome("lease_lost", reason)

    def _record_failure(self, job: ClaimedJob, error: Exception) -> JobOutcome:
        reason = _reason_of(error)
        log.warning("job failed", job=job.id, task=job.task, reason=reason)
        try:
            with transaction(self.claims) as session:
                status = fail(
                    session=session,
                    job=job,
                    reason=reason,
                    retry_base_seconds=self.settings.retry_base_seconds,
                    retry_max_seconds=self.settings.retry_max_seconds,
                    permanent=isinstance(error, PermanentTaskError),
                )
        except SQLAlchemyError as db_error:
            # The lease will expire and the job be retried: nothing accepted is lost.
            log.error("could not record failure", job=job.id, error=str(db_error))
            return JobOutcome("retry", reason)
        if status is None:
            return JobOutcome("lease_lost", reason)
        if status.value == "dead":
            JOBS_DEAD.labels(job.task).inc()
            return JobOutcome("dead", reason)
        return JobOutcome("retry", reason)


def _reason_of(error: Exception) -> str:
    """What is recorded on the job: the exception's type and message, bounded."""
    return f"{type(error).__name__}: {error}"[:2000]


def _reason_label(outcome: JobOutcome) -> str:
    # Bounded label values: the exception type, never the message.
    if outcome.status == "lease_lost" or not outcome.reason:
        return outcome.status
    return outcome.reason.split(":", 1)[0]


class _Heartbeat:
    """Extends a job's lease every third of the lease while the job runs."""

    def __init__(self, worker: Worker, job: ClaimedJob) -> None:
        self.worker = worker
        self.job = job
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._beat, name=f"heartbeat-{job.id}", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()

    def _beat(self) -> None:
        lease = self.worker.settings.lease_seconds
        while not self.done.wait(lease / 3):
            try:
                with transaction(self.worker.sessions) as session:
                    held = heartbeat(session=session, job=self.job, lease_seconds=lease)
            except SQLAlchemyError as error:
                log.warning("heartbeat failed", job=self.job.id, error=str(error).splitlines()[0])
                continue
            if not held and not self.done.is_set():
                log.warning("lease lost", job=self.job.id, owner=self.job.owner)
                return


def run_until_signalled(
    settings: Settings, *, concurrency: int, deliver_webhooks: bool = True
) -> None:
    """Run a worker in the foreground until SIGTERM or SIGINT."""
    configure_logging(level=settings.log_level, json=settings.log_json)
    worker = Worker(settings, concurrency=concurrency, deliver_webhooks=deliver_webhooks)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("stopping after running jobs finish", signal=signal.Signals(signum).name)
        worker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        worker.run()
    finally:
        worker.engine.dispose()
