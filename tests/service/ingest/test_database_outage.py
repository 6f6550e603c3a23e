"""PostgreSQL goes away during ingest: `tianxun serve` and two `tianxun worker` processes keep
going. Uploads refused meanwhile get 503 + Retry-After, clients retry, every upload answered
2xx is stored and validated exactly once, and the workers reconnect by themselves.

Two outages: every connection to the test's database terminated while new ones are refused
for a few seconds (it touches no other database), and a real restart of the cluster with
`pg_ctlcluster` (which briefly breaks everyone else's connections to the cluster too). A last
test shows that an Idempotency-Key whose request met the outage does not stay blocked: its
retry is accepted.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from models.base import utcnow
from models.client import Role
from models.scene import IngestJob, JobStatus, Scene, SceneStatus
from service.clients import create_client
from service.db import create_db_engine, create_session_factory, transaction
from service.errors import PROBLEM_JSON
from service.ingest import router as ingest_router
from service.main import create_app
from service.settings import Settings
from tests.service.ingest.conftest import add_camera, jpeg_bytes

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]
TIANXUN = Path(sys.executable).parent / "tianxun"
OUTAGE_SECONDS = 4.0
LEASE_SECONDS = 10.0  # a job whose outcome could not be recorded is retried after its lease
UPLOADERS = 2
UPLOADS_AFTER_OUTAGE = 30


def wait_for(condition: Callable[[], object], *, timeout: float, what: str) -> None:
    """Poll what other processes make true (rows, an answering port); fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the two outages ------------------------------------------------------------------------


def cut_off_database(url: str, seconds: float) -> None:
    """Terminate every connection to the database and refuse new ones for `seconds`."""
    set_connections(url, allowed=False)
    time.sleep(seconds)  # the outage itself
    set_connections(url, allowed=True)


def set_connections(url: str, *, allowed: bool) -> None:
    """Let the database take connections again, or refuse new ones and cut the open ones."""
    name = make_url(url).database
    admin = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {allowed}'))
            if not allowed:
                connection.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": name},
                )
    finally:
        admin.dispose()


def local_cluster(url: str) -> tuple[str, str]:
    """(version, name) of the Debian cluster serving `url`, or a skip when there is none."""
    if shutil.which("pg_ctlcluster") is None or shutil.which("pg_lsclusters") is None:
        pytest.skip("pg_ctlcluster is not available: the restart needs a local Debian cluster")
    if os.geteuid() != 0 and getpass.getuser() != "postgres":
        pytest.skip("restarting the cluster needs root or the postgres user")
    server = make_url(url)
    if server.host not in ("127.0.0.1", "localhost", "::1"):
        pytest.skip(f"PostgreSQL at {server.host} is not a local cluster this test may restart")
    listing = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, check=True)
    for line in listing.stdout.splitlines():
        version, name, port, status = line.split()[:4]
        if int(port) == (server.port or 5432) and status.startswith("online"):
            return version, name
    pytest.skip(f"no online local cluster listens on port {server.port}")


def restart_cluster(cluster: tuple[str, str], seconds: float) -> None:
    """Stop the cluster (fast shutdown: sessions are cut), stay down `seconds`, start it."""
    version, name = cluster
    for action in ("stop", "start"):
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, name, action],
            check=True,
            capture_output=True,
            timeout=120,
        )
        if action == "stop":
            time.sleep(seconds)


# --- the deployment under test --------------------------------------------------------------


@dataclass
class Deployment:
    url: str
    api: str
    factory: sessionmaker[Session]
    logs: list[Path]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def workers(self) -> list[subprocess.Popen[bytes]]:
        return self.processes[1:]

    def log_size(self, index: int) -> int:
        return self.logs[index].stat().st_size

    def log_since(self, index: int, offset: int) -> str:
        with self.logs[index].open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")


