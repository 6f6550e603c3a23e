"""Control points of a synthetic tower camera: a pinhole 50 m up, pitched 12° down, facing north."""

from __future__ import annotations

import math

from pyproj import Transformer
from sqlalchemy.orm import Session

from models.camera import CameraPreset
from service.cameras.registry import register_camera, register_preset

WIDTH, HEIGHT = 1920, 1080
TOWER = (120.02, 30.42)  # lon, lat
_HEIGHT_M, _PITCH, _HFOV = 50.0, math.radians(12), math.radians(60)
_TO_UTM = Transformer.from_crs(4326, 32651, always_xy=True)
_TO_LONLAT = Transformer.from_crs(32651, 4326, always_xy=True)


def ground_of(col: float, row: float) -> tuple[float, float]:
    """(lon, lat) of the ground seen at a full-resolution pixel."""
    focal = (WIDTH / 2) / math.tan(_HFOV / 2)
    x, y = (col - WIDTH / 2) / focal, (row - HEIGHT / 2) / focal
    along = math.sin(_PITCH) + y * math.cos(_PITCH)
    distance = _HEIGHT_M / along
    east, north = distance * x, distance * (math.cos(_PITCH) - y * math.sin(_PITCH))
    x0, y0 = _TO_UTM.transform(*TOWER)
    lon, lat = _TO_LONLAT.transform(x0 + east, y0 + north)
    return lon, lat


def control_points(
    pixels: list[tuple[float, float]] | None = None, *, shift_m: dict[int, float] | None = None
) -> list[dict[str, object]]:
    """Points on a 3×3 grid over the ground part of the image (or at `pixels`); `shift_m`
    moves point i that many metres east, as a mis-measured point would be."""
    pixels = pixels or [(c, r) for r in (700, 850, 1000) for c in (300, 960, 1620)]
    points = []
    for index, (col, row) in enumerate(pixels):
        lon, lat = ground_of(col, row)
        if shift_m and index in shift_m:
            x, y = _TO_UTM.transform(lon, lat)
            lon, lat = _TO_LONLAT.transform(x + shift_m[index], y)
        points.append({"pixel": [col, row], "lon": lon, "lat": lat})
    return points


def registered_preset(session: Session, code: str) -> CameraPreset:
    """Preset P1 of a new camera `code` at the tower, calibrated from `control_points()`."""
    register_camera(session=session, code=code, lon=TOWER[0], lat=TOWER[1])
    preset, _ = register_preset(
        session=session,
        camera_code=code,
        preset="P1",
        image_size=(WIDTH, HEIGHT),
        control_points=control_points(),
    )
    return preset
