"""Bbox queries over a million case polygons on SQLite (R*Tree) and PostGIS (GiST), timed.

Run from the repository root (see benchmarks/README.md):

    .venv/bin/python -m benchmarks.bench_db --backend both --rows 1000000

Each database is made fresh, migrated by Alembic, filled through SQLAlchemy Core, queried
through `service.spatial` exactly as the service queries it, and removed afterwards.
"""

from __future__ import annotations

import logging
import os
import platform
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import shapely
import sqlalchemy
import typer
from alembic import command
from pyproj import Transformer
from sqlalchemy import Engine, Select, create_engine, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from models import Case
from models.case import CaseStatus, ConfidenceLevel
from models.geo import bbox_values
from service.db import alembic_config, create_db_engine
from service.spatial import BBox, bbox_clause, iter_intersecting

log = logging.getLogger("benchmarks.bench_db")

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_MD = BENCH_DIR / "RESULTS.md"
DEFAULT_SQLITE_PATH = BENCH_DIR / "out" / "bench_db.sqlite"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/tianxun_bench"

# A square of Hangzhou's area (~16,850 km²) in CGCS2000 / 3-degree Gauss-Krüger CM 120°E,
# centred near 119.8°E 29.95°N: polygons are built in metres, so their areas are known.
AREA_CRS = "EPSG:4549"
CITY_AREA_M2 = 16_850e6
EXTENT_SIDE_M = float(np.sqrt(CITY_AREA_M2))
CENTRE_XY = (480_000.0, 3_315_000.0)
POLYGON_AREA_RANGE_M2 = (50.0, 5_000.0)
VERTEX_RANGE = (5, 9)
SEEN = datetime(2026, 5, 1, tzinfo=UTC)


class Backend(StrEnum):
    sqlite = "sqlite"
    postgresql = "postgresql"
    both = "both"


@dataclass(frozen=True)
class Options:
    rows: int
    queries: int
    scan_queries: int
    warmup: int
    target_count: float
    batch: int
    seed: int


@dataclass(frozen=True)
class Timing:
    label: str
    counts: list[int]
    ms: list[float]

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.ms, q))


@dataclass(frozen=True)
class Run:
    """One backend's load figures, query plans and timings."""

    backend: str
    load_s: float
    generate_s: float
    analyze_s: float
    size_mb: float
    side_m: float
    plans: dict[str, str]
    timings: dict[str, Timing] = field(default_factory=dict)


@cache
def to_lonlat() -> Transformer:
    return Transformer.from_crs(AREA_CRS, "EPSG:4326", always_xy=True)


