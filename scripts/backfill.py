"""`tianxun backfill`, `tianxun backfill diff` and `tianxun trace`: history from scripts.

Also runnable as `python -m scripts.backfill ...` (the backfill command itself).
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from datetime import time as day_time
from pathlib import Path
from typing import Annotated, Any

import typer

backfill_app = typer.Typer(
    invoke_without_command=True,
    help="Detect over past imagery on Dask, write cases as live ingest does, trace onsets.",
)
DATE_FORMATS = ["%Y-%m-%d"]


def register(app: typer.Typer) -> None:
    app.add_typer(backfill_app, name="backfill")
    app.command("trace")(trace)


@backfill_app.callback()
def backfill(
    ctx: typer.Context,
    area: Annotated[Path | None, typer.Option(help="Area of interest, GeoJSON (lon/lat).")] = None,
    since: Annotated[datetime | None, typer.Option(formats=DATE_FORMATS)] = None,
    until: Annotated[datetime | None, typer.Option(formats=DATE_FORMATS)] = None,
    source: Annotated[
        str | None, typer.Option(help="Folder of GeoTIFFs/COGs, or a STAC catalog / items JSON.")
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(help="Dask scheduler, e.g. tcp://10.0.0.5:8786 (or $DASK_SCHEDULER_ADDRESS)."),
    ] = None,
    alert: Annotated[bool, typer.Option(help="Publish the alerts on the live feeds.")] = False,
    workers: Annotated[int, typer.Option(help="Local Dask worker processes.")] = 2,
    resume: Annotated[int | None, typer.Option(help="Continue run RUN_ID as started.")] = None,
    retrace: Annotated[
        bool, typer.Option(help="Trace every case the run touched again (nothing else reruns).")
    ] = False,
) -> None:
    """Run (or continue) a backfill; running it again with the same arguments adds nothing."""
    if ctx.invoked_subcommand is not None:
        return
    from service.backfill.cluster import dask_client
    from service.backfill.run import run_backfill

    settings, factory, engine = _database()
    try:
        if resume is not None:
            request = _resumed(factory, resume)
        else:
            request = _request(area, since, until, source, alert)
        progress = Progress()
        with dask_client(scheduler, workers=workers) as client:
            summary = run_backfill(
                request,
                factory=factory,
                settings=settings,
                client=client,
                observer=progress,
                retrace=retrace,
            )
        progress.close()
    finally:
        engine.dispose()
    _print_summary(summary)


def _request(
    area: Path | None,
    since: datetime | None,
    until: datetime | None,
    source: str | None,
    alert: bool,
) -> Any:
    from service.backfill.inputs import read_area
    from service.backfill.run import BackfillRequest

    if area is None or since is None or until is None or source is None:
        raise typer.BadParameter("give --area, --since, --until and --source (or --resume RUN_ID)")
    try:
        geometry = read_area(area)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error
    source_path = Path(source)
    if not source_path.exists():
        raise typer.BadParameter(f"--source {source} does not exist")
    return BackfillRequest(
        area=geometry,
        since=since.replace(tzinfo=UTC),
        # The whole last day counts.
        until=datetime.combine(until.date(), day_time.max, tzinfo=UTC),
        source=str(source_path.resolve()),
        alert=alert,
    )


def _resumed(factory: Any, run_id: int) -> Any:
    from models.backfill import BackfillRun
    from service.backfill.run import request_of
    from service.db import transaction

    with transaction(factory) as session:
        run = session.get(BackfillRun, run_id)
        if run is None:
            raise typer.BadParameter(f"backfill run {run_id} does not exist")
        return request_of(run)


@backfill_app.command("diff")
def diff(run_a: int, run_b: int) -> None:
    """Compare what two runs were run with and what they found (JSON)."""
    from service.backfill.diff import diff_runs
    from service.db import transaction
    from service.errors import NotFoundError

    _, factory, engine = _database()
    try:
        with transaction(factory) as session:
            report = diff_runs(run_a, run_b, session=session)
    except NotFoundError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error
    finally:
        engine.dispose()
    typer.echo(json.dumps(report, indent=2, default=str, ensure_ascii=False))


def trace(
    case_ids: Annotated[list[int] | None, typer.Argument(help="Cases to trace.")] = None,
    rectifying: Annotated[
        bool, typer.Option(help="Also check every case being rectified against later imagery.")
    ] = False,
) -> None:
    """Trace when each case began (last clearly unchanged, first visible, likeliest onset
    between them) with image chips; for cases in rectification, say whether later imagery
    shows the place restored."""
    from sqlalchemy import select

    from models.case import Case, CaseStatus
    from service.backfill.compute import trace_cases
    from service.backfill.run import trace_groups
    from service.backfill.write import write_trace
    from service.db import transaction

    settings, factory, engine = _database()
    try:
        with transaction(factory) as session:
            ids = list(case_ids or [])
            if rectifying:
                statement = select(Case.id).where(Case.status == CaseStatus.rectifying)
                ids += [i for i in session.scalars(statement) if i not in ids]
            missing = [i for i in ids if session.get(Case, i) is None]
            if missing or not ids:
                raise typer.BadParameter(f"no such case: {missing}" if missing else "no cases")
            for dates, tasks in trace_groups(ids, session=session, settings=settings):
                for result in trace_cases(dates, tasks):
                    write_trace(result, session=session, settings=settings, actor="trace")
                    typer.echo(_trace_line(result))
    finally:
        engine.dispose()


def _trace_line(result: Any) -> str:
    def day(look: Any) -> str:
        return look.acquired_at.date().isoformat() if look is not None else "before the imagery"

    line = (
        f"case {result.case_id}: last clearly unchanged {day(result.onset_after)}, "
        f"first visible {day(result.onset_before)}, "
        f"likeliest onset {day(result.onset_likeliest)}"
    )
    if result.rectification is not None:
        line += f"; rectification: {result.rectification.replace('_', ' ')}"
    for number, part in enumerate(result.parts, start=1):
        line += (
            f"\n  place {number} (first seen {part.reference_at.date().isoformat()}): "
            f"last clearly unchanged {day(part.onset_after)}, "
            f"first visible {day(part.onset_before)}, "
            f"likeliest onset {day(part.onset_likeliest)}"
        )
    return line


def _database() -> tuple[Any, Any, Any]:
    from service.db import create_db_engine, machine_session_factory
    from service.settings import Settings

    settings = Settings()
    engine = create_db_engine(settings.database_url)
    return settings, machine_session_factory(engine), engine


class Progress:
    """Units, tiles/s, Mpx/s and ETA: a rich bar on a terminal, else a log line every 10 s."""

    LOG_EVERY_S = 10.0

    def __init__(self) -> None:
        self.done = 0
        self.pixels = 0
        self.total = 0
        self.started = time.perf_counter()
        self.logged = self.started
        self.bar: Any = None
        self.task: Any = None

    def planned(self, units: int, pending: int, pending_pixels: int) -> None:
        self.total = pending
        self.started = time.perf_counter()
        typer.echo(f"{units} work units, {pending} to do ({pending_pixels / 1e6:.0f} Mpx)")
        if sys.stdout.isatty() and pending:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("[bold]backfill"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total} tiles"),
                TextColumn("{task.fields[rate]}"),
                TimeRemainingColumn(),
            )
            self.task = self.bar.add_task("units", total=pending, rate="")
            self.bar.start()

    def unit_written(self, pixels: int) -> None:
        self.done += 1
        self.pixels += pixels
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        rate = f"{self.done / elapsed:.2f} tiles/s, {self.pixels / 1e6 / elapsed:.1f} Mpx/s"
        if self.bar is not None:
            self.bar.update(self.task, completed=self.done, rate=rate)
            return
        now = time.perf_counter()
        if now - self.logged >= self.LOG_EVERY_S or self.done == self.total:
            self.logged = now
            left = (self.total - self.done) * elapsed / self.done
            typer.echo(f"{self.done}/{self.total} units, {rate}, ETA {left:.0f} s")

    def note(self, text: str) -> None:
        typer.echo(text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _print_summary(summary: dict[str, Any]) -> None:
    typer.echo(
        f"run {summary['run_id']} {summary['status']}: {summary['units_done']} units done, "
        f"{summary['units_failed']} failed, {summary['units_pending']} pending; "
        f"cases {summary['cases_new']} new, {summary['cases_updated']} updated, "
        f"{summary['area_m2']:.0f} m² ({summary['area_mu']:.1f} mu)"
    )
    for name in ("by_type", "by_jurisdiction"):
        if summary[name]:
            items = ", ".join(f"{key}: {count}" for key, count in summary[name].items())
            typer.echo(f"  {name.replace('_', ' ')}: {items}")
    for problem in summary["problems"]:
        typer.echo(f"  {problem['action']}: {problem['input']}: {problem['reason']}")


if __name__ == "__main__":
    backfill_app()
