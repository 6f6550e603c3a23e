"""Tower-camera snapshots (light, sky, haze, weather, sway, passers-by, timestamp) and masks."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import shapely
from affine import Affine
from PIL import Image, ImageChops, ImageDraw, ImageFont
from rasterio import features

from simulator.camera import Preset
from simulator.camera_timeline import seasonal_ground, shot_day
from simulator.noise import rng_for
from simulator.paint import ROOFS
from simulator.view import (
    DETAIL_RANGE,
    DISTANCE_CODES,
    DISTANCE_STEP_M,
    PresetView,
    camera_texture,
    ground_image,
    preset_view,
    texture_pyramid,
)
from simulator.world import World

LOCAL = timezone(timedelta(hours=8))
_VEHICLE_COLOURS = [(235, 235, 232), (180, 182, 186), (40, 42, 48), (170, 30, 35), (30, 70, 150)]
_VEHICLE_COLOURS += [(60, 110, 170), (215, 120, 30)]
_CLOTHES = [
    (30, 60, 140),
    (200, 200, 200),
    (150, 40, 40),
    (40, 40, 40),
    (90, 120, 60),
    (230, 170, 40),
]


@dataclass(frozen=True)
class Conditions:
    """The weather, light and camera state of one snapshot."""

    captured_at: datetime  # UTC
    light: float  # scene brightness, 1 = midday sun
    tint: tuple[float, float, float]  # colour of the light
    visibility_m: float
    fog: bool
    rain: bool
    night_ir: bool
    exposure: float  # 1 = correct; exposure jumps are far from 1
    shift_px: tuple[int, int]  # (cols, rows) the content moved by, against the calibration


@dataclass(frozen=True, eq=False)
class Snapshot:
    """One rendered frame and its ground truth.

    Attributes
    ----------
    image : ndarray of shape (rows, cols, 3), uint8
    mask : ndarray of shape (rows, cols), uint8
        1 = violation visible, 2 = look-alike inside approved land (legal), 0 = other.
    distractors : list of dict
        Passing vehicles and people: {"kind", "bbox": [col0, row0, col1, row1]}.
    """

    camera_id: str
    preset: str
    epoch: int
    shot: int
    image: np.ndarray
    mask: np.ndarray
    conditions: Conditions
    distractors: list[dict] = field(default_factory=list)

    @property
    def stem(self) -> str:
        return self.conditions.captured_at.strftime("%Y%m%dT%H%M%SZ")


def capture_time(world: World, preset: Preset, epoch: int, shot: int) -> tuple[datetime, bool]:
    """Local capture time of a snapshot (UTC) and whether it is a night (IR) frame."""
    rng = rng_for(world.params.seed, "shot-time", preset.camera_id, preset.preset, epoch, shot)
    days_before, slot = shot_day(world, epoch, shot)
    times = world.params.snapshot_times_local
    hh, mm = (int(v) for v in times[min(slot, len(times) - 1)].split(":"))
    extra = 6 * max(0, slot - len(times) + 1)  # beyond the listed times: every 6 minutes
    night = rng.random() < 0.08
    day = world.dates[epoch] - timedelta(days=days_before)
    local = datetime(day.year, day.month, day.day, hh, mm, tzinfo=LOCAL)
    local += timedelta(minutes=extra + int(rng.integers(0, 3)), seconds=int(rng.integers(0, 60)))
    if night:
        local = local.replace(hour=21 + slot % 2)
    return local.astimezone(UTC), night


def conditions(world: World, preset: Preset, epoch: int, shot: int) -> Conditions:
    rng = rng_for(world.params.seed, "shot", preset.camera_id, preset.preset, epoch, shot)
    captured, night = capture_time(world, preset, epoch, shot)
    hour = captured.astimezone(LOCAL).hour + captured.astimezone(LOCAL).minute / 60
    sun = max(0.05, math.sin(math.pi * (hour - 6) / 12.5))
    warm = max(0.0, 1 - sun * 1.6)  # low sun: warmer light
    fog = (not night) and hour < 11 and rng.random() < 0.25
    rain = (not fog) and rng.random() < 0.1
    margin = math.ceil(0.02 * preset.image_size[0])
    calm = rng.random() < 0.6
    sway = (0, 0) if calm else tuple(int(v) for v in rng.integers(-margin, margin + 1, size=2))
    exposure = (
        float(rng.choice([0.55, 1.7])) if rng.random() < 0.08 else float(rng.uniform(0.92, 1.08))
    )
    visibility = (
        rng.uniform(120, 400)
        if fog
        else rng.uniform(700, 1500)
        if rain
        else rng.uniform(2500, 9000)
    )
    return Conditions(
        captured_at=captured,
        light=0.55 + 0.45 * sun if not rain else 0.55,
        tint=(1 + 0.12 * warm, 1 + 0.02 * warm, 1 - 0.15 * warm),
        visibility_m=float(visibility),
        fog=fog,
        rain=rain,
        night_ir=night,
        exposure=exposure,
        shift_px=(int(sway[0]), int(sway[1])),
    )


@functools.cache
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


@functools.lru_cache(maxsize=4)
def _noise_image(seed: int, size: tuple[int, int], sigma: float) -> Image.Image:
    """Sensor noise around 128, drawn once; each frame crops it at a random offset."""
    rng = rng_for(seed, "sensor-noise", int(sigma * 10))
    noise = 128 + rng.standard_normal((size[1] + 64, size[0] + 64, 3), dtype=np.float32) * sigma
    return Image.fromarray(np.clip(noise, 0, 255).astype(np.uint8))


def _gain_lut(gains: tuple[float, ...]) -> list[int]:
    ramp = np.arange(256, dtype=np.float32)
    return [int(v) for g in gains for v in np.clip(ramp * g + 0.5, 0, 255)]


def render_snapshot(
    world: World, preset: Preset, epoch: int, shot: int, *, ground: Image.Image | None = None
) -> Snapshot:
    """Render one camera frame and its violation mask.

    Parameters
    ----------
    ground : PIL.Image.Image, optional
        `ground_image` of this preset and epoch (the writer computes it once for all shots).

    Notes
    -----
    Every step is a crop, a lookup table or a Pillow composite on 8-bit images, so a 1080p frame
    costs tens of milliseconds; the heavy per-pixel work sits in `preset_view` (once per preset)
    and `ground_image` (once per preset and epoch).
    """
    view = preset_view(world, preset)
    if ground is None:
        from simulator.surface import render_surface

        texture = camera_texture(render_surface(world, epoch))
        ground = ground_image(view, texture_pyramid(texture))
    ground = seasonal_ground(world, view, epoch, shot, ground)
    cond = conditions(world, preset, epoch, shot)
    rng = rng_for(world.params.seed, "shot-draw", preset.camera_id, preset.preset, epoch, shot)
    width, height = preset.image_size
    left, top = view.margin - cond.shift_px[0], view.margin - cond.shift_px[1]
    box = (left, top, left + width, top + height)

    light = cond.light * cond.exposure
    frame = ground.crop(box).point(_gain_lut(tuple(DETAIL_RANGE * light * t for t in cond.tint)))
    haze_colour = (200, 206, 212) if (cond.fog or cond.rain) else (190, 200, 214)
    weights = 255 * (1 - np.exp(-np.arange(DISTANCE_CODES) * DISTANCE_STEP_M / cond.visibility_m))
    codes = view.distance_code[top : top + height, left : left + width]
    haze = Image.fromarray(weights.astype(np.uint8)[codes])
    veil = Image.new("RGB", frame.size, tuple(int(min(255, c * light)) for c in haze_colour))
    frame = Image.composite(veil, frame, haze)
    sky_gain = min(1.0, cond.light + 0.2) * cond.exposure
    sky = view.skies[cond.fog or cond.rain].crop(box).point(_gain_lut((sky_gain,) * 3))
    frame = Image.composite(sky, frame, view.sky_mask.crop(box))
    _draw_structures(frame, world, view, cond, epoch, tuple(c * light for c in haze_colour))
    if cond.night_ir:  # IR illuminator: grey, the near ground lit, the sky black
        frame = frame.convert("L").point(lambda v: int(v * 0.7 + 12)).convert("RGB")
        night_sky = Image.new("RGB", frame.size, (22, 22, 22))
        frame = Image.composite(night_sky, frame, view.sky_mask.crop(box))
    sigma = 9.0 if cond.night_ir else 3.0
    noise = _noise_image(world.params.seed, (width, height), sigma)
    dx, dy = (int(v) for v in rng.integers(0, 64, size=2))
    frame = ImageChops.add(frame, noise.crop((dx, dy, dx + width, dy + height)), 1.0, -128)
    distractors = _draw_passers_by(frame, view, cond, rng)
    if cond.rain:
        frame = _rain(frame, rng)
    _timestamp(frame, cond, preset)
    return Snapshot(
        camera_id=preset.camera_id,
        preset=preset.preset,
        epoch=epoch,
        shot=shot,
        image=np.asarray(frame),
        mask=snapshot_mask(world, preset, epoch, cond.shift_px),
        conditions=cond,
        distractors=distractors,
    )


_WALLS = {"shed": (0.20, 0.21, 0.22), "house": (0.30, 0.30, 0.28)}  # blue, green, red
_STOREY_M = {"shed": 4.0, "house": 7.5}
_TOWARDS_SUN = np.array([0.53, -0.85])  # ground direction to a south-south-east sun


def _display(blue_green_red: tuple[float, ...] | np.ndarray) -> np.ndarray:
    """Reflectance (blue, green, red) → 8-bit RGB the way `camera_texture` renders the ground."""
    rgb = np.asarray(blue_green_red, dtype=np.float64)[2::-1]
    return 255 * np.clip(rgb * 3.2, 0, 1) ** (1 / 2.2)


def _draw_structures(
    frame: Image.Image, world: World, view: PresetView, cond: Conditions, epoch: int, haze: tuple
) -> None:
    """New buildings and sheds rise from their footprint: walls facing the camera, then the roof.

    The masks stay the ground footprint (the agreed definition); walls and roofs drawn here may
    reach a little above it in the frame, as real buildings do.
    """
    preset = view.preset
    origin = np.asarray(preset.origin)
    light = np.asarray(cond.tint) * cond.light * cond.exposure
    found = []
    for v in world.violations:
        extent = v.extents[epoch]
        if v.type == "building" and extent is not None and extent.intersects(preset.footprint):
            ring = np.asarray(shapely.normalize(extent).exterior.coords)[:-1] - origin  # clockwise
            found.append((float(np.hypot(*ring.mean(axis=0))), v, ring))
    draw = ImageDraw.Draw(frame)
    for distance, v, ring in sorted(found, key=lambda item: -item[0]):
        kind = v.subtype if v.subtype in _STOREY_M else "house"
        n = len(ring)
        corners = np.vstack([np.c_[ring, np.zeros(n)], np.c_[ring, np.full(n, _STOREY_M[kind])]])
        uvw = preset.projection @ np.c_[corners, np.ones(2 * n)].T
        if (uvw[2] <= 1).any():
            continue
        pixels = (uvw[:2] / uvw[2]).T + np.asarray(cond.shift_px)
        veil = 1 - math.exp(-distance / cond.visibility_m)

        def paint(reflectance: tuple[float, ...], shade: float, veil: float = veil) -> tuple:
            rgb = _display(reflectance) * shade * light
            return tuple(
                int(c) for c in np.clip(rgb * (1 - veil) + np.asarray(haze) * veil, 0, 255)
            )

        walls = []
        for i in range(n):
            j = (i + 1) % n
            edge, middle = ring[j] - ring[i], (ring[i] + ring[j]) / 2
            outward = np.array([-edge[1], edge[0]]) / max(float(np.hypot(*edge)), 1e-9)
            if outward @ -middle > 0:  # the wall faces the tower
                lit = 0.6 + 0.4 * max(0.0, float(outward @ _TOWARDS_SUN))
                quad = [pixels[i], pixels[j], pixels[n + j], pixels[n + i]]
                walls.append((float(np.hypot(*middle)), quad, lit))
        for _, quad, lit in sorted(walls, key=lambda w: -w[0]):
            draw.polygon([tuple(p) for p in quad], fill=paint(_WALLS[kind], lit))
        roof = ROOFS[kind][v.style % len(ROOFS[kind])]
        draw.polygon([tuple(p) for p in pixels[n:]], fill=paint(roof, 1.0))


def _draw_passers_by(
    frame: Image.Image, view: PresetView, cond: Conditions, rng: np.random.Generator
) -> list[dict]:
    """Vehicles and people on the roads in view: in most frames, never in the masks."""
    points = view.road_points
    if len(points) == 0:
        return []
    preset = view.preset
    draw = ImageDraw.Draw(frame)
    count = int(rng.integers(1, 5)) if rng.random() < 0.85 else 0
    found = []
    for i in rng.choice(len(points), size=min(count, len(points)), replace=False):
        col, row, depth = preset.project(points[i : i + 1, 0], points[i : i + 1, 1])
        focal = preset.image_size[0] / 2 / math.tan(math.radians(preset.hfov_deg) / 2)
        scale = focal / float(depth[0])  # pixels per metre at that distance
        u, v = float(col[0]) + cond.shift_px[0], float(row[0]) + cond.shift_px[1]
        person = rng.random() < 0.45
        kind = "person" if person else str(rng.choice(["car", "truck", "tricycle"]))
        dims = {
            "person": (0.5, 1.7),
            "car": (4.4, 1.5),
            "truck": (6.0, 2.6),
            "tricycle": (2.8, 1.6),
        }
        w, h = (d * scale for d in dims[kind])
        if not person and rng.random() < 0.4:
            w *= 0.45  # seen from the front or back
        box = [u - w / 2, v - h, u + w / 2, v]
        if h < 4 or box[2] < 0 or box[0] > frame.width or box[3] < 0 or box[1] > frame.height:
            continue
        dim = 0.4 if cond.night_ir else 1.0
        if person:
            _person(draw, box, _CLOTHES[int(rng.integers(0, len(_CLOTHES)))], dim)
        else:
            _vehicle(draw, box, _VEHICLE_COLOURS[int(rng.integers(0, len(_VEHICLE_COLOURS)))], dim)
        found.append({"kind": kind, "bbox": [round(b, 1) for b in box]})
    return found


def _shade(colour: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    return tuple(int(min(255, c * factor)) for c in colour)  # type: ignore[return-value]


def _vehicle(draw: ImageDraw.ImageDraw, box: list[float], colour: tuple, dim: float) -> None:
    x0, y0, x1, y1 = box
    h = y1 - y0
    draw.rectangle([x0, y0 + 0.35 * h, x1, y1 - 0.12 * h], fill=_shade(colour, dim))
    draw.rectangle(
        [x0 + 0.15 * (x1 - x0), y0, x1 - 0.2 * (x1 - x0), y0 + 0.4 * h],
        fill=_shade(colour, 0.9 * dim),
    )
    draw.rectangle(
        [x0 + 0.2 * (x1 - x0), y0 + 0.06 * h, x1 - 0.25 * (x1 - x0), y0 + 0.34 * h],
        fill=(35, 40, 48),
    )
    r = 0.14 * h
    for cx in (x0 + 0.2 * (x1 - x0), x1 - 0.2 * (x1 - x0)):
        draw.ellipse([cx - r, y1 - 2 * r, cx + r, y1], fill=(20, 20, 20))


def _person(draw: ImageDraw.ImageDraw, box: list[float], colour: tuple, dim: float) -> None:
    x0, y0, x1, y1 = box
    h, cx = y1 - y0, (x0 + x1) / 2
    head = 0.08 * h
    draw.ellipse([cx - head, y0, cx + head, y0 + 2 * head], fill=_shade((180, 140, 110), dim))
    draw.rectangle([x0, y0 + 2 * head, x1, y0 + 0.6 * h], fill=_shade(colour, dim))
    draw.rectangle(
        [x0 + 0.15 * (x1 - x0), y0 + 0.6 * h, x1 - 0.15 * (x1 - x0), y1],
        fill=_shade((45, 45, 55), dim),
    )


def _rain(frame: Image.Image, rng: np.random.Generator) -> Image.Image:
    overlay = Image.new("RGBA", frame.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    n = 500
    xs, ys = rng.uniform(0, frame.width, n), rng.uniform(0, frame.height, n)
    lengths = rng.uniform(15, 45, n)
    for x, y, length in zip(xs, ys, lengths, strict=True):
        draw.line([(x, y), (x + 0.25 * length, y + length)], fill=(215, 220, 228, 70), width=2)
    return Image.alpha_composite(frame.convert("RGBA"), overlay).convert("RGB")


def _timestamp(frame: Image.Image, cond: Conditions, preset: Preset) -> None:
    draw = ImageDraw.Draw(frame)
    size = max(12, frame.height // 30)
    local = cond.captured_at.astimezone(LOCAL)
    label = f"{preset.camera_id} {preset.preset}"
    for xy, text in (
        ((size, size), local.strftime("%Y-%m-%d %H:%M:%S")),
        ((frame.width - size * (len(label) // 2 + 4), frame.height - 2 * size), label),
    ):
        draw.text(
            xy, text, font=_font(size), fill=(255, 255, 255), stroke_width=2, stroke_fill=(0, 0, 0)
        )


def snapshot_mask(
    world: World, preset: Preset, epoch: int, shift_px: tuple[int, int]
) -> np.ndarray:
    """Violations present on `epoch`, projected through the preset's homography into the frame.

    Ground polygons are clipped to the visible footprint first (points behind the camera have no
    image), then their vertices go through the homography and are rasterised (pixel centres).
    """
    width, height = preset.image_size
    shapes = []
    for violation in world.violations:
        extent = violation.extents[epoch]
        if extent is None or not extent.intersects(preset.footprint):
            continue
        seen = extent.intersection(preset.footprint)
        image_geom = shapely.transform(seen, lambda xy: _to_frame(preset, xy, shift_px))
        shapes.append((image_geom, 2 if violation.in_approved else 1))
    if not shapes:
        return np.zeros((height, width), np.uint8)
    return features.rasterize(
        shapes, out_shape=(height, width), transform=Affine.identity(), fill=0, dtype="uint8"
    )


def _to_frame(preset: Preset, xy: np.ndarray, shift_px: tuple[int, int]) -> np.ndarray:
    col, row, _ = preset.project(xy[:, 0], xy[:, 1])
    return np.column_stack([col + shift_px[0], row + shift_px[1]])
