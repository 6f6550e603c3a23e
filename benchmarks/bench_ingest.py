"""Ingest latency: camera snapshot upload accepted → analysed, and → its case visible, under load.

Run from the repository root:

    .venv/bin/python -m benchmarks.bench_ingest --backend sqlite --rate 50 --seconds 60
    .venv/bin/python -m benchmarks.bench_ingest --backend postgresql --rate 50 --seconds 60 \
        --postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/tianxun_bench_ingest

As in production, the API (`tianxun serve`) and `--workers` ingest workers (`tianxun worker`,
default settings) run as separate processes on a fresh database. A simulated world (made once,
kept under benchmarks/out/) gives calibrated tower cameras whose 1080p snapshots carry real
changes, legal layers and jurisdictions. To reach the load without simulating thousands of
frames, each camera is registered `clones` times (same place, same calibration) and every
clone uploads the world's frames with its own JPEG comment, so each upload is a distinct scene
that is decoded, validated and analysed like any other. Snapshots are sent open-loop at `--rate`
per second, in capture order, by several client threads; a 503 is retried after Retry-After.
This process polls the database every `--poll` seconds for analysed scenes and for detections
that joined a case (what GET /v1/cases then shows), so latencies carry up to one poll interval.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import queue
import re
import shutil
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode, urlsplit

import httpx
import numpy as np
import typer
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from benchmarks.bench_alerts import free_port, wait_http
from benchmarks.bench_db import check_disposable, machine, migrate, recreate_postgres, remove_sqlite
from models.case import Case
from models.client import Role
from models.detection import Detection
from models.scene import IngestJob, JobStatus, Scene, SceneStatus
from scripts.load_world import load_world
from service.cameras.registry import register_camera, register_preset
from service.clients import create_client
from service.db import create_db_engine, machine_session_factory, transaction
from service.settings import Settings
from simulator import WorldParams, generate_world
from simulator.products import uploads

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
TIANXUN = Path(sys.executable).with_name("tianxun")
# 4 cameras × 2 presets × 4 dates × 6 snapshots = 192 distinct frames with violations.
WORLD = WorldParams(
    seed=5, area_km2=1.0, epochs=4, cameras=4, presets_per_camera=2, snapshots_per_epoch=6
)
DONE = (SceneStatus.analysed, SceneStatus.failed)


@dataclass(frozen=True)
class Frame:
    camera: str
    preset: str
    captured_at: datetime
    data: bytes


@dataclass
class Load:
    """What the clients sent and what the poller saw, by scene id (monotonic seconds)."""

    accepted: dict[int, float] = field(default_factory=dict)
    analysed: dict[int, float] = field(default_factory=dict)
    in_case: dict[int, float] = field(default_factory=dict)
    statuses: Counter[int] = field(default_factory=Counter)
    depth: list[tuple[float, int, int]] = field(default_factory=list)  # (t, queued, running)
    lock: threading.Lock = field(default_factory=threading.Lock)
    send_seconds: float = 0.0
    behind_seconds: float = 0.0  # how late the last upload left against its schedule
    # By process: api, workers, database (PostgreSQL's server processes), and this benchmark
    # (its upload clients and poller, with the poller's server process).
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    # PostgreSQL server processes serving this benchmark's own queries (the poller's).
    own_backends: set[int] = field(default_factory=set)
    # Camera jobs by where their preset's state came from (memory, database, none).
    state_reads: dict[str, int] = field(default_factory=dict)
    peak_rss_mb: dict[str, float] = field(default_factory=dict)  # by process kind, the largest


# --- world, database and processes ----------------------------------------------------------


def world_frames(clones: int) -> tuple[Path, list[Frame]]:
    """The world (made once) and its snapshots, each sent by every clone, in capture order."""
    world = OUT / f"ingest-world-{WORLD.seed}"
    if not (world / "world.json").exists():
        typer.echo(f"simulating the benchmark world into {world} (once) ...")
        generate_world(WORLD, world)
    frames = []
    for upload in uploads(world, OUT / f"ingest-products-{WORLD.seed}"):
        if upload.media_type != "image/jpeg":
            continue
        camera, preset = upload.url.split("/")[3:6:2]  # /v1/cameras/{camera}/presets/{preset}/…
        data = upload.path.read_bytes()
        for clone in range(clones):
            frames.append(
                Frame(clone_code(camera, clone), preset, upload.captured_at, tagged(data, clone))
            )
    frames.sort(key=lambda frame: frame.captured_at)
    return world, frames


def clone_code(camera: str, clone: int) -> str:
    return f"{camera}-{clone:03d}"


def tagged(jpeg: bytes, clone: int) -> bytes:
    """The same picture with a JPEG comment naming the clone: other bytes, so another scene."""
    comment = f"tianxun bench clone {clone}".encode()
    return jpeg[:2] + b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment + jpeg[2:]


def prepare_database(backend: str, postgres_url: str) -> str:
    if backend == "sqlite":
        path = OUT / "bench_ingest.sqlite"
        remove_sqlite(path)
        url = f"sqlite:///{path}"
    else:
        recreate_postgres(postgres_url, create=True)
        url = postgres_url
    migrate(url)
    return url


def load(world: Path, clones: int, settings: Settings, sessions: sessionmaker[Session]) -> str:
    """Layers, jurisdictions, the cameras' clones, and an ingest key; returns the key."""
    with transaction(sessions) as session:
        load_world(world, session=session, settings=settings)
        for camera in json.loads((world / "cameras" / "registry.json").read_text()):
            for clone in range(clones):
                code = clone_code(camera["camera_id"], clone)
                register_camera(
                    session=session,
                    code=code,
                    lon=camera["lon"],
                    lat=camera["lat"],
                    height_m=camera.get("height_m"),
                )
                for preset in camera["presets"]:
                    register_preset(
                        session=session,
                        camera_code=code,
                        preset=str(preset["preset"]),
                        image_size=tuple(preset["image_size"]),
                        control_points=preset["control_points"],
                    )
        return create_client(
            "bench-gateway", session=session, role=Role.ingest, jurisdiction_codes=[]
        ).key


