"""Writing a generated world to disk: GeoTIFF tiles, JPEG snapshots, GeoJSON layers and truth."""

from __future__ import annotations

import multiprocessing
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from PIL import Image

from simulator.camera import Preset
from simulator.errors import OutputDirError
from simulator.geojson import write_json
from simulator.params import WorldParams
from simulator.raster import CLOUD_NODATA, NODATA, render_tile
from simulator.snapshot import render_snapshot
from simulator.surface import render_surface, static_layers
from simulator.view import camera_texture, ground_image, preset_view, texture_pyramid
from simulator.world import World, build_world, to_lonlat
from simulator.worldfiles import write_vectors

BANDS = ("blue", "green", "red", "nir")
_GTIFF = {"driver": "GTiff", "tiled": True, "blockxsize": 256, "blockysize": 256}
_GTIFF |= {"compress": "zstd", "zstd_level": 1, "predictor": 2}


@dataclass(frozen=True)
class WorldSummary:
    """What `generate_world` wrote, and how long it took (seconds, not part of any file)."""

    out_dir: Path
    seed: int
    epochs: int
    tiles: int
    cameras: int
    snapshots: int
    violations: int
    benign: int
    elapsed_s: float


def _prepare(out_dir: Path) -> None:
    if out_dir.exists() and any(out_dir.iterdir()):
        raise OutputDirError(
            f"{out_dir} is not empty; pass a new or empty directory so old and new files never mix."
        )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputDirError(
            f"cannot create {out_dir}: {error}; choose a writable path."
        ) from error


