"""The case API over HTTP with a million cases: filtered bbox listing and transitions per second.

Run from the repository root (see benchmarks/README.md):

    .venv/bin/python -m benchmarks.bench_api --backend both --rows 1000000 --append-results

The API runs under uvicorn in its own process (`--workers` of them), as in production; the
client is this process. Listing: one client asks `GET /v1/cases?bbox=...&status=...` for
random boxes, one request at a time. Transitions: `--clients` concurrent clients each move
their own distinct cases new → dispatched with `If-Match`, as fast as the API answers.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import aiohttp
import httpx
import numpy as np
import typer
from shapely.geometry import MultiPolygon, box
from sqlalchemy import Engine, func, insert, inspect, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from benchmarks import bench_db
from benchmarks.bench_db import Backend
from models import Case, Jurisdiction
from models.base import table_of
from models.case import CaseStatus
from models.client import Role
from models.jurisdiction import JurisdictionLevel
from service.clients import create_client
from service.db import create_db_engine, create_session_factory, transaction
from service.spatial import BBox

log = logging.getLogger("benchmarks.bench_api")

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_SQLITE_PATH = BENCH_DIR / "out" / "bench_api.sqlite"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/tianxun_bench_api"
# Half the cases are new (the ones transitions move); the rest spread over the workflow.
STATUS_CYCLE = (
    *[CaseStatus.new] * 5,
    CaseStatus.dispatched,
    CaseStatus.verifying,
    CaseStatus.confirmed,
    CaseStatus.dismissed,
    CaseStatus.closed,
)
LISTED_STATUSES = ("new", "verifying")  # the filter of the listing: 60 % of the cases


class Caller(enum.StrEnum):
    """Who moves the cases: an administrator, or a monitoring centre scoped to one district
    (the transitioned cases are put in it first), whose claims carry its jurisdictions."""

    admin = "admin"
    monitor = "monitor"


class Generator(enum.StrEnum):
    """The HTTP client library that drives the transitions."""

    aiohttp = "aiohttp"
    httpx = "httpx"


@dataclass(frozen=True)
class Options:
    rows: int
    queries: int
    warmup: int
    target_count: float
    transitions: int
    clients: int
    workers: int
    batch: int
    seed: int
    generator: Generator
    caller: Caller = Caller.admin


@dataclass(frozen=True)
class Listing:
    counts: list[int]
    ms: list[float]
    server_cpu_ms: float  # per timed request, uvicorn processes only


@dataclass(frozen=True)
class Transitions:
    ok: int
    failed: dict[int, int]
    seconds: float
    ms: list[float]
    server_cpu_ms: float  # per successful transition, uvicorn processes only
    database_cpu_ms: float | None  # per successful transition, this database's backends
    client_cpu_ms: float  # per successful transition, the load generator (this process)

    @property
    def per_second(self) -> float:
        return self.ok / self.seconds


@dataclass(frozen=True)
class Run:
    backend: str
    load_s: float | None  # None: an existing database was reused
    listing: Listing
    transitions: Transitions


# --- the database ------------------------------------------------------------------------------


def fill(engine: Engine, options: Options) -> float:
    """bench_db's polygons, with statuses cycling through STATUS_CYCLE; seconds taken."""
    rng = np.random.default_rng(options.seed)
    started = time.perf_counter()
    for start in range(0, options.rows, options.batch):
        count = min(options.batch, options.rows - start)
        params = bench_db.case_rows(start, *bench_db.random_polygons(rng, count))
        for i, row in enumerate(params, start):
            row["status"] = STATUS_CYCLE[i % len(STATUS_CYCLE)]
        with engine.begin() as connection:
            connection.execute(insert(Case), params)
        if (start // options.batch + 1) % 20 == 0:
            log.info("%s: %d rows in %.0f s", engine.dialect.name, start + count, _since(started))
    return _since(started)


def loaded_rows(url: str) -> int:
    """Cases already in the database at `url`; 0 when it or its schema does not exist."""
    if url.startswith("sqlite") and not Path(make_url(url).database or "").exists():
        return 0
    engine = create_db_engine(url)
    try:
        with engine.connect() as connection:
            if not inspect(connection).has_table("case"):
                return 0
            return int(connection.execute(select(func.count()).select_from(Case)).scalar_one())
    except OperationalError:  # no such PostgreSQL database yet: load afresh
        return 0
    finally:
        engine.dispose()


def vacuum_written_tables(url: str) -> None:
    """VACUUM what earlier runs' transitions wrote, as autovacuum would have between runs.

    Each run leaves thousands of dead case rows behind; on a cluster with autovacuum off they
    pile up run after run and slow the next runs' updates."""
    engine = create_db_engine(url)
    try:
        if engine.dialect.name != "postgresql":
            return
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            for table in ('"case"', "case_event", "alert_event"):
                connection.exec_driver_sql(f"VACUUM (ANALYZE) {table}")
    finally:
        engine.dispose()


def prepare(
    which: Backend, url: str, sqlite_path: Path, options: Options, reuse: bool
) -> float | None:
    """A database holding `options.rows` cases; load seconds, or None when one was reused."""
    if reuse and loaded_rows(url) == options.rows:
        log.info("%s: reusing %d cases at %s", which, options.rows, url)
        vacuum_written_tables(url)
        return None
    if which is Backend.sqlite:
        sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        bench_db.remove_sqlite(sqlite_path)
    else:
        bench_db.recreate_postgres(url, create=True)
    bench_db.migrate(url)
    engine = create_db_engine(url)
    try:
        load_s = fill(engine, options)
        bench_db.analyze(engine)
        return load_s
    finally:
        engine.dispose()


def admin_key(url: str) -> str:
    engine = create_db_engine(url)
    try:
        with transaction(create_session_factory(engine)) as session:
            name = f"bench-api-{datetime.now(UTC):%Y%m%d%H%M%S%f}"
            return create_client(name, session=session, role=Role.admin, jurisdiction_codes=[]).key
    finally:
        engine.dispose()


def monitor_key(url: str, case_ids: list[int]) -> str:
    """The key of a monitoring centre for a new district that `case_ids` are moved into."""
    engine = create_db_engine(url)
    stamp = f"{datetime.now(UTC):%Y%m%d%H%M%S%f}"
    try:
        with transaction(create_session_factory(engine)) as session:
            district = Jurisdiction(
                code=f"bench-district-{stamp}", name="bench district",
                level=JurisdictionLevel.district, geom=MultiPolygon([box(-180, -90, 180, 90)]),
                area_m2=1.0,
            )  # fmt: skip
            session.add(district)
            session.flush()
            cases = table_of(Case)
            session.execute(
                update(cases).where(cases.c.id.in_(case_ids)).values(jurisdiction_id=district.id)
            )
            issued = create_client(
                f"bench-api-monitor-{stamp}", session=session, role=Role.monitor,
                jurisdiction_codes=[district.code],
            )  # fmt: skip
            return issued.key
    finally:
        engine.dispose()


def new_case_ids(url: str, count: int) -> list[int]:
    """Distinct cases still `new` (a reused database has moved earlier runs' cases on)."""
    engine = create_db_engine(url)
    try:
        with engine.connect() as connection:
            statement = select(Case.id).where(Case.status == CaseStatus.new).limit(count)
            return list(connection.scalars(statement))
    finally:
        engine.dispose()


def box_side_m(url: str, options: Options) -> float:
    engine = create_db_engine(url)
    try:
        return bench_db.query_side_m(engine, bench_db_options(options))
    finally:
        engine.dispose()


def bench_db_options(options: Options) -> bench_db.Options:
    return bench_db.Options(
        options.rows, options.queries, 0, options.warmup, options.target_count, options.batch,
        options.seed,
    )  # fmt: skip


# --- the server ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    base_url: str
    session_id: int  # uvicorn and its workers share it (a session of their own)

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by uvicorn and its workers, from /proc."""
        ticks = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:  # the process ended meanwhile
                continue
            if int(fields[3]) == self.session_id:  # fields after the name: state, ppid, pgrp, sid
                ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")


def database_cpu_seconds(url: str) -> float | None:
    """CPU time (user + system) used so far by the PostgreSQL backends serving `url`'s database.

    Backends are found by their process title (`postgres: [CLUSTER:] USER DATABASE ...`), so
    the server must run on this machine; None for SQLite, which runs inside the API. Shared
    processes (WAL writer, checkpointer) and backends that already ended are not counted.
    """
    if url.startswith("sqlite"):
        return None
    database = make_url(url).database
    ticks = 0
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            title = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace").split()
            if title[:1] != ["postgres:"]:
                continue
            if title[1].endswith(":"):  # the cluster's name, e.g. "15/main:"
                del title[1]
            if title[2] != database:
                continue
            fields = (cmdline.parent / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):  # the process ended meanwhile
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


@contextmanager
def api_server(url: str, workers: int) -> Iterator[Server]:
    """uvicorn with `workers` processes on a free loopback port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data_dir = tempfile.mkdtemp(prefix="bench_api_")
    env = os.environ | {
        "TIANXUN_DATABASE_URL": url,
        "TIANXUN_DATA_DIR": data_dir,
        "TIANXUN_LOG_LEVEL": "WARNING",
    }
    command = [
        sys.executable, "-m", "uvicorn", "--factory", "service.main:create_app",
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
        "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(base_url, server)
        yield Server(base_url, server.pid)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def wait_until_ready(base_url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"uvicorn exited with {server.returncode}")
        try:
            if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)  # no event to wait on: the server is another process
    raise RuntimeError("uvicorn did not become ready within 60 s")


# --- the measurements ----------------------------------------------------------------------------


def time_listing(server: Server, key: str, boxes: list[BBox], warmup: int) -> Listing:
    headers = {"Authorization": f"Bearer {key}"}
    counts, ms = [], []
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=30) as client:
        for i, box in enumerate(boxes):
            if i == warmup:
                cpu_before = server.cpu_seconds()
            params: list[tuple[str, Any]] = [
                ("bbox", f"{box.minx},{box.miny},{box.maxx},{box.maxy}"),
                *(("status", s) for s in LISTED_STATUSES),
            ]
            started = time.perf_counter()
            response = client.get("/v1/cases", params=params)
            elapsed = (time.perf_counter() - started) * 1000
            response.raise_for_status()
            if i >= warmup:
                counts.append(len(response.json()["items"]))
                ms.append(elapsed)
    return Listing(counts, ms, (server.cpu_seconds() - cpu_before) * 1000 / len(ms))