def start_processes(
    url: str, data_dir: Path, port: int, workers: int
) -> list[subprocess.Popen[bytes]]:
    metrics_dir = data_dir / "prometheus"  # /metrics sums the workers' counters from here
    metrics_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "TIANXUN_DATABASE_URL": url,
        "TIANXUN_DATA_DIR": str(data_dir),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "PYTHONUNBUFFERED": "1",
    }
    logs = OUT / "bench_ingest-logs"
    logs.mkdir(parents=True, exist_ok=True)
    commands = [[str(TIANXUN), "serve", "--port", str(port)]]
    commands += [[str(TIANXUN), "worker"] for _ in range(workers)]
    started = []
    for index, argv in enumerate(commands):
        log = (logs / f"{argv[1]}-{index}.log").open("wb")
        started.append(subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=log))
    return started


def cpu_seconds(process: subprocess.Popen[bytes]) -> float:
    """User + system CPU time the process has used so far (Linux /proc)."""
    return _pid_cpu_seconds(process.pid) or 0.0


def _pid_cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None  # exited meanwhile
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds() -> dict[int, float]:
    """CPU seconds used so far by each PostgreSQL server process on this machine, by pid."""
    used = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _comm(entry) == "postgres":
            seconds = _pid_cpu_seconds(int(entry.name))
            if seconds is not None:
                used[int(entry.name)] = seconds
    return used


def _comm(entry: Path) -> str:
    try:
        return (entry / "comm").read_text().strip()
    except OSError:
        return ""


def database_cpu_seconds(before: dict[int, float], *, own: set[int]) -> tuple[float, float]:
    """What the server processes used since `before` (processes started since count whole):
    for the service, and for the benchmark's own connections (`own`)."""
    used = {pid: seconds - before.get(pid, 0.0) for pid, seconds in postgres_cpu_seconds().items()}
    mine = sum(seconds for pid, seconds in used.items() if pid in own)
    return sum(used.values()) - mine, mine


