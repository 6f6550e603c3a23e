"""Surface reflectance of the world on one epoch: land cover, crop state, texture, violations."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from rasterio import features
from shapely import affinity
from shapely.geometry import LineString
from shapely.ops import split

from simulator.calendar import ROW_CONTRAST, SPECTRA, SurfaceState
from simulator.noise import rng_for, smooth_field
from simulator.paint import paint_violation
from simulator.world import World

# Land-cover codes of the static raster; 0 = a parcel (its crop state decides), 1 = grass verge.
COVER = {"parcel": 0, "grass": 1, "field_road": 2, "main_road": 3, "ditch": 4, "tree_line": 5}
COVER |= {"river": 6, "pond": 7, "village": 8, "roof": 9}
_COVER_SPECTRA = {
    2: (0.160, 0.170, 0.180, 0.220),
    3: (0.080, 0.090, 0.100, 0.120),
    4: (0.050, 0.070, 0.050, 0.120),
    5: (0.030, 0.055, 0.035, 0.330),
    6: (0.060, 0.075, 0.060, 0.035),
    7: (0.050, 0.080, 0.060, 0.040),
    8: (0.110, 0.120, 0.130, 0.180),
}
ROOF_SPECTRA = {
    "grey_tile": (0.080, 0.085, 0.090, 0.110),
    "red_tile": (0.070, 0.070, 0.120, 0.160),
    "white_concrete": (0.250, 0.260, 0.260, 0.300),
    "blue_metal": (0.220, 0.200, 0.130, 0.170),
}
# Period (metres) of the visible row, bed, hedge or tunnel pattern of each crop.
_ROW_PERIOD = {"paddy": 3.0, "vegetable": 2.2, "tea": 2.6, "orchard": 4.5, "fallow": 7.0}
_ROW_PERIOD["greenhouse"] = 8.0


@dataclass(frozen=True, eq=False)
class StaticLayers:
    """Rasters of the parts that do not change, on the tile grid."""

    parcel_index: np.ndarray  # (rows, cols) int32, -1 outside parcels
    cover: np.ndarray  # (rows, cols) uint8, COVER codes
    pattern: np.ndarray  # (rows, cols) float32 in [-1, 1], crop rows
    gain: np.ndarray  # (rows, cols) float32, field-to-field and within-field brightness
    shade: np.ndarray  # (rows, cols) float32, shadows of houses and tree lines
    static_refl: np.ndarray  # (4, rows, cols) float32, reflectance where cover >= 2


def pixel_centres(world: World) -> tuple[np.ndarray, np.ndarray]:
    """World x of every column and y of every row, at pixel centres (metres)."""
    t, g = world.grid.transform, world.grid
    xs = (t.c + (np.arange(g.width, dtype=np.float64) + 0.5) * t.a).astype(np.float32)
    ys = (t.f + (np.arange(g.height, dtype=np.float64) + 0.5) * t.e).astype(np.float32)
    return xs, ys


def _rasterize(shapes: list, world: World, *, fill: int, dtype: str) -> np.ndarray:
    shape = (world.grid.height, world.grid.width)
    if not shapes:
        return np.full(shape, fill, dtype=dtype)
    return features.rasterize(
        shapes, out_shape=shape, transform=world.grid.transform, fill=fill, dtype=dtype
    )


def _roof_halves(world: World) -> list[tuple]:
    """Each roof split along its ridge, so one slope can be drawn in shade."""
    halves = []
    for i, house in enumerate(world.landscape.houses):
        c = house.geom.centroid
        ridge = affinity.rotate(
            LineString([(c.x - 30, c.y), (c.x + 30, c.y)]), world.landscape.angle_deg, origin=c
        )
        for j, half in enumerate(
            sorted(split(house.geom, ridge).geoms, key=lambda g: g.centroid.y)
        ):
            halves.append((half, 2 * i + j + 1))
    return halves


@functools.lru_cache(maxsize=2)
def static_layers(world: World) -> StaticLayers:
    """Rasterise the landscape once per world (cached for the two most recent worlds)."""
    land, rng = world.landscape, rng_for(world.params.seed, "static")
    parcel_index = _rasterize(
        [(p.geom, i) for i, p in enumerate(land.parcels)], world, fill=-1, dtype="int32"
    )
    shapes = [(p.geom, 0) for p in land.parcels]
    shapes += [(f.geom.buffer(f.width_m / 2, cap_style="flat"), COVER[f.kind]) for f in land.lines]
    shapes += [(land.river, COVER["river"])] if land.river is not None else []
    shapes += [(p, COVER["pond"]) for p in land.ponds] + [
        (v, COVER["village"]) for v in land.village_areas
    ]
    shapes += [(h.geom, COVER["roof"]) for h in land.houses]
    cover = _rasterize(shapes, world, fill=COVER["grass"], dtype="uint8")
    roof_half = _rasterize(_roof_halves(world), world, fill=0, dtype="int32")

    xs, ys = pixel_centres(world)
    cx, cy = world.grid.box.centroid.x, world.grid.box.centroid.y
    cos, sin = math.cos(math.radians(land.angle_deg)), math.sin(math.radians(land.angle_deg))
    u = (xs[None, :] - cx) * cos + (ys[:, None] - cy) * sin
    v = -(xs[None, :] - cx) * sin + (ys[:, None] - cy) * cos
    pattern = _row_pattern(world, parcel_index, u, v)

    shape = cover.shape
    ps = world.grid.pixel_size_m
    parcel_gain = np.append(rng.normal(1.0, 0.05, len(land.parcels)), 1.0).astype(np.float32)
    gain = parcel_gain[parcel_index] * (1 + 0.06 * smooth_field(rng, shape, scale_px=40 / ps))
    gain *= 1 + 0.03 * rng.standard_normal(shape, dtype=np.float32)

    static_refl = np.zeros((4, *shape), dtype=np.float32)
    for code, spectrum in _COVER_SPECTRA.items():
        static_refl[:, cover == code] = np.asarray(spectrum, dtype=np.float32)[:, None]
    village = cover == COVER["village"]
    trees = village & (smooth_field(rng, shape, scale_px=12 / ps, octaves=2) > 0.9)
    static_refl[:, trees | (cover == COVER["tree_line"])] = np.asarray(_COVER_SPECTRA[5])[:, None]
    crowns = 1 + 0.25 * np.sin(u * 1.3) * np.sin(v * 1.3)
    static_refl[:, trees | (cover == COVER["tree_line"])] *= crowns[
        trees | (cover == COVER["tree_line"])
    ]
    roofs = np.array(
        [ROOF_SPECTRA[h.roof] for h in land.houses for _ in (0, 1)] or [(0, 0, 0, 0)], np.float32
    )
    on_roof = roof_half > 0
    lit = np.where(roof_half % 2 == 0, 0.82, 1.0).astype(np.float32)
    static_refl[:, on_roof] = roofs[roof_half[on_roof] - 1].T * lit[on_roof]

    shade = np.ones(shape, dtype=np.float32)
    for mask, length_m in ((on_roof, 6.0), (cover == COVER["tree_line"], 5.0)):
        reach = max(1, round(length_m / ps))
        cast = np.zeros_like(mask)
        cast[:-reach] = mask[reach:]  # shadows fall north (up the image) under a southern sun
        shade[cast & ~mask] = 0.55
    return StaticLayers(parcel_index, cover, pattern, gain.astype(np.float32), shade, static_refl)


def _row_pattern(
    world: World, parcel_index: np.ndarray, u: np.ndarray, v: np.ndarray
) -> np.ndarray:
    """Crop rows run along each parcel's longer side; the pattern varies across them."""
    land = world.landscape
    along_u, period = [], []
    for p in land.parcels:
        minx, miny, maxx, maxy = affinity.rotate(p.geom, -land.angle_deg, origin=(0, 0)).bounds
        along_u.append(maxx - minx >= maxy - miny)
        period.append(_ROW_PERIOD[p.crop])
    along_u_px = np.append(np.array(along_u), True)[parcel_index]
    period_px = np.append(np.array(period, np.float32), 1e6)[parcel_index]
    across = np.where(along_u_px, v, u)
    phase = np.mod(across / period_px, 1.0)
    pattern = np.sin(2 * np.pi * phase)
    tunnels = np.where(phase < 0.8, 1.0 - 2.0 * np.abs(phase - 0.4), -1.0)  # film arch, then gap
    greenhouse = np.append(np.array([p.crop == "greenhouse" for p in land.parcels]), False)
    pattern = np.where(greenhouse[parcel_index], tunnels, pattern)
    orchard = np.append(np.array([p.crop == "orchard" for p in land.parcels]), False)
    crowns = np.sin(2 * np.pi * u / 4.5) * np.sin(2 * np.pi * v / 4.5)
    pattern = np.where(orchard[parcel_index], crowns, pattern)
    return np.where(parcel_index >= 0, pattern, 0).astype(np.float32)


