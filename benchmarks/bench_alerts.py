"""Alert latency: event committed → received by an SSE client, and → first webhook attempt.

Run from the repository root:

    .venv/bin/python -m benchmarks.bench_alerts --backend sqlite --events 200
    .venv/bin/python -m benchmarks.bench_alerts --backend postgresql \
        --postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/tianxun_alerts_bench

The API runs as `uvicorn --factory service.main:create_app --workers 2` and the delivery loop
as `tianxun webhooks deliver`, both as separate processes with default poll intervals; this
process commits outbox events one at a time at `--rate` per second, reads the SSE stream and
runs a webhook receiver on 127.0.0.1. Targets: SSE p95 ≤ 1 s, first webhook attempt p95 ≤ 2 s.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Annotated, Any

import httpx
import numpy as np
import typer
from alembic import command

from models import AlertEvent, ApiClient
from models.client import Role
from service.alerts.feed import EventFilter
from service.alerts.ssrf import parse_networks
from service.alerts.webhooks import create_subscription
from service.auth import principal_for
from service.clients import create_client
from service.db import (
    SQLITE_IMMEDIATE,
    alembic_config,
    create_db_engine,
    machine_session_factory,
    transaction,
)

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Receiver:
    """Records when each event id was first posted."""

    def __init__(self) -> None:
        self.first_seen: dict[int, float] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                arrived = time.time()
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                receiver.first_seen.setdefault(json.loads(body)["data"]["id"], arrived)
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"


def read_stream(url: str, key: str, received: dict[int, float], ready: threading.Event) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    with (
        httpx.Client(timeout=httpx.Timeout(60.0)) as client,
        client.stream("GET", url, headers=headers) as response,
    ):
        for line in response.iter_lines():
            if line.startswith(": tianxun"):
                ready.set()
            elif line.startswith("id:"):
                received[int(line[3:].strip())] = time.time()


def wait_http(url: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def commit_event(sessions: Any) -> int:
    with transaction(sessions) as session:
        event = AlertEvent(event_type="case_created", payload={"bench": True})
        session.add(event)
        session.flush()
        return event.id


def wait_for(condition: Any, *, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


def percentiles(latencies: list[float]) -> dict[str, float]:
    values = np.array(latencies) * 1000.0
    return {
        "n": float(len(values)),
        "p50": float(np.percentile(values, 50)),
        "p95": float(np.percentile(values, 95)),
        "max": float(values.max()),
    }


def run(
    backend: Annotated[str, typer.Option(help="sqlite or postgresql")] = "sqlite",
    postgres_url: Annotated[str, typer.Option(help="An empty PostGIS database.")] = "",
    events: Annotated[int, typer.Option(min=10)] = 200,
    rate: Annotated[float, typer.Option(help="Events committed per second.")] = 20.0,
) -> None:
    """Measure and print one Markdown table row per latency."""
    workdir = Path(tempfile.mkdtemp(prefix="bench_alerts_"))
    url = postgres_url if backend == "postgresql" else f"sqlite:///{workdir / 'alerts.db'}"
    command.upgrade(alembic_config(url), "head")
    engine = create_db_engine(url)
    sessions = machine_session_factory(engine.execution_options(**SQLITE_IMMEDIATE))
    receiver = Receiver()
    with transaction(sessions) as session:
        issued = create_client(f"bench-{os.getpid()}", session=session, role=Role.admin,
                               jurisdiction_codes=[])  # fmt: skip
        principal = principal_for(session.get_one(ApiClient, issued.client_id), session=session)
        create_subscription(principal, receiver.url, EventFilter(), session=session,
                            allowed_networks=parse_networks(["127.0.0.0/8"]))  # fmt: skip
    env = os.environ | {
        "TIANXUN_DATABASE_URL": url,
        "TIANXUN_WEBHOOK_ALLOWED_NETWORKS": '["127.0.0.0/8"]',
        "TIANXUN_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
    }
    port = free_port()
    api = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "service.main:create_app",
         "--port", str(port), "--workers", "2", "--log-level", "warning"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    deliverer = subprocess.Popen(
        [str(ROOT / ".venv/bin/tianxun"), "webhooks", "deliver"], cwd=ROOT, env=env
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/readyz")
        received: dict[int, float] = {}
        ready = threading.Event()
        threading.Thread(
            target=read_stream, args=(f"{base}/v1/alerts/stream", issued.key, received, ready),
            daemon=True,
        ).start()  # fmt: skip
        if not ready.wait(30):
            raise RuntimeError("the SSE stream did not open")
        # Warm-up: both processes are up and have polled once before anything is timed.
        warm_up = commit_event(sessions)
        wait_for(lambda: warm_up in received and warm_up in receiver.first_seen, seconds=60)
        committed: dict[int, float] = {}
        for _ in range(events):
            event_id = commit_event(sessions)
            committed[event_id] = time.time()
            time.sleep(1.0 / rate)
        wait_for(lambda: set(committed) <= set(received) & set(receiver.first_seen), seconds=30)
    finally:
        api.terminate()
        deliverer.terminate()
        api.wait(20)
        deliverer.wait(20)
        engine.dispose()
        shutil.rmtree(workdir, ignore_errors=True)
    sse = percentiles([received[i] - t for i, t in committed.items() if i in received])
    hook = percentiles(
        [receiver.first_seen[i] - t for i, t in committed.items() if i in receiver.first_seen]
    )
    load = os.getloadavg()[0]
    typer.echo(f"# {backend}, {events} events at {rate}/s, {os.cpu_count()} CPUs, "
               f"Python {platform.python_version()}, load {load:.2f}")  # fmt: skip
    typer.echo("| backend | path | received | p50 ms | p95 ms | max ms |")
    for name, stats in (("commit → SSE client", sse), ("commit → first webhook attempt", hook)):
        typer.echo(f"| {backend} | {name} | {int(stats['n'])}/{events} | {stats['p50']:.0f} | "
                   f"{stats['p95']:.0f} | {stats['max']:.0f} |")  # fmt: skip


if __name__ == "__main__":
    typer.run(run)