def wait_settled(
    processes: list[subprocess.Popen[bytes]], *, window: float = 1.0, timeout: float = 120.0
) -> dict[str, float]:
    """Wait until every process has finished starting (imports, connections) and idles.

    A process has settled when it used under 5 % of a core over the last `window` seconds;
    idle workers only poll the queue. Returns the CPU seconds each kind has used by then, so
    that the load's own CPU is what is left at the end: a long-running service does not pay
    its start-up per snapshot.
    """
    deadline = time.monotonic() + timeout
    before = [cpu_seconds(process) for process in processes]
    while True:
        time.sleep(window)
        now = [cpu_seconds(process) for process in processes]
        if all(b - a < 0.05 * window for a, b in zip(before, now, strict=True)):
            return {"api": now[0], "workers": sum(now[1:])}
        if time.monotonic() > deadline:
            raise TimeoutError(f"the API and workers did not settle within {timeout:.0f} s")
        before = now


def stop_processes(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()


# --- load and observation -------------------------------------------------------------------


def send(frames: list[Frame], *, api: str, key: str, rate: float, clients: int, load: Load) -> None:
    """Send every frame at its scheduled time (open loop), from `clients` threads."""
    plan: queue.Queue[tuple[float, Frame] | None] = queue.Queue()
    start = time.monotonic() + 1.0
    for index, frame in enumerate(frames):
        plan.put((start + index / rate, frame))
    for _ in range(clients):
        plan.put(None)
    threads = [
        threading.Thread(target=_client, args=(plan, api, key, load)) for _ in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    load.send_seconds = time.monotonic() - start


def _client(plan: queue.Queue[tuple[float, Frame] | None], api: str, key: str, load: Load) -> None:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "image/jpeg"}
    # The standard library's client: it shares the two cores with the service, and httpx
    # spent about 2 ms of CPU an upload where this spends a fraction of that.
    address = urlsplit(api)
    connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=60)
    try:
        while (item := plan.get()) is not None:
            due, frame = item
            time.sleep(max(0.0, due - time.monotonic()))
            with load.lock:
                load.behind_seconds = max(load.behind_seconds, time.monotonic() - due)
            _upload(connection, headers, frame, load)
    finally:
        connection.close()


def _upload(
    connection: http.client.HTTPConnection, headers: dict[str, str], frame: Frame, load: Load
) -> None:
    query = urlencode({"captured_at": frame.captured_at.isoformat()})
    path = f"/v1/cameras/{frame.camera}/presets/{frame.preset}/snapshots?{query}"
    while True:
        status, retry_after, body = _post(connection, path, frame.data, headers)
        with load.lock:
            load.statuses[status] += 1
        if status != 503:
            break
        time.sleep(float(retry_after or "1"))
    if status in (200, 202):
        accepted = time.monotonic()
        with load.lock:
            load.accepted[int(json.loads(body)["id"])] = accepted


def _post(
    connection: http.client.HTTPConnection, path: str, data: bytes, headers: dict[str, str]
) -> tuple[int, str | None, bytes]:
    """(status, Retry-After, body); sent again once if the server had closed the kept-alive
    connection (the same bytes make the same scene, so a repeat cannot add one)."""
    try:
        return _exchange(connection, path, data, headers)
    except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
        connection.close()  # the next request opens a new connection
        return _exchange(connection, path, data, headers)


def _exchange(
    connection: http.client.HTTPConnection, path: str, data: bytes, headers: dict[str, str]
) -> tuple[int, str | None, bytes]:
    connection.request("POST", path, body=data, headers=headers)
    response = connection.getresponse()
    return response.status, response.getheader("Retry-After"), response.read()


def observe(
    sessions: sessionmaker[Session], load: Load, stop: threading.Event, poll: float
) -> None:
    """Note when each accepted scene is analysed and when its detections join a case."""
    next_depth = 0.0
    while not stop.is_set():
        with load.lock:
            # Only scenes still waiting: a poll of every scene would grow with the run and
            # take the CPU this benchmark measures the service on.
            waiting = sorted(set(load.accepted) - set(load.analysed))
        with sessions() as session:
            done = [
                scene_id
                for batch in _batches(waiting, 500)
                for scene_id in session.scalars(
                    select(Scene.id).where(Scene.id.in_(batch), Scene.status.in_(DONE))
                )
            ]
            cased = session.scalars(
                select(Detection.scene_id).where(Detection.case_id.is_not(None)).distinct()
            )
            now = time.monotonic()
            with load.lock:
                for scene_id in done:
                    load.analysed.setdefault(scene_id, now)
                for scene_id in cased:
                    load.in_case.setdefault(scene_id, now)
            if session.get_bind().dialect.name == "postgresql":
                load.own_backends.add(int(session.scalar(text("SELECT pg_backend_pid()"))))
            if now >= next_depth:
                load.depth.append((now, *queue_depth(session)))
                next_depth = now + 1.0
        stop.wait(poll)


