"""The real `tianxun worker` in subprocesses: it validates scenes, survives bad input, stops on
SIGTERM, delivers webhooks, and a job whose worker is SIGKILLed is taken over and completes
exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models import AlertEvent, ApiClient
from models.base import utcnow
from models.client import Role
from models.scene import IngestJob, JobStatus, Scene, SceneStatus
from service.alerts.feed import EventFilter
from service.alerts.ssrf import parse_networks
from service.alerts.webhooks import create_subscription
from service.auth import principal_for
from service.clients import create_client
from service.db import create_db_engine, create_session_factory, transaction
from service.ingest.scenes import ingest_snapshot
from service.ingest.store import JPEG, stage_chunks
from service.metrics import render_metrics
from service.queue import enqueue
from service.settings import Settings
from tests.service.alerts.receiver import Receiver
from tests.service.ingest.blocking_task import BLOCK_TASK, COMPLETIONS
from tests.service.ingest.conftest import add_camera, add_placeholder_scene, jpeg_bytes

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]
TIANXUN = Path(sys.executable).parent / "tianxun"


def wait_for(condition: Callable[[], object], *, timeout: float = 60, what: str = "") -> None:
    """Poll a condition another process makes true (files, rows), failing after `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def worker_url(fresh_db_url: str) -> str:
    """A fresh migrated database that only this test's workers use."""
    return fresh_db_url


@pytest.fixture
def worker_settings(worker_url: str, tmp_path: Path) -> Settings:
    url = worker_url
    (tmp_path / "data" / "control").mkdir(parents=True)
    (tmp_path / "prometheus").mkdir()
    return Settings(database_url=url, data_dir=tmp_path / "data", _env_file=None)  # type: ignore[call-arg]


@pytest.fixture
def factory(worker_settings: Settings) -> Iterator[sessionmaker[Session]]:
    engine = create_db_engine(worker_settings.database_url)
    yield create_session_factory(engine)
    engine.dispose()


@pytest.fixture
def start_worker(
    worker_settings: Settings, tmp_path: Path
) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(*, concurrency: int = 1, lease_seconds: float = 30) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "TIANXUN_DATABASE_URL": worker_settings.database_url,
            "TIANXUN_DATA_DIR": str(worker_settings.data_dir),
            "TIANXUN_LEASE_SECONDS": str(lease_seconds),
            "TIANXUN_WORKER_POLL_SECONDS": "0.1",
            "TIANXUN_TASK_MODULES": '["tests.service.ingest.blocking_task"]',
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
            "TIANXUN_WEBHOOK_ALLOWED_NETWORKS": '["127.0.0.0/8"]',
        }
        log = open(tmp_path / f"worker-{len(started)}.log", "wb")  # noqa: SIM115
        process = subprocess.Popen(
            [str(TIANXUN), "worker", "--concurrency", str(concurrency)],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def job_of(factory: sessionmaker[Session], scene_id: int, task: str) -> IngestJob:
    with factory() as session:
        return session.scalars(
            select(IngestJob).where(IngestJob.scene_id == scene_id, IngestJob.task == task)
        ).one()


def stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=30)


def test_worker_validates_scenes_and_records_bad_ones(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    factory: sessionmaker[Session],
    worker_settings: Settings,
    start_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    good, bad = jpeg_bytes(), jpeg_bytes()[:1500]
    scene_ids = []
    with transaction(factory) as session:
        code, preset = add_camera(session)
        for data in (good, bad):
            staged = stage_chunks([data], worker_settings.data_dir, kind=JPEG, max_bytes=10**6)
            result = ingest_snapshot(
                session=session,
                settings=worker_settings,
                staged=staged,
                camera_code=code,
                preset=preset,
                captured_at=utcnow(),
            )
            scene_ids.append(result.scene.id)
    worker = start_worker(concurrency=2)
    wait_for(
        lambda: all(job_of(factory, s, "validate").status == JobStatus.done for s in scene_ids),
        what="both validation jobs to finish",
    )
    with factory() as session:
        ok, broken = (session.get(Scene, s) for s in scene_ids)
        assert ok is not None and broken is not None
        assert ok.status == SceneStatus.received and (ok.width, ok.height) == (64, 48)
        assert (
            broken.status == SceneStatus.failed
            and "truncated" in (broken.failure_reason or "").lower()
        )
    assert worker.poll() is None  # the bad scene did not stop it
    assert stop(worker) == 0
    # The API process reports the worker's job latencies (shared multiprocess directory).
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "prometheus"))
    metrics = render_metrics(factory).decode()
    assert 'tianxun_job_duration_seconds_count{outcome="done",task="validate"} 2.0' in metrics
    assert 'tianxun_queue_jobs{status="done"} 2.0' in metrics


def test_sigkilled_job_is_taken_over_after_its_lease_and_completes_once(
    factory: sessionmaker[Session],
    worker_settings: Settings,
    start_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    control = worker_settings.data_dir / "control"
    with transaction(factory) as session:
        scene = add_placeholder_scene(session)
        enqueue(session=session, scene_id=scene.id, task=BLOCK_TASK)
        scene_id = scene.id

    first = start_worker(lease_seconds=2)
    wait_for(lambda: list(control.glob("started-1-*")), what="the first attempt to start")
    second = start_worker(lease_seconds=2)
    if factory.kw["bind"].dialect.name == "postgresql":
        # While the first worker lives its heartbeat keeps the lease, though the second polls.
        claimed = job_of(factory, scene_id, BLOCK_TASK)
        assert claimed.started_at is not None
        wait_for(
            lambda: (
                job_of(factory, scene_id, BLOCK_TASK).lease_expires_at
                > claimed.started_at + timedelta(seconds=3 * 2)
            ),
            what="the lease to be extended past three leases",
        )
        assert job_of(factory, scene_id, BLOCK_TASK).lease_owner == claimed.lease_owner
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    wait_for(lambda: list(control.glob("started-2-*")), what="the takeover after the lease")
    (control / "release").touch()
    wait_for(
        lambda: job_of(factory, scene_id, BLOCK_TASK).status == JobStatus.done,
        what="the job to complete",
    )
    job = job_of(factory, scene_id, BLOCK_TASK)
    assert job.attempts == 2 and job.dead_reason is None
    assert "taken over" in (job.last_error or "")
    with factory() as session:
        item = session.get(Scene, scene_id).stac_item  # type: ignore[union-attr]
    assert item is not None and item[COMPLETIONS] == 1
    assert stop(second) == 0


def test_worker_delivers_webhooks_so_no_separate_process_is_needed(
    factory: sessionmaker[Session], start_worker: Callable[..., subprocess.Popen[bytes]]
) -> None:
    receiver = Receiver()
    receiver.start()
    try:
        with transaction(factory) as session:
            issued = create_client(
                f"hooks-{uuid.uuid4().hex[:8]}", session=session, role=Role.admin,
                jurisdiction_codes=[],
            )  # fmt: skip
            principal = principal_for(session.get_one(ApiClient, issued.client_id), session=session)
            create_subscription(
                principal, receiver.url, EventFilter(), session=session,
                allowed_networks=parse_networks(["127.0.0.0/8"]),
            )  # fmt: skip
        worker = start_worker()  # webhook delivery is on unless --no-webhooks
        with transaction(factory) as session:
            event = AlertEvent(event_type="case_created", payload={"code": "TX-1"})
            session.add(event)
            session.flush()
            event_id = event.id
        receiver.wait_for(lambda r: len(r.delivered()) == 1, timeout=60)
        assert [r.event_id for r in receiver.delivered()] == [event_id]
        assert receiver.delivered()[0].headers["webhook-id"] == f"evt_{event_id}"
        assert stop(worker) == 0
    finally:
        receiver.stop()
