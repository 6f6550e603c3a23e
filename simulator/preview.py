"""Small PNG previews for the README: a before/after tile pair and one camera snapshot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from rasterio import windows

from simulator.raster import TileRender, render_tile
from simulator.snapshot import render_snapshot
from simulator.world import World

CROP_PX = 384
SNAPSHOT_WIDTH = 800


def quicklook(tile: TileRender, window: windows.Window) -> Image.Image:
    """True-colour RGB of a tile window, stretched like a GIS quicklook (fixed gain, gamma)."""
    rows, cols = window.toslices()
    rgb = tile.data[[2, 1, 0], rows, cols].astype(np.float32) / 10000
    rgb = np.clip(rgb * 3.0, 0, 1) ** (1 / 2.2)
    return Image.fromarray((rgb.transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8))


def _clear(tile: TileRender, window: windows.Window) -> bool:
    rows, cols = window.toslices()
    return not tile.cloud[rows, cols].any() and bool((tile.data[0, rows, cols] > 0).all())


def _tile_pair(world: World) -> tuple[Image.Image, Image.Image, str]:
    tiles = [render_tile(world, e) for e in range(len(world.dates))]
    half = CROP_PX // 2
    for v in sorted(world.violations, key=lambda v: -v.geom.area):
        if v.in_approved:
            continue
        col_f, row_f = ~world.grid.transform @ (v.geom.centroid.x, v.geom.centroid.y)
        row, col = int(row_f), int(col_f)
        row0 = min(max(0, row - half), world.grid.height - CROP_PX)
        col0 = min(max(0, col - half), world.grid.width - CROP_PX)
        window = windows.Window(col0, row0, CROP_PX, CROP_PX)
        before = [t for t in tiles[: v.onset_epoch] if _clear(t, window)]
        after = [t for t in tiles[v.onset_epoch :] if _clear(t, window)]
        if before and after:
            label = (
                f"{v.id} {v.type}: {world.dates[before[-1].epoch]} → {world.dates[after[-1].epoch]}"
            )
            return quicklook(before[-1], window), quicklook(after[-1], window), label
    raise ValueError("no violation has a cloud-free before/after pair; try another seed")


def _snapshot(world: World) -> Image.Image:
    best = None
    for camera in world.cameras:
        for preset in camera.presets:
            epoch = len(world.dates) - 1
            for shot in range(world.params.snapshots_per_epoch):
                snap = render_snapshot(world, preset, epoch, shot)
                cond = snap.conditions
                if cond.fog or cond.rain or cond.night_ir:
                    continue
                score = int((snap.mask == 1).sum())
                if best is None or score > best[0]:
                    best = (score, snap)
                break
    if best is None:
        raise ValueError("no clear-weather snapshot in the last epoch; try another seed")
    image = Image.fromarray(best[1].image)
    height = round(image.height * SNAPSHOT_WIDTH / image.width)
    return image.resize((SNAPSHOT_WIDTH, height), Image.Resampling.LANCZOS)


def write_previews(world: World, images_dir: Path) -> list[Path]:
    """Write tile_before.png, tile_after.png and camera_snapshot.png (each well under 300 kB)."""
    images_dir.mkdir(parents=True, exist_ok=True)
    before, after, _ = _tile_pair(world)
    written = []
    for name, image in (
        ("tile_before", before),
        ("tile_after", after),
        ("camera_snapshot", _snapshot(world)),
    ):
        path = images_dir / f"{name}.png"
        # An adaptive 256-colour palette keeps photographs small without visible banding.
        image.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            path, optimize=True
        )
        written.append(path)
    return written
