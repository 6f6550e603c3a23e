"""`tianxun demo`: the main job on the embedded default, from nothing to cases on the map.

It simulates a farmland world (once), migrates the database, loads the world's legal layers,
jurisdictions and cameras, starts the API and the ingest workers (which also deliver
webhooks), uploads every tile and snapshot over HTTP in capture order, waits until the workers
have analysed them, and leaves the map running with a key to sign in with.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import httpx
import typer
from alembic import command
from rich.console import Console
from rich.progress import Progress
from sqlalchemy import func, select

from models.case import Case
from models.client import Role
from models.scene import IngestJob, JobStatus
from scripts.layers import run_in_transaction
from scripts.load_world import load_world
from service.clients import create_client, get_client, rotate_key
from service.db import alembic_config, create_db_engine, machine_session_factory
from service.settings import Settings
from simulator import WorldParams, generate_world
from simulator.products import uploads

console = Console()
TIANXUN = Path(sys.executable).with_name("tianxun")


def register(app: typer.Typer) -> None:
    app.command()(demo)


def demo(
    seed: Annotated[int, typer.Option(help="Seed of the simulated world.")] = 1,
    area_km2: Annotated[float, typer.Option(help="Area of the world.")] = 2.0,
    epochs: Annotated[int, typer.Option(help="Remote-sensing dates through the year.")] = 6,
    cameras: Annotated[int, typer.Option(help="Tower cameras.")] = 3,
    port: Annotated[int, typer.Option(help="Port of the API and the map.")] = 8000,
    workers: Annotated[int, typer.Option(help="Ingest worker processes.")] = 2,
    exit_when_done: Annotated[
        bool, typer.Option("--exit-when-done", help="Stop once the cases are on the map.")
    ] = False,
) -> None:
    """Simulate a world, serve the API and workers, ingest everything, show cases on the map."""
    settings = Settings()
    world = settings.data_dir / f"demo-world-{seed}"
    if not (world / "world.json").exists():
        console.print(f"simulating a {area_km2} km² world with {cameras} cameras into {world} ...")
        generate_world(
            WorldParams(seed=seed, area_km2=area_km2, epochs=epochs, cameras=cameras), world
        )
    command.upgrade(alembic_config(settings.database_url), "head")
    console.print(
        run_in_transaction(settings, lambda s: load_world(world, session=s, settings=settings))
    )
    admin_key = _key(settings, "demo-admin", Role.admin)
    ingest_key = _key(settings, "demo-gateway", Role.ingest)
    url = f"http://127.0.0.1:{port}"
    with _processes(settings, port=port, workers=workers):
        _wait_ready(url)
        _ingest(world, settings.data_dir / "demo-products", url=url, key=ingest_key)
        _wait_analysed(settings)
        console.print(
            f"\n[bold]{_count_cases(settings)} cases[/bold] on the map at [bold]{url}/[/bold]"
            f" — sign in with the admin key [bold]{admin_key}[/bold]"
        )
        if exit_when_done:
            return
        console.print("press Ctrl-C to stop")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


def _key(settings: Settings, name: str, role: Role) -> str:
    """A fresh key for the demo's client (rotated when the client exists from an earlier run)."""

    def issue(session):  # type: ignore[no-untyped-def]
        if get_client(name, session=session) is None:
            return create_client(name, session=session, role=role, jurisdiction_codes=[]).key
        return rotate_key(name, session=session).key

    key: str = run_in_transaction(settings, issue)
    return key


@contextmanager
def _processes(settings: Settings, *, port: int, workers: int) -> Iterator[None]:
    env = {
        **os.environ,
        "TIANXUN_DATABASE_URL": settings.database_url,
        "TIANXUN_DATA_DIR": str(settings.data_dir.resolve()),
    }
    commands = [[str(TIANXUN), "serve", "--port", str(port)]]
    commands += [[str(TIANXUN), "worker"] for _ in range(workers)]
    logs = settings.data_dir / "demo-logs"
    logs.mkdir(parents=True, exist_ok=True)
    started = []
    try:
        for index, argv in enumerate(commands):
            log = (logs / f"{argv[1]}-{index}.log").open("wb")
            started.append(subprocess.Popen(argv, env=env, stdout=log, stderr=log))
        console.print(f"API and {workers} workers started; logs in {logs}")
        yield
    finally:
        for process in started:
            process.terminate()
        for process in started:
            process.wait(timeout=30)


def _wait_ready(url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)  # the server is another process still starting: nothing to await
    raise SystemExit(f"the API did not become ready at {url} within {timeout:.0f} s")


def _ingest(world: Path, products: Path, *, url: str, key: str) -> None:
    files = uploads(world, products)
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client, Progress() as bar:
        task = bar.add_task("uploading tiles and snapshots", total=len(files))
        for upload in files:
            response = client.post(
                upload.url,
                params=upload.query,
                content=upload.path.read_bytes(),
                headers={"Content-Type": upload.media_type},
            )
            if response.status_code not in (200, 202):
                console.print(f"[red]{upload.path.name}: {response.status_code} {response.text}")
            bar.advance(task)


def _wait_analysed(settings: Settings, timeout: float = 1800.0) -> None:
    engine = create_db_engine(settings.database_url)
    factory = machine_session_factory(engine)
    busy = select(func.count()).where(IngestJob.status.in_([JobStatus.queued, JobStatus.running]))
    deadline = time.monotonic() + timeout
    try:
        with Progress() as bar:
            task = bar.add_task("analysing", total=None)
            while time.monotonic() < deadline:
                with factory() as session:
                    left = session.scalar(busy) or 0
                bar.update(task, description=f"analysing: {left} jobs left")
                if left == 0:
                    return
                time.sleep(1.0)  # workers are other processes: poll the queue
    finally:
        engine.dispose()


def _count_cases(settings: Settings) -> int:
    engine = create_db_engine(settings.database_url)
    try:
        with machine_session_factory(engine)() as session:
            return session.scalar(select(func.count()).select_from(Case)) or 0
    finally:
        engine.dispose()
