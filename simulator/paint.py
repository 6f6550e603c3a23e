"""How each violation type looks from above: colours and textures painted into reflectance."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from rasterio import features, windows
from scipy import ndimage

from simulator.noise import rng_for, smooth_field

if TYPE_CHECKING:
    from simulator.events import Violation
    from simulator.world import World

ROOFS = {
    "shed": [(0.240, 0.220, 0.140, 0.190), (0.300, 0.310, 0.310, 0.330)],  # blue or white steel
    "house": [(0.180, 0.190, 0.190, 0.220), (0.080, 0.080, 0.140, 0.180)],  # concrete or red tile
}
_CONCRETE = (0.210, 0.230, 0.240, 0.270)
_SUBSOIL = (0.105, 0.125, 0.165, 0.190)
_FILL_SOIL = (0.130, 0.150, 0.190, 0.230)
_WATER = (0.050, 0.070, 0.060, 0.035)
_MATERIALS = [
    (0.080, 0.090, 0.160, 0.200),  # bricks
    (0.170, 0.180, 0.190, 0.220),  # gravel
    (0.200, 0.140, 0.070, 0.100),  # blue tarpaulin
    (0.050, 0.100, 0.070, 0.150),  # green dust net
    (0.070, 0.080, 0.110, 0.130),  # rusty steel
    (0.100, 0.120, 0.160, 0.240),  # timber
]
_PAD_M = 10.0


def _window(world: World, violation: Violation, epoch: int) -> windows.Window:
    extent = violation.extents[epoch]
    if extent is None:
        raise ValueError(f"{violation.id} is not present on epoch {epoch}")
    minx, miny, maxx, maxy = extent.bounds
    win = (
        windows.from_bounds(
            minx - _PAD_M, miny - _PAD_M, maxx + _PAD_M, maxy + _PAD_M, world.grid.transform
        )
        .round_offsets()
        .round_lengths()
    )
    full = windows.Window(0, 0, world.grid.width, world.grid.height)
    return win.intersection(full)


def paint_violation(out: np.ndarray, world: World, violation: Violation, epoch: int) -> None:
    """Paint one violation's extent on `epoch` into `out` (4, rows, cols), in place."""
    win = _window(world, violation, epoch)
    rows, cols = win.toslices()
    shape = (int(win.height), int(win.width))
    mask = features.rasterize(
        [(violation.extents[epoch], 1)],
        out_shape=shape,
        transform=windows.transform(win, world.grid.transform),
        fill=0,
        dtype="uint8",
    ).astype(bool)
    if not mask.any():
        return
    rng = rng_for(world.params.seed, "paint", violation.id)
    ps = world.grid.pixel_size_m
    patch = out[:, rows, cols]
    look = _look(violation, epoch, mask, rng, ps, world.landscape.angle_deg)
    patch[:, mask] = look[:, mask]
    if violation.type == "building":
        reach = max(1, round(7.0 / ps))
        cast = np.zeros_like(mask)
        for k in range(1, reach + 1):  # the shadow falls north, up the image
            cast[:-k] |= mask[k:]
        patch[:, cast & ~mask] *= 0.5
    out[:, rows, cols] = patch


def _look(
    violation: Violation,
    epoch: int,
    mask: np.ndarray,
    rng: np.random.Generator,
    ps: float,
    angle_deg: float,
) -> np.ndarray:
    """Reflectance (4, rows, cols) of the violation's material over its window."""
    shape = mask.shape
    grain = 1 + 0.04 * rng.standard_normal(shape).astype(np.float32)
    kind = violation.type
    if kind == "building":
        options = ROOFS[violation.subtype if violation.subtype in ROOFS else "house"]
        roof = np.asarray(options[violation.style % len(options)], np.float32)
        return roof[:, None, None] * _ridge_shading(shape, angle_deg)[None] * (1 + (grain - 1) / 4)
    if kind == "hardening":
        r, c = np.indices(shape)
        joints = ((r * ps) % 6 < ps) | ((c * ps) % 6 < ps)
        return np.asarray(_CONCRETE, np.float32)[:, None, None] * grain * np.where(joints, 0.9, 1.0)
    inland_m = ndimage.distance_transform_edt(mask) * ps
    depth = inland_m / max(float(inland_m.max()), 1e-6)
    if kind == "pond_digging" and epoch > violation.onset_epoch:
        water = np.asarray(_WATER, np.float32)[:, None, None] * np.ones(shape, np.float32)
        bank = np.asarray(_SUBSOIL, np.float32)[:, None, None] * grain
        return np.where((inland_m > 2.0)[None], water, bank)
    if kind in ("excavation", "pond_digging"):
        pit = 1 - 0.35 * depth
        return np.asarray(_SUBSOIL, np.float32)[:, None, None] * (pit * grain * 1.05)[None]
    if kind == "soil_piling":
        relief = smooth_field(rng, shape, scale_px=6 / ps, octaves=2)
        lit = 1 + 0.25 * np.gradient(relief, axis=1) * 3 - 0.25 * np.gradient(relief, axis=0) * 3
        return np.asarray(_FILL_SOIL, np.float32)[:, None, None] * (lit * grain)[None]
    cells = max(1, round(3.0 / ps))
    r, c = np.indices(shape) // cells
    pick = rng.integers(0, len(_MATERIALS), size=(r.max() + 1, c.max() + 1))[r, c]
    return np.asarray(_MATERIALS, np.float32)[pick].transpose(2, 0, 1) * grain


def _ridge_shading(shape: tuple[int, int], angle_deg: float) -> np.ndarray:
    """A gable roof: the slope facing away from the sun is darker."""
    r, c = np.indices(shape, dtype=np.float32)
    r -= shape[0] / 2
    c -= shape[1] / 2
    across = -c * math.sin(math.radians(angle_deg)) - r * math.cos(math.radians(angle_deg))
    return np.where(across > 0, 1.0, 0.8).astype(np.float32)
