"""What a camera preset sees of the ground: per-preset maps computed once, and the ground warp."""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import numpy as np
import shapely
from PIL import Image, ImageChops

from simulator.camera import Preset
from simulator.noise import rng_for, smooth_field
from simulator.world import World

DISTANCE_STEP_M = 2.0
DISTANCE_CODES = 4096
DETAIL_RANGE = 1.25  # detail factors up to this are stored in 0–255
TREE_LINE_DISTANCE_M = 4000.0  # haze the horizon tree line as if this far away
SWAY_FRACTION = 0.02  # tower sway moves the frame by up to 2% of its width
_DISPLAY_GAIN = 3.2  # reflectance → camera brightness before the display gamma


@dataclass(frozen=True, eq=False)
class PresetView:
    """Maps of one preset on a canvas `margin` pixels larger than the frame on every side.

    A frame is a crop of the canvas; cropping at another offset is the tower swaying.
    """

    preset: Preset
    margin: int
    canvas_size: tuple[int, int]  # (cols, rows)
    row_step_m: np.ndarray  # (rows,) ground metres from one canvas row to the next; 1e6 in the sky
    road_points: np.ndarray  # (n, 2) world x, y of places on roads where vehicles may pass
    tex_from_canvas: tuple[float, ...]  # PIL PERSPECTIVE coefficients, canvas → ground texture
    distance_code: np.ndarray  # (rows, cols) uint16, distance in DISTANCE_STEP_M steps, for LUTs
    detail_image: Image.Image  # RGB, detail factor / DETAIL_RANGE as 0–255, for a fast multiply
    sky_mask: Image.Image  # L, 255 in the sky
    tree_mask: Image.Image  # L, 255 on the far tree line
    skies: dict[bool, Image.Image]  # RGB sky with clouds, clear (False) or overcast (True)

    @property
    def horizon_row(self) -> float:
        return self.preset.horizon_row() + self.margin


def _hash_noise(x: np.ndarray, y: np.ndarray, cell_m: float) -> np.ndarray:
    """Deterministic white noise tied to ground cells, in [-1, 1] (a cheap integer hash)."""
    i = np.floor(x / np.float32(cell_m)).astype(np.int32)
    j = np.floor(y / np.float32(cell_m)).astype(np.int32)
    with np.errstate(over="ignore"):
        h = (i * np.int32(73856093)) ^ (j * np.int32(19349663))
        h = (h ^ (h >> 13)) * np.int32(1274126177)
    return ((h & 0xFFFF).astype(np.float32) / np.float32(32767.5)) - 1.0


