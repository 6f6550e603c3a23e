"""`tianxun simulate`: generate a seeded farmland world with exact ground truth."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from simulator import WorldParams


def simulate(
    out: Annotated[Path, typer.Option("--out", help="New or empty output directory.")],
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives identical files.")] = 1,
    area_km2: Annotated[
        float, typer.Option("--area-km2", help="Size of the square region, km².")
    ] = 4.0,
    epochs: Annotated[
        int, typer.Option(help="Acquisition dates spread evenly over the years.")
    ] = 12,
    cameras: Annotated[int, typer.Option(help="Tower cameras.")] = 6,
    presets: Annotated[int, typer.Option(help="PTZ presets per camera.")] = 1,
    snapshots: Annotated[int, typer.Option(help="Snapshots per preset and epoch.")] = 3,
    pixel_size: Annotated[
        float, typer.Option("--pixel-size", help="Tile pixel size, metres.")
    ] = 1.0,
    year: Annotated[int, typer.Option(help="Calendar year of the first epoch.")] = 2025,
    years: Annotated[
        int, typer.Option(help="Calendar years the epochs span (--epochs 24 --years 2: monthly).")
    ] = 1,
    workers: Annotated[int, typer.Option(help="Processes rendering epochs in parallel.")] = 2,
    previews: Annotated[
        Path | None, typer.Option(help="Also write README preview PNGs into this directory.")
    ] = None,
) -> None:
    """Generate tiles, camera snapshots, legal layers, jurisdictions and ground truth."""
    # Imported here so the rest of `tianxun` starts without loading the simulator.
    from simulator import SimulatorError, WorldParams, build_world, generate_world
    from simulator.preview import write_previews

    try:
        params = WorldParams(
            seed=seed,
            area_km2=area_km2,
            epochs=epochs,
            cameras=cameras,
            presets_per_camera=presets,
            snapshots_per_epoch=snapshots,
            pixel_size_m=pixel_size,
            year=year,
            years=years,
        )
        _refuse_future_epochs(params)
        summary = generate_world(params, out, workers=workers)
        if previews is not None:
            write_previews(build_world(params), previews)
    except SimulatorError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2) from error
    typer.echo(
        f"wrote {summary.tiles} tiles, {summary.snapshots} snapshots from "
        f"{summary.cameras} cameras, {summary.violations} violations and {summary.benign} "
        f"benign events to {summary.out_dir} "
        f"in {summary.elapsed_s:.1f} s"
    )


def _refuse_future_epochs(params: WorldParams) -> None:
    from simulator.calendar import epoch_dates
    from simulator.errors import SimulatorParamsError

    last = epoch_dates(params.year, params.epochs, params.years)[-1]
    if last >= date.today():
        raise SimulatorParamsError(
            f"the last epoch would fall on {last.isoformat()}, not in the past: ingest refuses "
            f"captures dated in the future. Choose an earlier --year."
        )


def register(app: typer.Typer) -> None:
    """Add `simulate` to the `tianxun` command."""
    app.command("simulate")(simulate)
