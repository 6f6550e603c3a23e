"""`tianxun evaluate backfill WORLD_DIR`: backfill a simulated world from scratch, score it.

The world's tiles are delivered as provider products (cloud mask as alpha), its layers and
jurisdictions loaded into a fresh, migrated database, and `tianxun backfill` run over all
epochs on Dask; then every injected violation is looked up among the cases
(`service.backfill.score`): found or not, onset dated within one epoch or not, and why not.
"""

from __future__ import annotations

import json
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, date, datetime
from datetime import time as day_time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import rasterio
import typer
from pyproj import Transformer
from rich.console import Console
from rich.table import Table
from shapely.geometry import box

from detection.rs_params import RasterDetectorParams
from detection.rs_reference import clear_beyond, margin_px
from detection.world_score import TruthViolation
from scripts.evaluate_world import clear_fractions, load_violations

ALPHA_BAND = 5  # of a delivered product: 0 where cloud, cloud shadow or nodata


def evaluate_backfill(
    world_dir: Annotated[
        Path, typer.Argument(help="A world written by `tianxun simulate`.", file_okay=False)
    ],
    work_dir: Annotated[
        Path | None,
        typer.Option(
            help="Keep products, database and object store here (default: a temporary folder)."
        ),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            help="An empty database to migrate and use (default: SQLite in the work dir)."
        ),
    ] = None,
    workers: Annotated[int, typer.Option(help="Local Dask worker processes.")] = 2,
    scheduler: Annotated[str | None, typer.Option(help="An existing Dask scheduler.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    retrace: Annotated[
        bool,
        typer.Option(help="Continuing a finished run in --work-dir: trace every case again."),
    ] = False,
) -> None:
    """Backfill every epoch of a simulated world into a fresh database and score the cases:
    injected violations found, onset dated within one epoch, and why the rest were missed."""
    world = _read_world(world_dir)
    with ExitStack() as stack:
        if work_dir is None:
            work_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bf-eval-")))
        work_dir.mkdir(parents=True, exist_ok=True)
        report = run_and_score(
            world_dir,
            world,
            work_dir=work_dir,
            database_url=database_url,
            workers=workers,
            scheduler=scheduler,
            quiet=as_json,
            retrace=retrace,
        )
    if as_json:
        typer.echo(json.dumps(report, indent=1, default=str))
        return
    console = Console()
    console = Console(width=None if console.is_terminal else 150)
    console.print(_summary_table(report))
    console.print(_violation_table(report["score"]["violations_detail"]))


def run_and_score(
    world_dir: Path,
    world: dict[str, Any],
    *,
    work_dir: Path,
    database_url: str | None,
    workers: int,
    scheduler: str | None,
    quiet: bool,
    retrace: bool = False,
) -> dict[str, Any]:
    """Deliver, load, backfill and score; the report as JSON-ready values."""
    from scripts.backfill import Progress
    from service.backfill.cluster import dask_client
    from service.backfill.run import Quiet, run_backfill
    from service.db import machine_session_factory, transaction

    products = deliver_products(world_dir, world, work_dir / "products")
    url = database_url or f"sqlite:///{(work_dir / 'backfill.db').absolute()}"
    settings, engine = _fresh_database(world_dir, url, work_dir / "data")
    factory = machine_session_factory(engine)
    started = time.perf_counter()
    observer = Quiet() if quiet else Progress()
    try:
        with dask_client(scheduler, workers=workers) as client:
            summary = run_backfill(
                _request(world, products),
                factory=factory,
                settings=settings,
                client=client,
                observer=observer,
                retrace=retrace,
            )
        backfill_s = time.perf_counter() - started
        with transaction(factory) as session:
            score = _score(world_dir, world, products, session=session)
    finally:
        engine.dispose()
    dates = _epoch_dates(world)
    return {
        "world": str(world_dir),
        "seed": world.get("seed"),
        "epochs": len(dates),
        "first_date": dates[0].isoformat(),
        "last_date": dates[-1].isoformat(),
        "size_px": world.get("size_px"),
        "database": url.split("://", 1)[0],
        "workers": workers if scheduler is None else scheduler,
        "backfill_seconds": round(backfill_s, 1),
        "summary": {k: v for k, v in summary.items() if k != "problems"}
        | {"problems": len(summary["problems"])},
        "score": score.as_json(dates),
    }


def deliver_products(world_dir: Path, world: dict[str, Any], products: Path) -> Path:
    """Each epoch's tile as a provider delivers it, with its cloud mask as the alpha band."""
    from simulator.products import delivered_tile

    for epoch in world["epochs"]:
        delivered_tile(world_dir / epoch["tile"], products)
    return products


def _fresh_database(world_dir: Path, url: str, data_dir: Path) -> tuple[Any, Any]:
    from alembic import command

    from scripts.load_world import load_world
    from service.db import alembic_config, create_db_engine, machine_session_factory, transaction
    from service.settings import Settings

    config = alembic_config(url)
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head")
    settings = Settings(database_url=url, data_dir=data_dir)
    engine = create_db_engine(url)
    with transaction(machine_session_factory(engine)) as session:
        load_world(world_dir, session=session, settings=settings)
    return settings, engine


