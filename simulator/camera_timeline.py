"""When a tower camera shoots within an epoch, and how the ground turns between two epochs."""

from __future__ import annotations

import functools
import itertools

import numpy as np
import shapely
from affine import Affine
from PIL import Image, ImageFilter
from rasterio import features
from shapely.geometry.base import BaseGeometry

from simulator.camera import Preset
from simulator.view import PresetView, camera_texture, ground_image, preset_view, texture_pyramid
from simulator.world import World

# Switch raster values: 0 = no event (blended), 1 = this epoch's ground from the first snapshot
# (violations), k + 1 = this epoch's ground from snapshot k on (farm work on its day).
_BLENDED = 0


def camera_days(world: World, epoch: int) -> int:
    """Days before (and including) the epoch date that carry its snapshots, never reaching back
    to the previous epoch's date."""
    gaps = [(later - earlier).days for earlier, later in itertools.pairwise(world.dates)]
    gap = gaps[epoch - 1] if epoch > 0 else (gaps[0] if gaps else 365)
    wanted = min(world.params.camera_days_per_epoch, world.params.snapshots_per_epoch)
    return max(1, min(wanted, gap))


def shot_day(world: World, epoch: int, shot: int) -> tuple[int, int]:
    """(days before the epoch date, slot within that day) of a snapshot.

    Snapshots are shared out over the days in order, so a day holds consecutive snapshots.
    """
    total, days = world.params.snapshots_per_epoch, camera_days(world, epoch)
    day = shot * days // total
    first_of_day = -(-day * total // days)
    return days - 1 - day, shot - first_of_day


def crop_progress(world: World, epoch: int, shot: int) -> float:
    """How far slow change (growth, greening, browning) has gone from the previous epoch's
    state to this one's at a snapshot, fraction; the last snapshot shows the epoch's state."""
    if epoch == 0:
        return 1.0
    return (shot + 1) / world.params.snapshots_per_epoch


def switch_shot(world: World, epoch: int, onset_days: int) -> int:
    """The snapshot of `epoch` from which farm work done `onset_days` after the previous epoch's
    date shows: the epoch's snapshots stand for the whole interval, in order."""
    gap = max(1, (world.dates[epoch] - world.dates[epoch - 1]).days)
    total = world.params.snapshots_per_epoch
    return min(total - 1, max(0, (onset_days - 1) * total // gap))


def seasonal_ground(
    world: World, view: PresetView, epoch: int, shot: int, ground: Image.Image
) -> Image.Image:
    """The ground of one snapshot between the previous epoch's state and this one's.

    Slow change is blended snapshot by snapshot, so consecutive frames differ a little, as for
    a camera shooting every few hours. Farm work on a parcel (harvest, ploughing, flooding, a
    new crop) happens on one day: the parcel keeps its old look until the snapshot standing for
    that day, then shows the new one. Violations appear whole at the first snapshot of the
    epoch (building works take a day or two) and never fade in.
    """
    if crop_progress(world, epoch, shot) >= 1.0:
        return ground
    before = _epoch_ground(world, view.preset, epoch - 1)
    mixed = Image.blend(before, ground, crop_progress(world, epoch, shot))
    switches = _switch_canvas(world, view, epoch)
    lut = [255 if _BLENDED < v <= shot + 1 else 0 for v in range(256)]
    mixed = Image.composite(ground, mixed, switches.point(lut))
    waiting = [255 if v > shot + 1 else 0 for v in range(256)]
    return Image.composite(before, mixed, switches.point(waiting))


@functools.lru_cache(maxsize=2)
def _epoch_pyramid(world: World, epoch: int) -> dict[int, Image.Image]:
    from simulator.surface import render_surface

    return texture_pyramid(camera_texture(render_surface(world, epoch)))


@functools.lru_cache(maxsize=4)
def _epoch_ground(world: World, preset: Preset, epoch: int) -> Image.Image:
    return ground_image(preset_view(world, preset), _epoch_pyramid(world, epoch))


def _on_canvas(view: PresetView, geometry: BaseGeometry) -> BaseGeometry:
    preset, margin = view.preset, view.margin

    def to_canvas(xy: np.ndarray) -> np.ndarray:
        col, row, _ = preset.project(xy[:, 0], xy[:, 1])
        return np.column_stack([col + margin, row + margin])

    return shapely.transform(geometry.intersection(preset.footprint), to_canvas)


@functools.lru_cache(maxsize=4)
def _switch_canvas(world: World, view: PresetView, epoch: int) -> Image.Image:
    """L raster (canvas) of when each place takes this epoch's look (see ``_BLENDED``); violations
    are widened a little to cover the soft edges the texture warp gives them."""
    footprint = view.preset.footprint
    farm_work, works = [], []
    for event in world.benign:
        if event.onset_epoch == epoch and event.geom.intersects(footprint):
            days = (event.onset - world.dates[epoch - 1]).days
            farm_work.append((_on_canvas(view, event.geom), switch_shot(world, epoch, days) + 1))
    for violation in world.violations:
        for extent in (violation.extents[epoch - 1], violation.extents[epoch]):
            if extent is not None and extent.intersects(footprint):
                works.append(_on_canvas(view, extent))
    cols, rows = view.canvas_size
    raster = np.full((rows, cols), _BLENDED, np.uint8)
    if farm_work:
        raster = _rasterize(farm_work, (rows, cols))
    if works:
        standing = Image.fromarray(_rasterize([(g, 255) for g in works], (rows, cols)))
        raster[np.asarray(standing.filter(ImageFilter.MaxFilter(5))) > 0] = 1
    return Image.fromarray(raster)


def _rasterize(shapes: list, shape: tuple[int, int]) -> np.ndarray:
    return features.rasterize(
        shapes, out_shape=shape, transform=Affine.identity(), fill=_BLENDED, dtype="uint8"
    )
