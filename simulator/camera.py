"""Tower cameras: placement, pinhole pose per PTZ preset, ground↔image homographies, footprints."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import LineString, Point, Polygon

FAR_M = 3000.0  # ground beyond this distance is hidden in haze and left out of masks
VIEW_M = 1200.0  # "farmland in view": where a pixel still covers less than about a metre


@dataclass(frozen=True, eq=False)
class Preset:
    """One stored pose of a tower camera.

    `ground_to_image` maps homogeneous world coordinates (x, y, 1) in the CRS (metres, relative
    to `origin`) to image pixels (col, row, 1) with pixel centres at integer + 0.5.
    """

    camera_id: str
    preset: str
    yaw_deg: float
    pitch_deg: float
    hfov_deg: float
    image_size: tuple[int, int]
    origin: tuple[float, float]
    ground_to_image: np.ndarray
    footprint: Polygon  # visible ground out to FAR_M, world CRS
    projection: np.ndarray  # 3×4, (x, y, z, 1) relative to `origin` → pixels, for raised things

    def project(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World (x, y) → image (col, row) and the depth along the optical axis (metres)."""
        pts = np.stack([x - self.origin[0], y - self.origin[1], np.ones_like(x)])
        h = self.ground_to_image @ pts.reshape(3, -1)
        shape = np.shape(x)
        return (h[0] / h[2]).reshape(shape), (h[1] / h[2]).reshape(shape), h[2].reshape(shape)

    def unproject(self, col: np.ndarray, row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Image (col, row) → world (x, y) on the ground plane."""
        inv = np.linalg.inv(self.ground_to_image)
        h = inv @ np.stack([col, row, np.ones_like(col)]).reshape(3, -1)
        shape = np.shape(col)
        x = (h[0] / h[2]).reshape(shape) + self.origin[0]
        return x, (h[1] / h[2]).reshape(shape) + self.origin[1]

    def horizon_row(self) -> float:
        """Image row of the horizon (no roll, so the same for every column)."""
        return _horizon_row(self.pitch_deg, self.hfov_deg, self.image_size)


@dataclass(frozen=True, eq=False)
class Camera:
    camera_id: str
    x: float
    y: float
    height_m: float
    presets: tuple[Preset, ...]


def camera_matrix(
    *,
    height_m: float,
    yaw_deg: float,
    pitch_deg: float,
    hfov_deg: float,
    image_size: tuple[int, int],
) -> np.ndarray:
    """3×4 pinhole projection K [R | -R C] of (x east, y north, z up, 1) in metres from the
    tower base to pixels.

    Yaw is the azimuth of the optical axis, clockwise from north; pitch is its depression below
    the horizon. Its columns 1, 2 and 4 are the ground homography (the plane z = 0).
    """
    yaw, pitch = math.radians(yaw_deg), math.radians(pitch_deg)
    forward = np.array(
        [math.sin(yaw) * math.cos(pitch), math.cos(yaw) * math.cos(pitch), -math.sin(pitch)]
    )
    right = np.array([math.cos(yaw), -math.sin(yaw), 0.0])
    down = np.cross(forward, right)
    rotation = np.stack([right, down, forward])
    width, height = image_size
    focal = width / 2 / math.tan(math.radians(hfov_deg) / 2)
    k = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1.0]])
    centre = np.array([0.0, 0.0, height_m])
    return k @ np.column_stack([rotation, -rotation @ centre])


def footprint(
    preset_h: np.ndarray,
    origin: tuple[float, float],
    image_size: tuple[int, int],
    horizon_row: float,
    *,
    far_m: float,
) -> Polygon:
    """Ground seen by the full frame, cut at `far_m` metres from the tower (world CRS)."""
    inv = np.linalg.inv(preset_h)
    width, height = image_size
    rows = np.linspace(height, max(horizon_row + 1.0, 0.0), 256)
    pts = []
    for col in (0.0, float(width)):
        h = inv @ np.stack([np.full_like(rows, col), rows, np.ones_like(rows)])
        x, y = h[0] / h[2], h[1] / h[2]
        keep = (h[2] > 0) & (np.hypot(x, y) <= far_m)
        pts.append(np.column_stack([x[keep], y[keep]]))
    ring = np.vstack([pts[0], pts[1][::-1]])
    poly = Polygon(ring + np.asarray(origin)).buffer(0)
    return shapely.normalize(poly)


def _horizon_row(pitch_deg: float, hfov_deg: float, image_size: tuple[int, int]) -> float:
    focal = image_size[0] / 2 / math.tan(math.radians(hfov_deg) / 2)
    return image_size[1] / 2 - focal * math.tan(math.radians(pitch_deg))


def _preset(
    rng: np.random.Generator,
    camera_id: str,
    number: int,
    origin: tuple[float, float],
    *,
    height_m: float,
    yaw_deg: float,
    image_size: tuple[int, int],
) -> Preset:
    pitch, hfov = float(rng.uniform(9, 14)), float(rng.uniform(52, 66))
    projection = camera_matrix(
        height_m=height_m, yaw_deg=yaw_deg, pitch_deg=pitch, hfov_deg=hfov, image_size=image_size
    )
    h = projection[:, [0, 1, 3]]
    seen = footprint(h, origin, image_size, _horizon_row(pitch, hfov, image_size), far_m=FAR_M)
    return Preset(
        camera_id, f"P{number}", yaw_deg % 360, pitch, hfov, image_size, origin, h, seen, projection
    )


def _tower_site(rng: np.random.Generator, inner: Polygon, roads: list[LineString]) -> Point:
    if not roads:
        minx, miny, maxx, maxy = inner.bounds
        return Point(rng.uniform(minx, maxx), rng.uniform(miny, maxy))
    road = roads[int(rng.integers(0, len(roads)))]
    return road.interpolate(rng.uniform(0, road.length))


def place_cameras(
    rng: np.random.Generator,
    box: Polygon,
    roads: list[LineString],
    *,
    count: int,
    presets_per_camera: int,
    image_size: tuple[int, int],
) -> list[Camera]:
    """Towers beside field roads, 40–60 m high, looking inward across the farmland.

    Towers keep apart where they can; after many tries the spacing rule is dropped so that a
    small world still gets all its cameras.
    """
    cameras: list[Camera] = []
    centre = box.centroid
    inner = box.buffer(-0.18 * math.sqrt(box.area))
    spacing = 0.45 * math.sqrt(box.area / max(count, 1))
    for attempt in range(2000):
        if len(cameras) >= count:
            break
        point = _tower_site(rng, inner, roads)
        if not inner.contains(point):
            continue
        crowded = any(math.hypot(point.x - c.x, point.y - c.y) < spacing for c in cameras)
        if crowded and attempt < 1500:
            continue
        camera_id = f"CAM-{len(cameras) + 1:03d}"
        height = float(rng.uniform(40, 60))
        inward = math.degrees(math.atan2(centre.x - point.x, centre.y - point.y))
        presets = [
            _preset(
                rng,
                camera_id,
                p + 1,
                (point.x, point.y),
                height_m=height,
                yaw_deg=inward + rng.uniform(-35, 35) + p * (360.0 / presets_per_camera),
                image_size=image_size,
            )
            for p in range(presets_per_camera)
        ]
        cameras.append(Camera(camera_id, point.x, point.y, height, tuple(presets)))
    return cameras


def control_pixels(preset: Preset, count: int = 9) -> list[tuple[float, float]]:
    """Image points spread over the ground part of the frame (3 rows × 3 columns by default)."""
    width, height = preset.image_size
    top = max(preset.horizon_row(), 0.0)
    rows = np.linspace(top + 0.3 * (height - top), height - 40, 3)
    cols = np.linspace(0.1 * width, 0.9 * width, max(2, count // 3))
    return [(float(c), float(r)) for r in rows for c in cols]