def _batches(ids: list[int], size: int) -> list[list[int]]:
    return [ids[start : start + size] for start in range(0, len(ids), size)]


def queue_depth(session: Session) -> tuple[int, int]:
    counts = dict(
        session.execute(
            select(IngestJob.status, func.count())
            .where(IngestJob.status.in_([JobStatus.queued, JobStatus.running]))
            .group_by(IngestJob.status)
        ).all()
    )
    return int(counts.get(JobStatus.queued, 0)), int(counts.get(JobStatus.running, 0))


# --- one run and its report -----------------------------------------------------------------


@dataclass
class Run:
    backend: str
    rate: float
    uploads: int
    load: Load
    drained_seconds: float | None
    drain_limit: float
    retries: Counter[str]
    failures: Counter[str]
    cases: int


def run_once(
    backend: str,
    postgres_url: str,
    *,
    rate: float,
    seconds: float,
    workers: int,
    clients: int,
    poll: float,
    drain: float,
) -> Run:
    url = prepare_database(backend, postgres_url)
    data_dir = OUT / f"bench_ingest-data-{backend}"
    shutil.rmtree(data_dir, ignore_errors=True)
    settings = Settings(database_url=url, data_dir=data_dir, _env_file=None)  # type: ignore[call-arg]
    engine = create_db_engine(url)
    sessions = machine_session_factory(engine)
    clones = max(1, math.ceil(rate * seconds / 192))
    world, frames = world_frames(clones)
    frames = frames[: int(rate * seconds)]
    key = load(world, clones, settings, sessions)
    port = free_port()
    processes = start_processes(url, data_dir, port, workers)
    result = Load()
    stop = threading.Event()
    observer = threading.Thread(target=observe, args=(sessions, result, stop, poll))
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", seconds=120)
        started = wait_settled(processes)
        own_cpu = time.process_time()
        server_cpu = postgres_cpu_seconds() if backend == "postgresql" else {}
        observer.start()
        send(
            frames, api=f"http://127.0.0.1:{port}", key=key, rate=rate, clients=clients, load=result
        )
        drained = wait_drained(result, drain)
        database, poller = (
            database_cpu_seconds(server_cpu, own=result.own_backends)
            if backend == "postgresql"
            else (0.0, 0.0)
        )
        result.cpu_seconds = {
            "api": cpu_seconds(processes[0]) - started["api"],
            "workers": sum(cpu_seconds(process) for process in processes[1:]) - started["workers"],
            "benchmark": time.process_time() - own_cpu + poller,
            "database": database,
        }
        result.state_reads = state_reads(f"http://127.0.0.1:{port}")
        result.peak_rss_mb = {
            "api": peak_rss_mb(processes[0]),
            "worker": max(peak_rss_mb(process) for process in processes[1:]),
        }
    finally:
        stop.set()
        if observer.is_alive():
            observer.join()
        stop_processes(processes)
    retries, failures, cases = outcomes(sessions)
    engine.dispose()
    return Run(backend, rate, len(frames), result, drained, drain, retries, failures, cases)


def peak_rss_mb(process: subprocess.Popen[bytes]) -> float:
    """The process's peak resident memory so far (VmHWM), MiB."""
    for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def state_reads(api: str) -> dict[str, int]:
    """The workers' `tianxun_camera_state_reads_total` counters, by source."""
    body = httpx.get(f"{api}/metrics", timeout=30).text
    found = re.findall(r'^tianxun_camera_state_reads_total\{source="(\w+)"\} (\S+)$', body, re.M)
    return {source: int(float(value)) for source, value in found}