def random_polygons(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` irregular multipolygons in lon/lat, and their areas in m².

    Vertex angles are jittered around a regular polygon and radii vary ±40 %, so each ring is
    star-shaped (hence simple); it is then scaled to a log-uniform area in the range.
    """
    counts = rng.integers(VERTEX_RANGE[0], VERTEX_RANGE[1] + 1, size=n)
    ends = np.cumsum(counts)
    owner = np.repeat(np.arange(n), counts)
    position = np.arange(owner.size) - (ends - counts)[owner]
    angle = 2 * np.pi * (position + rng.uniform(-0.35, 0.35, owner.size)) / counts[owner]
    angle += rng.uniform(0, 2 * np.pi, n)[owner]
    radius = rng.uniform(0.6, 1.4, owner.size)
    x, y = radius * np.cos(angle), radius * np.sin(angle)
    following = np.arange(1, owner.size + 1)
    following[ends - 1] = ends - counts  # each ring closes on its own first vertex
    unit_area = np.bincount(owner, x * y[following] - x[following] * y) / 2  # shoelace
    low, high = np.log(POLYGON_AREA_RANGE_M2)
    area = np.exp(rng.uniform(float(low), float(high), n))
    scale = np.sqrt(area / unit_area)[owner]
    half = EXTENT_SIDE_M / 2
    cx = CENTRE_XY[0] + rng.uniform(-half, half, n)
    cy = CENTRE_XY[1] + rng.uniform(-half, half, n)
    lon, lat = to_lonlat().transform(cx[owner] + scale * x, cy[owner] + scale * y)
    rings = shapely.linearrings(np.column_stack([lon, lat]), indices=owner)
    return shapely.multipolygons(shapely.polygons(rings), indices=np.arange(n)), area


def case_rows(start: int, geoms: np.ndarray, areas: np.ndarray) -> list[dict[str, Any]]:
    """Parameter sets for one Core executemany (every set has the same keys)."""
    fixed = {
        "status": CaseStatus.new,
        "version": 1,
        "priority": 0,
        "confidence": 0.5,
        "confidence_level": ConfidenceLevel.nominal,
        "change_types": ["building"],
        "sources": ["satellite"],
        "first_seen_at": SEEN,
        "last_seen_at": SEEN,
        "escalated": False,
        "reopen_count": 0,
        "backfill": True,
        "created_at": SEEN,
        "updated_at": SEEN,
    }
    return [
        {**fixed, "code": f"B-{start + i:09d}", "area_m2": float(a), "geom": g, **bbox_values(g)}
        for i, (g, a) in enumerate(zip(geoms, areas, strict=True))
    ]


def fill(engine: Engine, options: Options) -> tuple[float, float]:
    """Insert the cases in batches; (seconds in all, of which generating polygons)."""
    rng = np.random.default_rng(options.seed)
    statement = insert(Case)
    started, generating = time.perf_counter(), 0.0
    for start in range(0, options.rows, options.batch):
        t0 = time.perf_counter()
        params = case_rows(start, *random_polygons(rng, min(options.batch, options.rows - start)))
        generating += time.perf_counter() - t0
        with engine.begin() as connection:
            connection.execute(statement, params)
        if (start // options.batch + 1) % 20 == 0:
            elapsed = time.perf_counter() - started
            log.info("%s: %d rows in %.0f s", engine.dialect.name, start + len(params), elapsed)
    return time.perf_counter() - started, generating


def remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def check_disposable(url: str) -> None:
    database = make_url(url).database or ""
    if not database.startswith("tianxun_bench"):
        raise typer.BadParameter(
            f"refusing to drop database {database!r}: the benchmark drops and recreates its "
            "database, so give a URL whose database name starts with 'tianxun_bench'",
            param_hint="--postgres-url",
        )


def recreate_postgres(url: str, *, create: bool) -> None:
    """Drop the benchmark database, and create it again with PostGIS when `create`."""
    check_disposable(url)
    database = make_url(url).database
    admin = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            if create:
                connection.exec_driver_sql(f'CREATE DATABASE "{database}"')
    finally:
        admin.dispose()
    if create:
        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS postgis")
        engine.dispose()


def migrate(url: str) -> None:
    config = alembic_config(url)
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head")


def analyze(engine: Engine) -> float:
    started = time.perf_counter()
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql('ANALYZE "case"')
    return time.perf_counter() - started


def size_mb(engine: Engine) -> float:
    if engine.dialect.name == "sqlite":
        path = engine.url.database or ""
        files = [Path(f"{path}{suffix}") for suffix in ("", "-wal")]
        return sum(f.stat().st_size for f in files if f.exists()) / 2**20
    with engine.connect() as connection:
        size = connection.execute(text("SELECT pg_database_size(current_database())")).scalar_one()
    return float(size) / 2**20


def query_side_m(engine: Engine, options: Options) -> float:
    """Side L of a square box expected to overlap `target_count` bboxes.

    A bbox of size w × h overlaps the box when its corner falls in an (L+w) × (L+h) area, so
    density · (L+w)(L+h) = target; w and h are averaged over a sample of the rows.
    """
    with engine.connect() as connection:
        columns = (Case.minx, Case.miny, Case.maxx, Case.maxy)
        sample = np.array(connection.execute(select(*columns).limit(10_000)).all()).T
    x0, y0 = to_lonlat().transform(sample[0], sample[1], direction="INVERSE")
    x1, y1 = to_lonlat().transform(sample[2], sample[3], direction="INVERSE")
    w, h = float(np.mean(x1 - x0)), float(np.mean(y1 - y0))
    b, c = w + h, w * h - options.target_count * CITY_AREA_M2 / options.rows
    return float((-b + np.sqrt(b * b - 4 * c)) / 2)


def query_boxes(rng: np.random.Generator, n: int, side: float) -> list[BBox]:
    """`n` lon/lat boxes around squares of `side` metres at random places in the extent."""
    inset = (EXTENT_SIDE_M - side) / 2
    cx = CENTRE_XY[0] + rng.uniform(-inset, inset, (n, 1))
    cy = CENTRE_XY[1] + rng.uniform(-inset, inset, (n, 1))
    offsets = np.array([-side / 2, side / 2])
    lon, lat = to_lonlat().transform(np.repeat(cx + offsets, 2, axis=1), np.tile(cy + offsets, 2))
    bounds = np.column_stack([lon.min(1), lat.min(1), lon.max(1), lat.max(1)])
    return [BBox(*row) for row in bounds.tolist()]


def scan_statement(dialect: str, bbox: BBox) -> Select[Any]:
    """The same bbox test with no spatial index to answer it."""
    if dialect == "postgresql":
        # The same `&&`; `without_index` bars the planner from using any index.
        return select(Case).where(bbox_clause(Case, bbox, dialect))
    return select(Case).where(
        Case.minx <= bbox.maxx,
        Case.maxx >= bbox.minx,
        Case.miny <= bbox.maxy,
        Case.maxy >= bbox.miny,
    )


def without_index(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL enable_indexscan = off"))
        session.execute(text("SET LOCAL enable_bitmapscan = off"))


def ids_by_index(session: Session, bbox: BBox) -> int:
    dialect = session.get_bind().dialect.name
    return len(session.scalars(select(Case.id).where(bbox_clause(Case, bbox, dialect))).all())


def by_index(session: Session, bbox: BBox) -> int:
    dialect = session.get_bind().dialect.name
    return len(session.scalars(select(Case).where(bbox_clause(Case, bbox, dialect))).all())


def exact(session: Session, bbox: BBox) -> int:
    return len(list(iter_intersecting(session, select(Case), Case, bbox.geometry)))


def by_scan(session: Session, bbox: BBox) -> int:
    return len(session.scalars(scan_statement(session.get_bind().dialect.name, bbox)).all())


def time_query(
    engine: Engine,
    query: Callable[[Session, BBox], int],
    boxes: Sequence[BBox],
    warmup: Sequence[BBox],
    *,
    no_index: bool = False,
) -> tuple[list[int], list[float]]:
    counts: list[int] = []
    ms: list[float] = []
    with Session(engine) as session:
        if no_index:
            without_index(session)
        for bbox in warmup:
            query(session, bbox)
        session.expunge_all()
        for bbox in boxes:
            started = time.perf_counter()
            counts.append(query(session, bbox))
            ms.append((time.perf_counter() - started) * 1000)
            session.expunge_all()  # each query builds its objects afresh
    return counts, ms


def query_plans(engine: Engine, bbox: BBox) -> dict[str, str]:
    """The plan nodes of the indexed and the unindexed query, to show which one ran."""
    dialect = engine.dialect.name
    explain = "EXPLAIN QUERY PLAN " if dialect == "sqlite" else "EXPLAIN "
    plans = {}
    with Session(engine) as session:
        for name, statement in (
            ("index", select(Case.id).where(bbox_clause(Case, bbox, dialect))),
            ("scan", scan_statement(dialect, bbox).with_only_columns(Case.id)),
        ):
            if name == "scan":
                without_index(session)
            sql = str(statement.compile(engine, compile_kwargs={"literal_binds": True}))
            lines = [
                str(row[-1]).split("  (cost")[0].strip(" ->")
                for row in session.execute(text(explain + sql))
            ]
            nodes = [line for line in lines if dialect == "sqlite" or ":" not in line]
            plans[name] = "; ".join(nodes)
    return plans


VARIANTS = {
    "ids": ("bbox via spatial index, ids only", ids_by_index, False),
    "index": ("bbox via spatial index (`bbox_clause`)", by_index, False),
    "exact": ("exact intersects (`iter_intersecting`)", exact, False),
    "scan": ("bbox, no index (full scan)", by_scan, True),
}


def run_backend(url: str, options: Options) -> Run:
    migrate(url)
    engine = create_db_engine(url)
    try:
        load_s, generate_s = fill(engine, options)
        analyze_s = analyze(engine)
        side = query_side_m(engine, options)
        rng = np.random.default_rng(options.seed + 1)
        warmup = query_boxes(rng, options.warmup, side)
        boxes = query_boxes(rng, options.queries, side)
        plans = query_plans(engine, boxes[0])
        run = Run(engine.dialect.name, load_s, generate_s, analyze_s, size_mb(engine), side, plans)
        log.info("%s: loaded in %.0f s; box side %.0f m", run.backend, load_s, side)
        for key, (label, query, no_index) in VARIANTS.items():
            # Full scans are slow: fewer of them, on the first of the same boxes.
            runs = boxes[: options.scan_queries] if no_index else boxes
            counts, ms = time_query(engine, query, runs, warmup, no_index=no_index)
            run.timings[key] = Timing(label, counts, ms)
            log.info("%s, %s: p50 %.2f ms", run.backend, label, run.timings[key].percentile(50))
        return run
    finally:
        engine.dispose()


def machine(postgres_url: str | None) -> str:
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")), "?")
    text_ = (
        f"{os.cpu_count()} CPUs ({cpu}), {ram:.1f} GiB RAM, {platform.system()} "
        f"{platform.release()}, load average {os.getloadavg()[0]:.2f} at the start (the "
        f"machine is shared); Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"SQLAlchemy {sqlalchemy.__version__}, shapely {shapely.__version__}"
    )
    if postgres_url is None:
        return text_
    # The maintenance database: the benchmark's own one does not exist yet.
    engine = create_engine(make_url(postgres_url).set(database="postgres"))
    with engine.connect() as connection:
        pg = connection.execute(text("SHOW server_version")).scalar_one()
        gis = connection.execute(
            text("SELECT default_version FROM pg_available_extensions WHERE name = 'postgis'")
        ).scalar_one()
    engine.dispose()
    return f"{text_}, PostgreSQL {pg}, PostGIS {gis}"


def report(started: datetime, environment: str, runs: list[Run], options: Options) -> str:
    command_line = " ".join([".venv/bin/python -m benchmarks.bench_db", *sys.argv[1:]])
    low, high = POLYGON_AREA_RANGE_M2
    lines = [
        f"## Spatial database: {options.rows:,} case polygons, bbox queries of "
        f"~{options.target_count:.0f} cases",
        "",
        f"- Command: `{command_line}`",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC",
        f"- Machine: {environment}; load average {os.getloadavg()[0]:.2f} at the end",
        f"- Data: irregular polygons of {low:.0f}–{high:,.0f} m² (log-uniform area, 5–9 vertices) "
        f"spread uniformly over a {EXTENT_SIDE_M / 1000:.1f} km square "
        f"({CITY_AREA_M2 / 1e6:,.0f} km²) near Hangzhou; square query boxes of "
        f"{runs[0].side_m:,.0f} m at random places (seed {options.seed}); {options.warmup} "
        "warm-up queries; except for “ids only”, each query loads whole `Case` rows through "
        "the ORM, as the API does.",
        "",
        "| backend | query | N | rows returned: mean (min–max) | p50 ms | p95 ms | max ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        for t in run.timings.values():
            c = np.asarray(t.counts)
            lines.append(
                f"| {run.backend} | {t.label} | {len(t.ms)} | {c.mean():.1f} ({c.min()}–{c.max()}) "
                f"| {t.percentile(50):.2f} | {t.percentile(95):.2f} | {max(t.ms):.2f} |"
            )
    lines += [
        "",
        "| backend | load | rows/s | of which generating | ANALYZE | size on disk |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.backend} | {r.load_s:.0f} s | {options.rows / r.load_s:,.0f} | {r.generate_s:.0f} s "
        f"| {r.analyze_s:.1f} s | {r.size_mb:,.0f} MB |"
        for r in runs
    ]
    lines += [
        "",
        "Index against full scan on the same boxes (median scan ÷ median index), "
        "and the p95 ≤ 50 ms target:",
        "",
    ]
    for r in runs:
        index, exact_t, scan = r.timings["index"], r.timings["exact"], r.timings["scan"]
        k = len(scan.ms)
        ratio = float(np.median(scan.ms) / np.median(index.ms[:k]))
        verdict = "met" if max(index.percentile(95), exact_t.percentile(95)) <= 50 else "NOT met"
        lines.append(
            f"- {r.backend}: the index is ×{ratio:,.0f} faster; target {verdict}. "
            f"Plans — index: `{r.plans['index']}`; scan: `{r.plans['scan']}`."
        )
    return "\n".join(lines) + "\n"


app = typer.Typer(add_completion=False)


@app.command()
def main(
    backend: Annotated[Backend, typer.Option(help="Which database to benchmark.")] = Backend.both,
    rows: Annotated[int, typer.Option(min=1_000, help="Case polygons to load.")] = 1_000_000,
    queries: Annotated[int, typer.Option(min=1, help="Timed queries per variant.")] = 200,
    scan_queries: Annotated[int, typer.Option(min=1, help="Timed full scans (slow).")] = 20,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed queries first.")] = 20,
    target_count: Annotated[float, typer.Option(min=1, help="Expected cases per box.")] = 100,
    batch: Annotated[int, typer.Option(min=100, help="Rows per executemany.")] = 10_000,
    seed: Annotated[int, typer.Option(help="Seed for polygons and boxes.")] = 20261128,
    postgres_url: Annotated[
        str, typer.Option(help="Dropped and recreated!")
    ] = DEFAULT_POSTGRES_URL,
    sqlite_path: Annotated[
        Path, typer.Option(help="Recreated, then deleted.")
    ] = DEFAULT_SQLITE_PATH,
    append_results: Annotated[bool, typer.Option(help="Append to RESULTS.md.")] = False,
    keep: Annotated[bool, typer.Option(help="Keep the databases afterwards.")] = False,
) -> None:
    """Load case polygons into fresh databases and time bbox queries with and without the index."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    options = Options(rows, queries, min(scan_queries, queries), warmup, target_count, batch, seed)
    started = datetime.now(UTC)
    backends = [Backend.sqlite, Backend.postgresql] if backend is Backend.both else [backend]
    if Backend.postgresql in backends:
        check_disposable(postgres_url)  # before minutes of SQLite work, not after
    environment = machine(postgres_url if Backend.postgresql in backends else None)
    runs = []
    for which in backends:
        if which is Backend.sqlite:
            sqlite_path.parent.mkdir(parents=True, exist_ok=True)
            remove_sqlite(sqlite_path)
            url = f"sqlite:///{sqlite_path}"
        else:
            recreate_postgres(postgres_url, create=True)
            url = postgres_url
        try:
            runs.append(run_backend(url, options))
        finally:
            if not keep and which is Backend.sqlite:
                remove_sqlite(sqlite_path)
            elif not keep:
                recreate_postgres(postgres_url, create=False)
    section = report(started, environment, runs, options)
    typer.echo(section)
    if append_results:
        with RESULTS_MD.open("a", encoding="utf-8") as results:
            results.write("\n" + section)


if __name__ == "__main__":
    app()