def _write_tiff(path: Path, data: np.ndarray, world: World, **extra: Any) -> None:
    names = extra.pop("descriptions")
    tags = extra.pop("tags", {})
    profile = {
        **_GTIFF,
        "width": world.grid.width,
        "height": world.grid.height,
        "count": data.shape[0],
        "dtype": data.dtype.name,
        "crs": world.grid.crs,
        "transform": world.grid.transform,
        **extra,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for index, name in enumerate(names, start=1):
            dst.set_band_description(index, name)
        dst.update_tags(**tags)


def _epoch_files(world: World, out_dir: Path, epoch: int) -> tuple[dict, list[dict]]:
    """Render and write everything of one epoch; returns its world.json entry and snapshots."""
    day = world.dates[epoch].isoformat()
    surface = render_surface(world, epoch)
    tile = render_tile(world, epoch, surface)
    acq = tile.acquisition
    tags = {"date": day, "epoch": str(epoch), "scale_factor": "0.0001"}
    _write_tiff(
        out_dir / "tiles" / f"{day}.tif",
        tile.data,
        world,
        nodata=NODATA,
        descriptions=BANDS,
        tags=tags,
    )
    _write_tiff(
        out_dir / "tiles" / f"{day}.cloud.tif",
        tile.cloud[None],
        world,
        nodata=CLOUD_NODATA,
        descriptions=("cloud_or_shadow",),
        tags=tags,
    )
    _write_tiff(
        out_dir / "truth" / "masks" / "tiles" / f"{day}.tif",
        tile.truth[None],
        world,
        descriptions=("violation",),
        tags=tags,
    )
    pyramid = texture_pyramid(camera_texture(surface))
    shots: list[dict] = []
    for camera in world.cameras:
        for preset in camera.presets:
            ground = ground_image(preset_view(world, preset), pyramid)
            for shot in range(world.params.snapshots_per_epoch):
                shots.append(_write_snapshot(world, out_dir, preset, epoch, shot, ground))
    entry = {
        "index": epoch,
        "date": day,
        "tile": f"tiles/{day}.tif",
        "cloud_mask": f"tiles/{day}.cloud.tif",
        "truth_mask": f"truth/masks/tiles/{day}.tif",
        "misregistration_px": {
            "rows": round(acq.shift_px[0], 4),
            "cols": round(acq.shift_px[1], 4),
        },
        "cloud_fraction": round(float((tile.cloud == 1).mean()), 4),
        "haze": round(acq.haze, 4),
        "sun_elevation_deg": round(acq.sun_elevation_deg, 2),
        "nodata_fraction": round(float((tile.data[0] == NODATA).mean()), 4),
    }
    return entry, shots


def _write_snapshot(
    world: World, out_dir: Path, preset: Preset, epoch: int, shot: int, ground: Image.Image
) -> dict:
    snap = render_snapshot(world, preset, epoch, shot, ground=ground)
    where = Path("cameras") / preset.camera_id / preset.preset
    mask_where = Path("truth") / "masks" / "cameras" / preset.camera_id / preset.preset
    (out_dir / where).mkdir(parents=True, exist_ok=True)
    (out_dir / mask_where).mkdir(parents=True, exist_ok=True)
    image_path, mask_path = where / f"{snap.stem}.jpg", mask_where / f"{snap.stem}.png"
    if (out_dir / image_path).exists():
        raise OutputDirError(
            f"two snapshots of {preset.camera_id}/{preset.preset} share {snap.stem}"
        )
    Image.fromarray(snap.image).save(out_dir / image_path, "JPEG", quality=88)
    Image.fromarray(snap.mask).save(out_dir / mask_path, "PNG", compress_level=3)
    cond = snap.conditions
    return {
        "camera_id": preset.camera_id,
        "preset": preset.preset,
        "file": image_path.name,
        "mask": mask_path.as_posix(),
        "captured_at": cond.captured_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "epoch": epoch,
        "shot": shot,
        "shift_px": list(cond.shift_px),
        "conditions": {
            "fog": cond.fog,
            "rain": cond.rain,
            "night_ir": cond.night_ir,
            "visibility_m": round(cond.visibility_m, 1),
            "exposure": round(cond.exposure, 3),
            "light": round(cond.light, 3),
        },
        "violation_pixels": int(np.count_nonzero(snap.mask == 1)),
        "distractors": snap.distractors,
    }


_FORKED: tuple[World, Path] | None = None  # the world handed to forked workers


def _epoch_job(epoch: int) -> tuple[dict, list[dict]]:
    assert _FORKED is not None
    return _epoch_files(_FORKED[0], _FORKED[1], epoch)


def _render_epochs(world: World, out_dir: Path, workers: int) -> list[tuple[dict, list[dict]]]:
    """Render all epochs (in forked workers when allowed) while this process writes the vectors."""
    global _FORKED
    epochs = range(len(world.dates))
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        write_vectors(world, out_dir)
        return [_epoch_files(world, out_dir, e) for e in epochs]
    # Forked workers inherit the world and its cached rasters and camera maps for free.
    _FORKED = (world, out_dir)
    try:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            pending = pool.map_async(_epoch_job, epochs, chunksize=1)
            write_vectors(world, out_dir)
            return pending.get()
    finally:
        _FORKED = None


def generate_world(params: WorldParams, out_dir: Path, *, workers: int = 2) -> WorldSummary:
    """Generate a world from `params` and write all its files under `out_dir`.

    Files are identical byte for byte for the same parameters, whatever `workers` is
    (every part draws from its own named random stream). See simulator/README.md for the layout.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    _prepare(out_dir)
    world = build_world(params)
    static_layers(world)
    for camera in world.cameras:
        for preset in camera.presets:
            preset_view(world, preset)
    results = _render_epochs(world, out_dir, workers)
    snapshots = [shot for _, shots in results for shot in shots]
    _write_snapshot_indexes(out_dir, snapshots)
    _write_world_json(world, out_dir, [entry for entry, _ in results], snapshots)
    return WorldSummary(
        out_dir=out_dir,
        seed=params.seed,
        epochs=len(world.dates),
        tiles=len(results),
        cameras=len(world.cameras),
        snapshots=len(snapshots),
        violations=len(world.violations),
        benign=len(world.benign),
        elapsed_s=time.perf_counter() - started,
    )


def _write_snapshot_indexes(out_dir: Path, snapshots: list[dict]) -> None:
    by_preset: dict[tuple[str, str], list[dict]] = {}
    for shot in snapshots:
        by_preset.setdefault((shot["camera_id"], shot["preset"]), []).append(shot)
    for (camera_id, preset), shots in sorted(by_preset.items()):
        shots.sort(key=lambda s: s["captured_at"])
        write_json(out_dir / "cameras" / camera_id / preset / "snapshots.json", shots)


def _write_world_json(
    world: World, out_dir: Path, epochs: list[dict], snapshots: list[dict]
) -> None:
    minx, miny, maxx, maxy = world.grid.bounds
    lons, lats = to_lonlat(world.grid.crs).transform(
        [minx, maxx, minx, maxx], [miny, miny, maxy, maxy]
    )
    shots_per_camera: dict[str, int] = {}
    for shot in snapshots:
        shots_per_camera[shot["camera_id"]] = shots_per_camera.get(shot["camera_id"], 0) + 1
    cameras = []
    for camera in world.cameras:
        lon, lat = to_lonlat(world.grid.crs).transform(camera.x, camera.y)
        cameras.append(
            {
                "camera_id": camera.camera_id,
                "lon": round(lon, 8),
                "lat": round(lat, 8),
                "height_m": round(camera.height_m, 2),
                "presets": [p.preset for p in camera.presets],
                "snapshots": shots_per_camera.get(camera.camera_id, 0),
            }
        )
    params = asdict(world.params)
    write_json(
        out_dir / "world.json",
        {
            "seed": world.params.seed,
            "crs": world.grid.crs,
            "bounds": [minx, miny, maxx, maxy],
            "bounds_lonlat": [
                round(min(lons), 8),
                round(min(lats), 8),
                round(max(lons), 8),
                round(max(lats), 8),
            ],
            "pixel_size_m": world.grid.pixel_size_m,
            "size_px": [world.grid.width, world.grid.height],
            "epochs": epochs,
            "cameras": cameras,
            "counts": {
                "epochs": len(epochs),
                "cameras": len(world.cameras),
                "presets": sum(len(c.presets) for c in world.cameras),
                "snapshots": len(snapshots),
                "parcels": len(world.landscape.parcels),
                "violations": sum(not v.in_approved for v in world.violations),
                "approved_lookalikes": sum(v.in_approved for v in world.violations),
                "benign": len(world.benign),
            },
            "params": params,
            "generator": "simulator",
        },
    )