def _request(world: dict[str, Any], products: Path) -> Any:
    from service.backfill.run import BackfillRequest

    dates = _epoch_dates(world)
    return BackfillRequest(
        area=box(*world["bounds_lonlat"]),
        since=datetime.combine(dates[0], day_time.min, tzinfo=UTC),
        until=datetime.combine(dates[-1], day_time.max, tzinfo=UTC),
        source=str(products.absolute()),
    )


def _score(world_dir: Path, world: dict[str, Any], products: Path, *, session: Any) -> Any:
    from service.backfill.score import read_backfill_results, score_backfill

    to_world = Transformer.from_crs("OGC:CRS84", world["crs"], always_xy=True)
    violations = load_violations(world_dir, to_world)
    dates = _epoch_dates(world)
    cases, detections = read_backfill_results(
        session,
        to_world=to_world.transform,
        epoch_of={day: index for index, day in enumerate(dates)},
    )
    return score_backfill(
        violations,
        cases,
        detections,
        clear_fraction=detector_clear_fractions(world, products, violations),
        min_mapping_unit_m2=RasterDetectorParams().min_mapping_unit_m2,
    )


def detector_clear_fractions(
    world: dict[str, Any], products: Path, violations: list[TruthViolation]
) -> dict[int, dict[str, float]]:
    """Per epoch e ≥ 1, the share of each violation standing on e that the detector compared
    on e against its last clear look, from the alpha bands the backfill itself read.

    As the backfill's detector sees it: a pixel is compared where it is clear and beyond the
    detector's margin of cloud and nodata (`invalid_buffer_m`) on e, and some earlier date
    saw it so (the last clear look), itself beyond the margin of the look's holes.
    """
    epochs = sorted(world["epochs"], key=lambda epoch: epoch["index"])
    fractions: dict[int, dict[str, float]] = {}
    seen_before: np.ndarray | None = None  # some earlier date saw the pixel beyond the margin
    for epoch in epochs:
        with rasterio.open(products / Path(epoch["tile"]).name) as source:
            clear = source.read(ALPHA_BAND) != 0
            transform, crs = source.transform, source.crs
        radius = margin_px(RasterDetectorParams(), transform, str(crs), clear.shape)
        look = clear_beyond(clear, radius)
        index = int(epoch["index"])
        if seen_before is not None:
            standing = {v.violation_id: v.extent_on(index) for v in violations}
            fractions[index] = clear_fractions(
                look & clear_beyond(seen_before, radius),
                transform,
                {key: extent for key, extent in standing.items() if extent is not None},
            )
        seen_before = look if seen_before is None else seen_before | look
    return fractions


def _epoch_dates(world: dict[str, Any]) -> list[date]:
    ordered = sorted(world["epochs"], key=lambda epoch: epoch["index"])
    return [date.fromisoformat(epoch["date"]) for epoch in ordered]


def _read_world(world_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((world_dir / "world.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise typer.BadParameter(
            f"cannot read {world_dir / 'world.json'} ({error}); "
            "give a folder written by `tianxun simulate --out`"
        ) from error


def _summary_table(report: dict[str, Any]) -> Table:
    score = report["score"]
    table = Table(
        title=f"Backfill of {report['world']}: {report['epochs']} epochs "
        f"{report['first_date']} … {report['last_date']}, {report['backfill_seconds']} s"
    )
    table.add_column("measure")
    table.add_column("value", justify="right")
    total = score["violations_scored"]
    table.add_row("violations found", f"{score['found']}/{total} ({score['found_share']:.1%})")
    table.add_row(
        "onset within one epoch",
        f"{score['onset_within_one_epoch']}/{score['found']} of those found "
        f"({score['onset_within_one_epoch_share_of_found']:.1%})",
    )
    verdict = "met" if score["target_met"] else "not met"
    table.add_row(
        "found with onset dated",
        f"{score['onset_within_one_epoch']}/{total} ({score['found_with_onset_share']:.1%}; "
        f"target {score['target_share']:.0%}: {verdict})",
    )
    for reason, count in score["missed_by_reason"].items():
        table.add_row(f"  {reason}", str(count))
    seen_verdict = "met" if score["target_met_over_seen"] else "not met"
    table.add_row(
        "dated by what the images show",
        f"{score['onset_within_one_epoch_of_first_look']}/{score['seen_clear_after_onset']} "
        f"seen clear after onset (within one epoch of onset, or of the first clear look "
        f"where cloud hid it; target {score['target_share']:.0%}: {seen_verdict})",
    )
    table.add_row("found, in one case only", f"{score['found_in_one_case']}/{score['found']}")
    table.add_row(
        "cases",
        f"{score['cases']} ({score['cases_on_violations']} on violations, "
        f"{score['cases_on_approved_lookalikes']} on approved look-alikes, "
        f"{score['cases_elsewhere']} elsewhere)",
    )
    return table


def _violation_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="Per violation")
    names = ("id", "type", "m²", "onset", "cases", "case", "last unchanged", "first visible")
    for name in (*names, "verdict"):
        table.add_column(name, justify="right" if name in {"m²", "cases"} else "left")
    for row in rows:
        verdict = row["missed_because"] or "found, onset within one epoch"
        if row["detail"]:
            verdict += f" ({row['detail']})"
        table.add_row(
            row["id"],
            row["type"],
            f"{row['area_m2']:.0f}",
            row["onset"],
            str(row["cases_touching"]),
            row["case"] or "–",
            row["last_unchanged"] or "–",
            row["first_visible"] or "–",
            verdict,
        )
    return table