@pytest.fixture
def deployment(fresh_db_url: str, tmp_path: Path) -> Iterator[Deployment]:
    """The API and two worker processes against a fresh PostGIS database."""
    engine = create_db_engine(fresh_db_url)
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",  # log lines are read while the processes run
        "TIANXUN_DATABASE_URL": fresh_db_url,
        "TIANXUN_DATA_DIR": str(tmp_path / "data"),
        "TIANXUN_WORKER_POLL_SECONDS": "0.1",
        "TIANXUN_LEASE_SECONDS": str(LEASE_SECONDS),
        "TIANXUN_RETRY_BASE_SECONDS": "0.5",
        "TIANXUN_RETRY_MAX_SECONDS": "2",
    }
    commands = [[str(TIANXUN), "serve", "--port", str(port)]]
    commands += [[str(TIANXUN), "worker"] for _ in range(2)]
    found = Deployment(
        fresh_db_url,
        f"http://127.0.0.1:{port}",
        create_session_factory(engine),
        [tmp_path / f"{argv[1]}-{i}.log" for i, argv in enumerate(commands)],
    )
    try:
        for argv, log_path in zip(commands, found.logs, strict=True):
            log = log_path.open("wb")
            found.processes.append(
                subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=log, stderr=log)
            )
        yield found
    finally:
        for process in found.processes:
            process.terminate()
        for process in found.processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        engine.dispose()


def api_ready(api: str) -> bool:
    try:
        return httpx.get(f"{api}/readyz", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


# --- a camera gateway that retries as a real one does -----------------------------------------


@dataclass
class Gateway:
    """Uploads new snapshots until told to stop, each retried until it is accepted."""

    api: str
    key: str
    camera: str
    preset: str
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    accepted: dict[str, int] = field(default_factory=dict)  # snapshot name → scene id
    refusals: list[httpx.Response] = field(default_factory=list)  # answers other than 2xx
    errors: list[str] = field(default_factory=list)  # no answer at all
    taken: int = 0

    def accepted_count(self) -> int:
        with self.lock:
            return len(self.accepted)

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "image/jpeg"}
        url = f"{self.api}/v1/cameras/{self.camera}/presets/{self.preset}/snapshots"
        with httpx.Client(headers=headers, timeout=30) as client:
            while not self.stop.is_set():
                name, data, taken_at = self._next_snapshot()
                self._upload(client, url, name, data, taken_at)

    def _next_snapshot(self) -> tuple[str, bytes, str]:
        with self.lock:
            self.taken += 1
            index = self.taken
        taken_at = utcnow() - timedelta(hours=1) + timedelta(milliseconds=index)
        return f"snapshot-{index}", jpeg_bytes(seed=index), taken_at.isoformat()

    def _upload(self, client: httpx.Client, url: str, name: str, data: bytes, at: str) -> None:
        # A snapshot in hand is never dropped: the gateway retries until the API takes it.
        while True:
            try:
                response = client.post(url, params={"captured_at": at}, content=data)
            except httpx.TransportError as error:
                with self.lock:
                    self.errors.append(f"{name}: {type(error).__name__}: {error}")
                time.sleep(0.5)
                continue
            if response.status_code in (200, 202):
                with self.lock:
                    self.accepted[name] = int(response.json()["id"])
                return
            with self.lock:
                self.refusals.append(response)
            if response.status_code != 503:
                return  # the assertions report it
            time.sleep(float(response.headers.get("Retry-After", "1")))


def run_gateways(deployment: Deployment, outage: Callable[[], None]) -> tuple[Gateway, list[int]]:
    """Upload before, during and after `outage`; returns the gateway and the size of each
    worker's log when the outage ended."""
    with transaction(deployment.factory) as session:
        camera, preset = add_camera(session)
        key = create_client(
            f"gateway-{uuid.uuid4().hex[:8]}",
            session=session,
            role=Role.ingest,
            jurisdiction_codes=[],
        ).key
    wait_for(lambda: api_ready(deployment.api), timeout=120, what="the API to be ready")
    gateway = Gateway(deployment.api, key, camera, preset)
    threads = [threading.Thread(target=gateway.run) for _ in range(UPLOADERS)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: gateway.accepted_count() >= 20, timeout=60, what="uploads before")
        outage()
        offsets = [deployment.log_size(i) for i in (1, 2)]
        target = gateway.accepted_count() + UPLOADS_AFTER_OUTAGE
        wait_for(lambda: gateway.accepted_count() >= target, timeout=120, what="uploads after")
    finally:
        gateway.stop.set()
        for thread in threads:
            thread.join(timeout=60)
    return gateway, offsets


def validated(factory: sessionmaker[Session], scene_ids: set[int]) -> bool:
    with factory() as session:
        done = session.scalar(
            select(func.count()).where(
                IngestJob.scene_id.in_(scene_ids),
                IngestJob.task == "validate",
                IngestJob.status == JobStatus.done,
            )
        )
    return done == len(scene_ids)


