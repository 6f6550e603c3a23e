"""Backfill throughput on Dask: a stack of 16 tiles × 12 epochs with 1 and 2 worker processes.

The simulated world's delivered products are cut into a 4 × 4 grid of tiles per epoch; every
consecutive date pair of every tile is one work unit, computed by `compare_unit` (the function
backfill workers run: read both files, fill the before date's cloud from up to five older
dates, detect, polygonise, chips). Both cluster sizes run side by side in one invocation on
the same files; parallel efficiency = rate(2) / (2 × rate(1)).
The projection scales the 2-worker rate to a city of 68 Gpx per date. Database writes are not
timed (one writer; they are per object, not per pixel). Results are appended to RESULTS.md.

    .venv/bin/python -m benchmarks.bench_backfill [--area-km2 1] [--epochs 12]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

import rasterio
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from detection.rs_params import RasterDetectorParams
from service.analysis.tiles import REFERENCE_LOOKS
from service.backfill.compute import UnitTask, compare_unit
from service.backfill.plan import older_looks
from simulator import WorldParams, generate_world
from simulator.products import delivered_tile

GRID = 4  # tiles per side
CITY_GPX_PER_DATE = 68.0
RESULTS = Path(__file__).with_name("RESULTS.md")


def cut_tiles(product: Path, out: Path) -> list[Path]:
    """The product split into GRID × GRID tiles (same bands, each with its own transform)."""
    paths = []
    with rasterio.open(product) as source:
        rows, cols = source.height // GRID, source.width // GRID
        for r in range(GRID):
            for c in range(GRID):
                window = Window(c * cols, r * rows, cols, rows)
                profile = source.profile | {
                    "width": cols,
                    "height": rows,
                    "transform": window_transform(window, source.transform),
                }
                target = out / f"r{r}c{c}" / product.name
                target.parent.mkdir(parents=True, exist_ok=True)
                with rasterio.open(target, "w", **profile) as sink:
                    sink.write(source.read(window=window))
                    sink.descriptions = source.descriptions
                    sink.colorinterp = source.colorinterp
                paths.append(target)
    return paths


def build_stack(folder: Path, area_km2: float, epochs: int) -> list[UnitTask]:
    generate_world(
        WorldParams(seed=7, area_km2=area_km2, epochs=epochs, cameras=0), folder / "world"
    )
    meta = json.loads((folder / "world" / "world.json").read_text())
    by_tile: dict[str, list[Path]] = {}
    for epoch in meta["epochs"]:
        product = delivered_tile(folder / "world" / epoch["tile"], folder / "products")
        for tile in cut_tiles(product, folder / "tiles"):
            by_tile.setdefault(tile.parent.name, []).append(tile)
    tasks: list[UnitTask] = []
    for paths in by_tile.values():
        dates = sorted(paths)
        for index, (before, after) in enumerate(pairwise(dates)):
            # As a backfill plans its units: the before date's cloud filled from older dates.
            older = older_looks(dates, index, limit=REFERENCE_LOOKS - 1)
            tasks.append(
                UnitTask(
                    len(tasks),
                    str(before),
                    str(after),
                    (),
                    (),
                    RasterDetectorParams(),
                    older_paths=tuple(str(path) for path in older),
                )
            )
    return tasks


def rate(tasks: list[UnitTask], workers: int) -> tuple[float, float, Counter[str]]:
    """(seconds, Mpx/s, failure reasons) for all tasks on a LocalCluster of `workers` processes."""
    from dask.distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        client.run(lambda: __import__("service.backfill.compute"))  # warm imports
        started = time.perf_counter()
        results = client.gather(client.map(compare_unit, tasks, pure=False))
        seconds = time.perf_counter() - started
    pixels = sum(r.comparison.pixels for r in results if r.comparison is not None)
    failed = Counter(r.failure for r in results if r.failure is not None)
    return seconds, pixels / 1e6 / seconds, failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--area-km2", type=float, default=1.0)
    parser.add_argument("--epochs", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        tasks = build_stack(Path(folder), args.area_km2, args.epochs)
        one = rate(tasks, 1)
        two = rate(tasks, 2)
    efficiency = two[1] / (2 * one[1])
    city_hours = CITY_GPX_PER_DATE * 1e3 / two[1] / 3600
    command = "python -m benchmarks.bench_backfill " + shlex.join(sys.argv[1:])
    lines = [
        "",
        f"## Backfill throughput on Dask ({datetime.now(UTC):%Y-%m-%d})",
        "",
        f"`{command.strip()}`: {GRID * GRID} tiles × {args.epochs} epochs "
        f"({len(tasks)} work units, world of {args.area_km2} km² at 1 m), "
        "compare_unit on a LocalCluster of single-threaded worker processes, one run each.",
        "",
        "| workers | seconds | Mpx/s | tiles/s | failed units |",
        "|---|---|---|---|---|",
        *(
            f"| {n} | {s:.1f} | {mpx:.2f} | {len(tasks) / s:.2f} | {f.total()} |"
            for n, (s, mpx, f) in ((1, one), (2, two))
        ),
        "",
        f"Parallel efficiency with 2 workers: {efficiency:.0%}. Projection for a city of "
        f"{CITY_GPX_PER_DATE:.0f} Gpx per date at the 2-worker rate: {city_hours:.1f} h per "
        f"date pair on this machine, {city_hours * 2:.1f} core-hours.",
        "",
        *(f"- refused {count}×: {reason}" for reason, count in one[2].most_common()),
        "",
    ]
    text = "\n".join(lines)
    with RESULTS.open("a", encoding="utf-8") as results:
        results.write(text)
    print(text)


if __name__ == "__main__":
    main()