def wait_drained(load: Load, seconds: float) -> float | None:
    """Seconds from the last upload until every accepted scene was analysed (None: not in time)."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        with load.lock:
            if set(load.accepted) <= set(load.analysed):
                return time.monotonic() - started
        time.sleep(0.2)
    return None


def outcomes(sessions: sessionmaker[Session]) -> tuple[Counter[str], Counter[str], int]:
    """Why jobs were retried, why scenes failed (first words), and how many cases opened."""
    with sessions() as session:
        retried = session.execute(
            select(IngestJob.task, IngestJob.last_error).where(IngestJob.attempts > 1)
        ).all()
        failed = session.scalars(
            select(Scene.failure_reason).where(Scene.status == SceneStatus.failed)
        ).all()
        cases = session.scalar(select(func.count()).select_from(Case)) or 0
    retries = Counter(f"{task}: {(error or '').split(':')[0]}" for task, error in retried)
    failures = Counter(" ".join((reason or "").split()[:6]) for reason in failed)
    return retries, failures, cases


def latencies(accepted: dict[int, float], seen: dict[int, float]) -> dict[str, float]:
    """Percentiles over every accepted scene; one never seen counts as infinitely late."""
    values = np.array([seen[s] - accepted[s] if s in seen else np.inf for s in accepted])
    if values.size == 0:
        return {"n": 0}
    # "higher": an observed value, never an interpolation (which an infinity turns into NaN).
    return {
        "n": int(values.size),
        "p50": float(np.percentile(values, 50, method="higher")),
        "p95": float(np.percentile(values, 95, method="higher")),
        "max": float(values.max()),
    }


def case_latencies(load: Load) -> dict[str, float]:
    """The same for the scenes whose detections joined a case (only those make one visible)."""
    cased = {s: load.accepted[s] for s in load.in_case if s in load.accepted}
    return latencies(cased, load.in_case)


def report(runs: list[Run], *, command: str, environment: str, workers: int, poll: float) -> str:
    lines = [
        "## Ingest latency: snapshot upload accepted → analysed → case visible, under load",
        "",
        f"- Command: `{command}`",
        f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- Machine: {environment}; load average {os.getloadavg()[0]:.2f} at the end",
        f"- Setup: `tianxun serve` (1 process) and {workers} × `tianxun worker` (default "
        "settings), separate processes, fresh database per run; 1920×1080 JPEG snapshots of "
        f"simulated tower cameras (world seed {WORLD.seed}, 192 distinct frames, each camera "
        "registered as several clones); open-loop uploads in capture order; the database "
        f"polled every {poll} s.",
        "",
        "| backend | target /s | sent | accepted /s | 503s | analysed | queue empty after "
        "last upload | accepted → analysed p50 / p95 / max s | accepted → case visible: "
        "snapshots, p50 / p95 / max s | cases | CPU ms per snapshot: API, workers, database "
        "server, benchmark |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        load = run.load
        analysed = latencies(load.accepted, load.analysed)
        in_case = case_latencies(load)
        seen = sum(1 for s in load.accepted if s in load.analysed)
        drained = (
            f"{run.drained_seconds:.0f} s"
            if run.drained_seconds is not None
            else (f"not within {run.drain_limit:.0f} s")
        )
        cpu = ", ".join(
            f"{1000 * load.cpu_seconds.get(p, 0) / max(1, len(load.accepted)):.1f}"
            for p in ("api", "workers", "database", "benchmark")
        )
        lines.append(
            f"| {run.backend} | {run.rate:g} | {run.uploads} | "
            f"{len(load.accepted) / load.send_seconds:.1f} | {load.statuses.get(503, 0)} | "
            f"{seen}/{len(load.accepted)} | {drained} | {_triple(analysed)} | "
            f"{in_case['n']}, {_triple(in_case)} | {run.cases} | {cpu} |"
        )
    lines += [
        "",
        "Latencies count a scene not analysed by the end as infinitely late (shown as ∞). The "
        "load starts once the API answers /readyz and every process has settled (finished "
        "importing and connecting, idling). CPU per snapshot: user + system time of the "
        "processes from then to the end ÷ accepted snapshots; 2 dedicated cores would sustain "
        "about 2000 ÷ (API + workers + database server) snapshots/s. The database server is "
        "PostgreSQL's processes (all of this machine's but those serving the benchmark's "
        "poller; 0 for SQLite, which runs inside the others); the benchmark's own CPU (upload "
        "clients, poller and its server process) is spent on the same two cores.",
        "",
    ]
    for run in runs:
        lines.append(
            f"Queue depth (queued + running jobs, every 10 s), {run.backend} at "
            f"{run.rate:g}/s: {_depth_line(run.load)}."
        )
        if run.retries:
            lines.append(f"Jobs retried, by last error: {dict(run.retries.most_common(5))}.")
        if run.failures:
            lines.append(f"Scenes failed, by reason: {dict(run.failures.most_common(5))}.")
        reads = run.load.state_reads
        jobs = sum(reads.values())
        lines.append(
            f"Camera jobs by where the preset's detector state came from: {reads.get('memory', 0)}"
            f" from the worker's memory, {reads.get('database', 0)} read from the database, "
            f"{reads.get('none', 0)} first snapshots of a preset; "
            f"{len(run.load.analysed) / jobs if jobs else 0:.1f} snapshots a job on average "
            "(scenes done ÷ those jobs). Peak resident memory: API "
            f"{run.load.peak_rss_mb.get('api', 0):.0f} MiB, largest worker "
            f"{run.load.peak_rss_mb.get('worker', 0):.0f} MiB."
        )
        lines.append("")
    return "\n".join(lines)


def _triple(stats: dict[str, float]) -> str:
    if not stats.get("n"):
        return "–"
    return " / ".join(
        "∞" if math.isinf(stats[key]) else f"{stats[key]:.2f}" for key in ("p50", "p95", "max")
    )


def _depth_line(load: Load) -> str:
    if not load.depth:
        return "not sampled"
    start = load.depth[0][0]
    samples, next_at = [], 0.0
    for at, queued, running in load.depth:
        if at - start >= next_at:
            samples.append(f"{at - start:.0f} s: {queued + running}")
            next_at += 10.0
    return ", ".join(samples)


def main(
    backend: Annotated[str, typer.Option(help="sqlite, postgresql or both.")] = "sqlite",
    rate: Annotated[list[float], typer.Option(help="Snapshots per second (repeatable).")] = [50.0],  # noqa: B006
    seconds: Annotated[float, typer.Option(help="How long each load lasts.")] = 60.0,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 2,
    clients: Annotated[int, typer.Option(help="Uploading client threads.")] = 8,
    poll: Annotated[float, typer.Option(help="Database poll interval, seconds.")] = 0.1,
    drain: Annotated[float, typer.Option(help="Longest wait for the queue to empty.")] = 600.0,
    postgres_url: Annotated[str, typer.Option(help="Dropped and recreated.")] = (
        "postgresql+psycopg://postgres@127.0.0.1:5432/tianxun_bench_ingest"
    ),
    append_results: Annotated[bool, typer.Option(help="Append to RESULTS.md.")] = False,
    keep: Annotated[bool, typer.Option(help="Keep the databases afterwards.")] = False,
) -> None:
    """Measure upload → case latency at a steady snapshot rate; see the module docstring."""
    backends = ["sqlite", "postgresql"] if backend == "both" else [backend]
    if "postgresql" in backends:
        check_disposable(postgres_url)
    OUT.mkdir(parents=True, exist_ok=True)
    environment = machine(postgres_url if "postgresql" in backends else None)
    runs = []
    for name in backends:
        for each in rate:
            typer.echo(f"{name}: {each:g} snapshots/s for {seconds:g} s ...")
            runs.append(
                run_once(
                    name,
                    postgres_url,
                    rate=each,
                    seconds=seconds,
                    workers=workers,
                    clients=clients,
                    poll=poll,
                    drain=drain,
                )
            )
            typer.echo(
                report(
                    runs[-1:],
                    command="(partial)",
                    environment=environment,
                    workers=workers,
                    poll=poll,
                )
            )
    if not keep:
        remove_sqlite(OUT / "bench_ingest.sqlite")
        for name in backends:
            shutil.rmtree(OUT / f"bench_ingest-data-{name}", ignore_errors=True)
        if "postgresql" in backends:
            recreate_postgres(postgres_url, create=False)
    command = ".venv/bin/python -m benchmarks.bench_ingest " + " ".join(sys.argv[1:])
    text = report(runs, command=command, environment=environment, workers=workers, poll=poll)
    typer.echo(text)
    if append_results:
        with RESULTS.open("a", encoding="utf-8") as results:
            results.write("\n" + text + "\n")


if __name__ == "__main__":
    typer.run(main)