def assert_survived(deployment: Deployment, gateway: Gateway, offsets: list[int]) -> None:
    # Refused uploads were refused properly: 503 problem details with Retry-After, never 500.
    assert gateway.refusals, "no upload met the outage: the test did not test anything"
    for response in gateway.refusals:
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == PROBLEM_JSON
        assert int(response.headers["Retry-After"]) >= 1
    assert not gateway.errors, gateway.errors[:5]  # the API itself never went away

    # Every accepted upload is stored, once, and validated exactly once.
    accepted = set(gateway.accepted.values())
    assert len(accepted) == len(gateway.accepted)  # distinct snapshots, distinct scenes
    wait_for(lambda: validated(deployment.factory, accepted), timeout=120, what="validation")
    with deployment.factory() as session:
        scenes = session.scalars(select(Scene)).all()
        assert {scene.id for scene in scenes} == accepted  # nothing lost, nothing extra
        assert all(s.status == SceneStatus.received and s.width == 64 for s in scenes)
        jobs = session.scalars(select(IngestJob)).all()
        assert sorted(job.scene_id for job in jobs) == sorted(accepted)  # one job per scene
        assert all(job.status == JobStatus.done and job.dead_reason is None for job in jobs)

    # Both workers are still up and went on working once the database was back.
    for index, worker in enumerate(deployment.workers, start=1):
        assert worker.poll() is None, deployment.log_since(index, 0)[-2000:]
        since = deployment.log_since(index, offsets[index - 1])
        assert "outcome=done" in since, f"worker {index} did no job after the outage"


@pytest.mark.parametrize("fresh_db_url", ["postgresql"], indirect=True)
def test_ingest_survives_the_database_cutting_every_connection(
    deployment: Deployment,
) -> None:
    gateway, offsets = run_gateways(
        deployment, lambda: cut_off_database(deployment.url, OUTAGE_SECONDS)
    )
    assert_survived(deployment, gateway, offsets)


@pytest.mark.parametrize("fresh_db_url", ["postgresql"], indirect=True)
def test_ingest_survives_a_postgresql_restart(deployment: Deployment) -> None:
    cluster = local_cluster(deployment.url)
    gateway, offsets = run_gateways(deployment, lambda: restart_cluster(cluster, OUTAGE_SECONDS))
    assert_survived(deployment, gateway, offsets)


@pytest.mark.parametrize("fresh_db_url", ["postgresql"], indirect=True)
def test_an_idempotency_key_whose_request_met_the_outage_can_be_retried(
    fresh_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(database_url=fresh_db_url, data_dir=tmp_path / "data", _env_file=None)  # type: ignore[call-arg]
    real_ingest = ingest_router.ingest_snapshot
    outages: list[threading.Timer] = []

    def ingest_as_the_database_goes(**kwargs: object) -> object:
        # The key is reserved by now; the database goes away before the work reaches it.
        if not outages:
            outages.append(
                threading.Timer(2.0, set_connections, (fresh_db_url,), {"allowed": True})
            )
            set_connections(fresh_db_url, allowed=False)
            outages[0].start()
        return real_ingest(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ingest_router, "ingest_snapshot", ingest_as_the_database_goes)
    with TestClient(create_app(settings)) as client:
        with transaction(client.app.state.session_factory) as session:  # type: ignore[attr-defined]
            camera, preset = add_camera(session)
            key = create_client(
                f"gateway-{uuid.uuid4().hex[:8]}",
                session=session,
                role=Role.ingest,
                jurisdiction_codes=[],
            ).key
        headers = {
            "Authorization": f"Bearer {key}",
            "Content-Type": "image/jpeg",
            "Idempotency-Key": str(uuid.uuid4()),
        }
        url = f"/v1/cameras/{camera}/presets/{preset}/snapshots"
        snapshot = {"params": {"captured_at": utcnow().isoformat()}, "content": jpeg_bytes()}
        refused = client.post(url, headers=headers, **snapshot)  # type: ignore[arg-type]
        assert refused.status_code == 503, refused.text
        outages[0].join()
        wait_for(lambda: client.get("/readyz").status_code == 200, timeout=30, what="the database")
        retried = client.post(url, headers=headers, **snapshot)  # type: ignore[arg-type]
    assert retried.status_code == 202, retried.text