async def time_transitions(
    server: Server, key: str, case_ids: list[int], clients: int, url: str, generator: Generator
) -> Transitions:
    """`clients` concurrent clients, each taking the next distinct case from a shared queue."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for case_id in case_ids:
        queue.put_nowait(case_id)
    ms: list[float] = []
    failed: dict[int, int] = {}
    headers = {"Authorization": f"Bearer {key}", "If-Match": '"1"'}
    body = {"to": "dispatched"}

    async def client_loop(post: Post) -> None:
        while not queue.empty():
            case_id = queue.get_nowait()
            started = time.perf_counter()
            status = await post(f"/v1/cases/{case_id}/transitions", body, headers)
            if status == 200:
                ms.append((time.perf_counter() - started) * 1000)
            else:
                failed[status] = failed.get(status, 0) + 1

    async with _posting(generator, server.base_url, clients) as post:
        database_before = database_cpu_seconds(url)
        cpu_before, started = server.cpu_seconds(), time.perf_counter()
        client_before = time.process_time()
        await asyncio.gather(*(client_loop(post) for _ in range(clients)))
        seconds = _since(started)
        client_ms = (time.process_time() - client_before) * 1000 / max(len(ms), 1)
        cpu_ms = (server.cpu_seconds() - cpu_before) * 1000 / max(len(ms), 1)
        database_after = database_cpu_seconds(url)
    database_ms = (
        None
        if database_before is None or database_after is None
        else (database_after - database_before) * 1000 / max(len(ms), 1)
    )
    return Transitions(len(ms), failed, seconds, ms, cpu_ms, database_ms, client_ms)


Post = Callable[[str, dict[str, Any], dict[str, str]], Awaitable[int]]


@asynccontextmanager
async def _posting(generator: Generator, base_url: str, clients: int) -> AsyncIterator[Post]:
    """A keep-alive client with `clients` connections, as `post(path, json, headers) -> status`.

    aiohttp spends a fraction of httpx's CPU per request; on a 2-core machine the load
    generator shares the cores with the API and the database, so its cost shows in the rate.
    """
    if generator is Generator.httpx:
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as http:

            async def post_httpx(path: str, body: dict[str, Any], headers: dict[str, str]) -> int:
                return (await http.post(path, json=body, headers=headers)).status_code

            yield post_httpx
        return
    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(base_url, connector=connector, timeout=timeout) as session:

        async def post_aiohttp(path: str, body: dict[str, Any], headers: dict[str, str]) -> int:
            async with session.post(path, json=body, headers=headers) as response:
                await response.read()
                return response.status

        yield post_aiohttp


def run_backend(which: Backend, url: str, sqlite_path: Path, options: Options, reuse: bool) -> Run:
    load_s = prepare(which, url, sqlite_path, options, reuse)
    key = admin_key(url)
    rng = np.random.default_rng(options.seed + 1)
    boxes = bench_db.query_boxes(rng, options.warmup + options.queries, box_side_m(url, options))
    case_ids = new_case_ids(url, options.transitions)
    mover = key if options.caller is Caller.admin else monitor_key(url, case_ids)
    with api_server(url, options.workers) as server:
        listing = time_listing(server, key, boxes, options.warmup)
        log.info("%s: listing p95 %.1f ms", which, float(np.percentile(listing.ms, 95)))
        moves = asyncio.run(
            time_transitions(server, mover, case_ids, options.clients, url, options.generator)
        )
        log.info("%s: %.0f transitions/s", which, moves.per_second)
    return Run(str(which), load_s, listing, moves)


# --- the report ----------------------------------------------------------------------------------


def report(started: datetime, environment: str, runs: list[Run], options: Options) -> str:
    command_line = " ".join([".venv/bin/python -m benchmarks.bench_api", *sys.argv[1:]])
    statuses = "&".join(f"status={s}" for s in LISTED_STATUSES)
    lines = [
        f"## Case API over HTTP: {options.rows:,} cases, filtered bbox listing and transitions",
        "",
        f"- Command: `{command_line}`",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC",
        f"- Machine: {environment}; load average {os.getloadavg()[0]:.2f} at the end",
        f"- Server: uvicorn, {options.workers} worker processes, `--factory "
        "service.main:create_app`, a separate process from the client (same machine).",
        f"- Listing: `GET /v1/cases?bbox=…&{statuses}` (an admin key, 100 per page), boxes "
        f"expected to overlap ~{options.target_count:.0f} cases (bench_db's polygons and "
        f"boxes, seed {options.seed}; statuses cycle so that 60 % match the filter); one "
        f"request at a time, {options.warmup} untimed first; time = request sent → whole "
        "JSON body received.",
        f"- Transitions: {options.clients} concurrent clients (one asyncio process, "
        f"{options.generator}, "
        'keep-alive), each `POST /v1/cases/{id}/transitions` `{"to": "dispatched"}` with '
        '`If-Match: "1"` on its own distinct new case, '
        + (
            "with an admin key (cases without a jurisdiction)"
            if options.caller is Caller.admin
            else "with the key of a monitoring centre scoped to the one district the cases "
            "were moved into first"
        )
        + "; rate = successful transitions ÷ wall time of the whole batch.",
        "- API CPU ms: CPU time (user + system) of the uvicorn processes per request, from "
        "/proc, PostgreSQL's own processes not included; with the API alone on "
        f"{os.cpu_count()} cores, {os.cpu_count()} × 1000 ÷ that is the most it could answer "
        "per second.",
        "- DB CPU ms: CPU time of the PostgreSQL backends serving the benchmark's database per "
        "transition (found by process title; WAL writer and checkpointer not included).",
        "- client CPU ms: CPU time of the load generator (this process) per transition; it "
        "shares the cores with the API and the database.",
        "",
        "| backend | load | listing N | cases returned: mean (min–max) | p50 ms | p95 ms | "
        "max ms | API CPU ms | transitions | per second | p50 ms | p95 ms | API CPU ms "
        "| DB CPU ms | client CPU ms | failed |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        c, t = np.asarray(r.listing.counts), r.transitions
        load = "reused" if r.load_s is None else f"{r.load_s:.0f} s"
        failed = ", ".join(f"{n}× {code}" for code, n in sorted(t.failed.items())) or "0"
        database_ms = "–" if t.database_cpu_ms is None else f"{t.database_cpu_ms:.1f}"
        lines.append(
            f"| {r.backend} | {load} | {len(r.listing.ms)} | {c.mean():.1f} ({c.min()}–{c.max()}) "
            f"| {_p(r.listing.ms, 50)} | {_p(r.listing.ms, 95)} | {max(r.listing.ms):.1f} "
            f"| {r.listing.server_cpu_ms:.1f} | {t.ok} | {t.per_second:,.0f} | {_p(t.ms, 50)} "
            f"| {_p(t.ms, 95)} | {t.server_cpu_ms:.1f} | {database_ms} | {t.client_cpu_ms:.1f} "
            f"| {failed} |"
        )
    lines += [
        "",
        "Targets: listing p95 ≤ 50 ms; ≥ 500 transitions/s with 2 workers on PostgreSQL.",
        "",
    ]
    for r in runs:
        listing_ok = np.percentile(r.listing.ms, 95) <= 50
        rate_ok = r.transitions.per_second >= 500
        cores = os.cpu_count() or 1
        ceiling = cores * 1000 / max(r.transitions.server_cpu_ms, 1e-9)
        both = ""
        if r.transitions.database_cpu_ms is not None:
            spent = r.transitions.server_cpu_ms + r.transitions.database_cpu_ms
            both = f", API and database together ~{cores * 1000 / max(spent, 1e-9):,.0f}/s"
        lines.append(
            f"- {r.backend}: listing {'met' if listing_ok else 'NOT met'}; transitions "
            f"{'met' if rate_ok else 'NOT met'} ({r.transitions.per_second:,.0f}/s; the API's "
            f"CPU per transition would allow ~{ceiling:,.0f}/s on idle cores{both})."
        )
    return "\n".join(lines) + "\n"


def _p(ms: list[float], q: float) -> str:
    return f"{float(np.percentile(ms, q)):.1f}" if ms else "–"


def _since(started: float) -> float:
    return time.perf_counter() - started


app = typer.Typer(add_completion=False)


@app.command()
def main(
    backend: Annotated[Backend, typer.Option(help="Which database to benchmark.")] = Backend.both,
    rows: Annotated[int, typer.Option(min=1_000, help="Cases to load.")] = 1_000_000,
    queries: Annotated[int, typer.Option(min=1, help="Timed listing requests.")] = 300,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed listing requests first.")] = 30,
    target_count: Annotated[float, typer.Option(min=1, help="Cases per box (all statuses).")] = 100,
    transitions: Annotated[int, typer.Option(min=1, help="Cases to transition.")] = 5_000,
    # 32 in flight keep both workers busy while others wait on the database's commits.
    clients: Annotated[int, typer.Option(min=1, help="Concurrent transition clients.")] = 32,
    workers: Annotated[int, typer.Option(min=1, help="uvicorn worker processes.")] = 2,
    batch: Annotated[int, typer.Option(min=100, help="Rows per executemany.")] = 10_000,
    seed: Annotated[int, typer.Option(help="Seed for polygons and boxes.")] = 20261128,
    generator: Annotated[
        Generator, typer.Option(help="HTTP client that drives the transitions.")
    ] = Generator.aiohttp,
    caller: Annotated[Caller, typer.Option(help="Who moves the cases.")] = Caller.admin,
    postgres_url: Annotated[
        str, typer.Option(help="Dropped and recreated (unless reused)!")
    ] = DEFAULT_POSTGRES_URL,
    sqlite_path: Annotated[
        Path, typer.Option(help="Recreated unless reused.")
    ] = DEFAULT_SQLITE_PATH,
    reuse: Annotated[
        bool, typer.Option(help="Keep the databases, and reuse them when they hold --rows cases.")
    ] = False,
    append_results: Annotated[bool, typer.Option(help="Append to RESULTS.md.")] = False,
) -> None:
    """Time the case API over HTTP on a large database: bbox listing and transitions."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise
    options = Options(
        rows, queries, warmup, target_count, transitions, clients, workers, batch, seed, generator,
        caller,
    )  # fmt: skip
    started = datetime.now(UTC)
    backends = [Backend.sqlite, Backend.postgresql] if backend is Backend.both else [backend]
    if Backend.postgresql in backends:
        bench_db.check_disposable(postgres_url)
    environment = bench_db.machine(postgres_url if Backend.postgresql in backends else None)
    runs = []
    for which in backends:
        url = f"sqlite:///{sqlite_path}" if which is Backend.sqlite else postgres_url
        try:
            runs.append(run_backend(which, url, sqlite_path, options, reuse))
        finally:
            if not reuse and which is Backend.sqlite:
                bench_db.remove_sqlite(sqlite_path)
            elif not reuse:
                bench_db.recreate_postgres(postgres_url, create=False)
    section = report(started, environment, runs, options)
    typer.echo(section)
    if append_results:
        with bench_db.RESULTS_MD.open("a", encoding="utf-8") as results:
            results.write("\n" + section)


if __name__ == "__main__":
    app()