def background_state(world: World, epoch: int) -> SurfaceState:
    doy = world.dates[epoch].timetuple().tm_yday
    return SurfaceState.grass_green if 100 <= doy < 290 else SurfaceState.grass_dry


def render_surface(world: World, epoch: int) -> np.ndarray:
    """Surface reflectance on one epoch, before atmosphere and sensor.

    Returns
    -------
    ndarray of shape (4, rows, cols), float32
        Blue, green, red and near-infrared reflectance, fraction (0–1).
    """
    st = static_layers(world)
    lookup = np.append(world.states[:, epoch], background_state(world, epoch)).astype(np.int16)
    state_px = lookup[st.parcel_index]  # index -1 (outside parcels) picks the background
    texture = (1 + ROW_CONTRAST[state_px] * st.pattern) * st.gain * st.shade
    is_static = st.cover >= 2
    out = np.empty((4, *state_px.shape), dtype=np.float32)
    for band in range(4):
        dynamic = SPECTRA[:, band][state_px] * texture
        out[band] = np.where(is_static, st.static_refl[band] * st.shade, dynamic)
    for violation in world.violations:
        if violation.extents[epoch] is not None:
            paint_violation(out, world, violation, epoch)
    return out


def truth_mask(world: World, epoch: int) -> np.ndarray:
    """Violations present on `epoch`: 1 = violation, 2 = look-alike inside approved land.

    Returns
    -------
    ndarray of shape (rows, cols), uint8
    """
    shapes = [
        (v.extents[epoch], 2 if v.in_approved else 1)
        for v in world.violations
        if v.extents[epoch] is not None
    ]
    return _rasterize(shapes, world, fill=0, dtype="uint8")