def _ground_coordinates(
    preset: Preset, margin: int, rows: int, cols: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ground x, y (metres from the tower) and the homogeneous scale of every canvas pixel."""
    inv = np.linalg.inv(preset.ground_to_image).astype(np.float32)
    c = (np.arange(cols, dtype=np.float32) + np.float32(0.5 - margin))[None, :]
    r = (np.arange(rows, dtype=np.float32) + np.float32(0.5 - margin))[:, None]
    w = inv[2, 0] * c + inv[2, 1] * r + inv[2, 2]
    gx = (inv[0, 0] * c + inv[0, 1] * r + inv[0, 2]) / w
    gy = (inv[1, 0] * c + inv[1, 1] * r + inv[1, 2]) / w
    return gx, gy, w


def _detail(
    world: World, preset: Preset, gx: np.ndarray, gy: np.ndarray, step: np.ndarray
) -> np.ndarray:
    """Clods, grain and crop rows finer than the 1 m ground image, fading where unresolved."""
    minx, miny, _, _ = world.grid.bounds
    wx = gx + np.float32(preset.origin[0] - minx)
    wy = gy + np.float32(preset.origin[1] - miny)
    fine = _hash_noise(wx, wy, 0.12) * np.clip(1 - step / 0.12, 0, 1)
    clods = _hash_noise(wx, wy, 0.5) * np.clip(1 - step / 0.5, 0, 1)
    angle = math.radians(world.landscape.angle_deg)
    across = -wx * np.float32(math.sin(angle)) + wy * np.float32(math.cos(angle))
    stripes = np.sin(across * np.float32(2 * np.pi / 0.6)) * np.clip(1 - step / 0.3, 0, 1)
    return (1 + 0.10 * fine + 0.08 * clods) * (1 + 0.05 * stripes)


# Views live as long as their world: every preset's view is reused on every epoch.
_VIEWS: weakref.WeakKeyDictionary[World, dict[tuple[str, str], PresetView]] = (
    weakref.WeakKeyDictionary()
)


def preset_view(world: World, preset: Preset) -> PresetView:
    """Everything about a preset that does not change between snapshots (computed once)."""
    views = _VIEWS.setdefault(world, {})
    key = (preset.camera_id, preset.preset)
    if key not in views:
        views[key] = _compute_view(world, preset)
    return views[key]


def _compute_view(world: World, preset: Preset) -> PresetView:
    width, height = preset.image_size
    margin = math.ceil(SWAY_FRACTION * width)
    rows, cols = height + 2 * margin, width + 2 * margin
    gx, gy, w = _ground_coordinates(preset, margin, rows, cols)
    distance = np.hypot(gx, gy)
    horizon = preset.horizon_row() + margin
    row_index = np.arange(rows)[:, None]
    sky = (w <= 0) | (row_index < horizon - 0.5)
    distance[sky] = 1e7
    # Metres of ground per pixel row: where it exceeds a texture's scale, that texture is a blur.
    step = np.abs(np.diff(distance, axis=0, append=distance[-1:]))
    step[sky] = 1e6
    ground_rows = slice(max(0, math.floor(horizon)), rows)  # detail only below the horizon
    detail = np.ones((rows, cols), np.float32)
    detail[ground_rows] = _detail(
        world, preset, gx[ground_rows], gy[ground_rows], step[ground_rows]
    )
    rng = rng_for(world.params.seed, "view", preset.camera_id, preset.preset)
    heights = 4 + 10 * np.clip(smooth_field(rng, (1, cols), scale_px=60, octaves=3)[0] + 1, 0, 3)
    far_trees = (row_index > horizon - heights[None, :]) & (row_index <= horizon + 1)
    sky &= ~far_trees
    code_distance = np.where(far_trees, TREE_LINE_DISTANCE_M, distance) / DISTANCE_STEP_M
    clouds = smooth_field(rng, (rows // 8 + 1, cols // 8 + 1), scale_px=30, octaves=3)
    return PresetView(
        preset=preset,
        margin=margin,
        canvas_size=(cols, rows),
        row_step_m=np.median(step[:, :: max(1, cols // 16)], axis=1),
        road_points=_road_points(world, preset, rng),
        tex_from_canvas=_texture_coefficients(world, preset, margin),
        distance_code=np.clip(code_distance, 0, DISTANCE_CODES - 1).astype(np.uint16),
        detail_image=Image.fromarray(
            np.clip(detail * (255 / DETAIL_RANGE), 0, 255).astype(np.uint8)
        ).convert("RGB"),
        sky_mask=Image.fromarray(sky.astype(np.uint8) * 255),
        tree_mask=Image.fromarray(far_trees.astype(np.uint8) * 255),
        skies={
            overcast: _sky_image(horizon, clouds, (cols, rows), overcast=overcast)
            for overcast in (False, True)
        },
    )


def _sky_image(
    horizon_row: float, clouds: np.ndarray, size: tuple[int, int], *, overcast: bool
) -> Image.Image:
    """Sky brightening towards the horizon, with soft clouds; grey when overcast.

    Built at 1/8 resolution and smoothly enlarged: the sky has no fine detail.
    """
    rows = clouds.shape[0]
    scale = size[1] / rows
    centre = (np.arange(rows, dtype=np.float32) + 0.5) * scale
    t = np.clip((horizon_row - centre) / max(horizon_row, 1.0), 0, 1)[:, None, None]
    horizon = np.array([205, 210, 215] if overcast else [215, 222, 230], np.float32)
    zenith = np.array([175, 180, 188] if overcast else [95, 140, 205], np.float32)
    sky = (horizon * (1 - t) + zenith * t) * (1 + (0.02 if overcast else 0.08) * clouds[..., None])
    small = Image.fromarray(np.clip(sky, 0, 255).astype(np.uint8))
    return small.resize(size, Image.Resampling.BILINEAR)


def _texture_coefficients(world: World, preset: Preset, margin: int) -> tuple[float, ...]:
    """PIL PERSPECTIVE coefficients mapping canvas pixels to ground-texture pixels."""
    ps = world.grid.pixel_size_m
    minx, _, _, maxy = world.grid.bounds
    ox, oy = preset.origin
    tex_from_local = np.array(
        [[1 / ps, 0, (ox - minx) / ps], [0, -1 / ps, (maxy - oy) / ps], [0, 0, 1]]
    )
    canvas_from_image = np.array([[1, 0, margin], [0, 1, margin], [0, 0, 1.0]])
    m = tex_from_local @ np.linalg.inv(canvas_from_image @ preset.ground_to_image)
    m = m / m[2, 2]
    return tuple(float(v) for v in m.ravel()[:8])


def _road_points(world: World, preset: Preset, rng: np.random.Generator) -> np.ndarray:
    """Points on roads 30–600 m in front of the camera, where traffic and walkers can appear."""
    near = (
        shapely.Point(preset.origin).buffer(600).difference(shapely.Point(preset.origin).buffer(30))
    )
    zone = preset.footprint.intersection(near)
    points = []
    for line in world.landscape.lines:
        if line.kind not in ("field_road", "main_road"):
            continue
        part = line.geom.intersection(zone)
        for piece in getattr(part, "geoms", [part]):
            if piece.is_empty or piece.length < 5:
                continue
            for distance in rng.uniform(0, piece.length, size=max(1, int(piece.length // 25))):
                p = piece.interpolate(distance)
                points.append((p.x, p.y))
    # Without a road in view, farmers still walk the fields.
    while len(points) < 5 and not zone.is_empty:
        minx, miny, maxx, maxy = zone.bounds
        p = shapely.Point(rng.uniform(minx, maxx), rng.uniform(miny, maxy))
        if zone.contains(p):
            points.append((p.x, p.y))
    return np.array(points, dtype=np.float64).reshape(-1, 2)


def camera_texture(surface: np.ndarray) -> Image.Image:
    """Surface reflectance (4, rows, cols) → the RGB a camera would record, as a Pillow image."""
    lut = (255 * np.clip(np.linspace(0, 1, 1024) * 1.0, 0, 1) ** (1 / 2.2)).astype(np.uint8)
    rgb = np.empty((*surface.shape[1:], 3), dtype=np.uint8)
    for out_band, band in enumerate((2, 1, 0)):
        index = np.clip(surface[band] * (_DISPLAY_GAIN * 1023), 0, 1023).astype(np.int16)
        rgb[..., out_band] = lut[index]
    return Image.fromarray(rgb)


def _transform_rows(
    source: Image.Image, coeffs: tuple[float, ...], cols: int, rows: tuple[int, int], fill: tuple
) -> np.ndarray:
    """Warp only canvas rows [r0, r1): the same homography with the output origin moved down."""
    r0, r1 = rows
    a, b, c, d, e, f, g, h = coeffs
    norm = 1 + h * r0
    moved = tuple(v / norm for v in (a, b, c + b * r0, d, e, f + e * r0, g, h))
    warped = source.transform(
        (cols, r1 - r0),
        Image.Transform.PERSPECTIVE,
        moved,
        Image.Resampling.BILINEAR,
        fillcolor=fill,
    )
    return np.asarray(warped)


def texture_pyramid(texture: Image.Image) -> dict[int, Image.Image]:
    """The ground texture at full, 1/4 and 1/16 resolution (shared by all presets of an epoch)."""
    return {1: texture, 4: texture.reduce(4), 16: texture.reduce(16)}


def warp_ground(view: PresetView, pyramid: dict[int, Image.Image]) -> np.ndarray:
    """The ground texture as the preset sees it, on the canvas (rows, cols, 3) uint8.

    Far away one image pixel spans many ground pixels; sampling the full-resolution texture there
    would alias into moiré, so copies reduced 4× and 16× take over row band by row band as the
    ground step grows. Only the rows each level is needed for are warped.
    """
    cols, rows = view.canvas_size
    out = np.zeros((rows, cols, 3), dtype=np.uint8)
    fill = tuple(int(v) for v in np.asarray(pyramid[16]).reshape(-1, 3).mean(axis=0))
    first_ground = int(min(rows - 1, max(0, np.floor(view.horizon_row) - 1)))
    step = view.row_step_m  # no camera roll, so a row has nearly one ground step
    weights = [np.ones(rows)]  # share of each mip level per row
    for start, span in ((1.0, 2.0), (5.0, 8.0)):
        weights.append(np.clip((step - start) / span, 0, 1))
    shares = [
        weights[0] * (1 - weights[1]),
        weights[1] * (1 - weights[2]),
        weights[2],
    ]
    acc = np.zeros((rows, cols, 3), dtype=np.float32)  # blended rows only
    for level, factor in enumerate((1, 4, 16)):
        used = np.nonzero(shares[level][first_ground:] > 0)[0] + first_ground
        if used.size == 0:
            continue
        r0, r1 = int(used.min()), int(used.max()) + 1
        source = pyramid[factor]
        coeffs = tuple(c / factor for c in view.tex_from_canvas[:6]) + view.tex_from_canvas[6:]
        band = _transform_rows(source, coeffs, cols, (r0, r1), fill)
        share = shares[level][r0:r1]
        whole = share == 1
        out[r0:r1][whole] = band[whole]
        part = (share > 0) & ~whole
        acc[r0:r1][part] += band[part] * share[part, None, None].astype(np.float32)
    mixed = np.nonzero((np.max(shares, axis=0) < 1) & (np.arange(rows) >= first_ground))[0]
    out[mixed] = np.clip(acc[mixed] + 0.5, 0, 255).astype(np.uint8)
    return out


def ground_image(view: PresetView, pyramid: dict[int, Image.Image]) -> Image.Image:
    """The warped ground with fine detail and the horizon tree line, on the canvas (RGB).

    The detail multiply leaves values scaled by 1 / DETAIL_RANGE; `render_snapshot` folds the
    factor back into its light curve.
    """
    ground = Image.fromarray(warp_ground(view, pyramid))
    ground = ImageChops.multiply(ground, view.detail_image)
    trees = Image.new("RGB", ground.size, (42, 54, 40))
    return Image.composite(trees, ground, view.tree_mask)
