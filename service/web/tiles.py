"""XYZ basemap tiles (Web Mercator PNG) rendered from the ingested remote-sensing scenes.

The monitoring centres have no internet basemap, so the imagery the service already holds is
the basemap: each tile is warped from the stored GeoTIFFs with GDAL (which reads only the
blocks it needs), newest scene on top, transparent where no scene covers it.
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from PIL import Image
from pyproj import Transformer
from rasterio.enums import Resampling
from rasterio.transform import Affine
from rasterio.warp import reproject
from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import Session

from models.scene import Scene, SceneKind, SceneStatus
from service.errors import InvalidInputError, NotFoundError
from service.ingest.store import object_path
from service.spatial import BBox, bbox_clause

TILE_SIZE = 256
MAX_ZOOM = 24
MOSAIC_MAX_SCENES = 8  # newest scenes drawn into one mosaic tile; older ones are hidden anyway
HALF_WORLD_M = 20037508.342789244  # half the Web Mercator square, metres
WEB_MERCATOR = "EPSG:3857"
# Bump when the rendering changes, so that browsers drop tiles cached under the old ETag.
RENDERER = "true-colour-1"
# Reflectance stored as uint16 with scale 1e-4 (10000 = 1.0); quicklook gain and gamma as in
# the simulator's previews, so the map looks like the images in the README.
REFLECTANCE_SCALE = 1e-4
QUICKLOOK_GAIN = 3.0
QUICKLOOK_GAMMA = 1 / 2.2
TILE_CACHE_SIZE = 2048  # PNGs of ~20-120 kB: at most a few hundred MB


@dataclass(frozen=True)
class TileSource:
    """One stored scene as a tile renderer needs it (hashable: it is part of the cache key)."""

    path: str
    sha256: str
    rgb_bands: tuple[int, int, int]  # 1-based band indexes of red, green, blue
    reflectance_scale: float  # multiply the stored values by this to get reflectance


def check_tile(z: int, x: int, y: int) -> None:
    if not 0 <= z <= MAX_ZOOM:
        raise InvalidInputError(f"zoom {z} is outside 0..{MAX_ZOOM}")
    limit = 2**z
    if not (0 <= x < limit and 0 <= y < limit):
        raise InvalidInputError(
            f"tile {z}/{x}/{y} does not exist: at zoom {z} x and y run from 0 to {limit - 1}"
        )


def mercator_bounds(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """(left, bottom, right, top) of an XYZ tile in Web Mercator metres (y counts down)."""
    size = 2 * HALF_WORLD_M / 2**z
    left = -HALF_WORLD_M + x * size
    top = HALF_WORLD_M - y * size
    return left, top - size, left + size, top


def lonlat_bounds(z: int, x: int, y: int) -> BBox:
    left, bottom, right, top = mercator_bounds(z, x, y)
    west, south = _to_lonlat().transform(left, bottom)
    east, north = _to_lonlat().transform(right, top)
    return BBox(max(west, -180.0), max(south, -90.0), min(east, 180.0), min(north, 90.0))


@lru_cache(maxsize=1)
def _to_lonlat() -> Transformer:
    return Transformer.from_crs(WEB_MERCATOR, "EPSG:4326", always_xy=True)


def _drawable() -> tuple[ColumnElement[bool], ...]:
    """Scenes the basemap can draw: georeferenced remote-sensing tiles that did not fail."""
    return (
        Scene.kind == SceneKind.rs_tile,
        Scene.status != SceneStatus.failed,
        Scene.crs.is_not(None),
    )


def usable_scenes(session: Session, bbox: BBox) -> Select[Any]:
    """Validated remote-sensing scenes whose footprint box overlaps `bbox`, newest first."""
    dialect = session.get_bind().dialect.name
    return (
        select(Scene)
        .where(*_drawable(), bbox_clause(Scene, bbox, dialect))
        .order_by(Scene.acquired_at.desc(), Scene.id.desc())
    )


def imagery_extent(*, session: Session) -> list[float] | None:
    """[west, south, east, north] around every drawable scene; None when there is none.

    The page gives it to the map as the basemap's bounds, so no tile is asked for where
    there is no imagery (most of a county is often not covered yet).
    """
    box = session.execute(
        select(
            func.min(Scene.minx), func.min(Scene.miny), func.max(Scene.maxx), func.max(Scene.maxy)
        ).where(*_drawable())
    ).one()
    return None if box[0] is None else [float(value) for value in box]


def tile_sources(
    z: int, x: int, y: int, *, session: Session, data_dir: Path, scene_id: int | None = None
) -> tuple[TileSource, ...]:
    """The scenes to draw into a tile, newest first: one named scene, or the latest mosaic."""
    statement = usable_scenes(session, lonlat_bounds(z, x, y))
    if scene_id is not None:
        check_scene(scene_id, session=session)
        statement = statement.where(Scene.id == scene_id)
    scenes = session.scalars(statement.limit(MOSAIC_MAX_SCENES))
    return tuple(tile_source(scene, data_dir) for scene in scenes)


def check_scene(scene_id: int, *, session: Session) -> Scene:
    """The remote-sensing scene `scene_id` if it can be drawn, else NotFoundError."""
    scene = session.get(Scene, scene_id)
    if scene is None or scene.kind != SceneKind.rs_tile:
        raise NotFoundError(
            f"no remote-sensing scene {scene_id}: leave out ?scene= for the mosaic of the "
            "latest scenes, or pick an id of an ingested GeoTIFF tile"
        )
    if scene.status == SceneStatus.failed or scene.crs is None:
        reason = scene.failure_reason or "it has not been validated yet"
        raise NotFoundError(f"scene {scene_id} cannot be drawn: {reason}")
    return scene


def tile_source(scene: Scene, data_dir: Path) -> TileSource:
    roles = [role.lower() for role in scene.bands]
    if {"red", "green", "blue"} <= set(roles):
        rgb = (roles.index("red") + 1, roles.index("green") + 1, roles.index("blue") + 1)
    else:  # unnamed bands: assume the usual R, G, B order of the first three
        rgb = (1, 2, 3) if len(roles) >= 3 else (1, 1, 1)
    path = str(object_path(data_dir, scene.storage_uri))
    return TileSource(path, scene.sha256, rgb, REFLECTANCE_SCALE)


def tile_etag(z: int, x: int, y: int, sources: tuple[TileSource, ...]) -> str:
    """A strong ETag from what the tile is made of: stored objects never change in place."""
    key = "|".join([RENDERER, f"{z}/{x}/{y}", *(source.sha256 for source in sources)])
    return '"' + hashlib.sha256(key.encode()).hexdigest()[:32] + '"'


@lru_cache(maxsize=TILE_CACHE_SIZE)
def render_tile_png(z: int, x: int, y: int, sources: tuple[TileSource, ...]) -> bytes:
    """The tile as RGBA PNG: the newest scene wins, uncovered pixels stay transparent."""
    rgba = np.zeros((4, TILE_SIZE, TILE_SIZE), dtype=np.uint8)
    bounds = mercator_bounds(z, x, y)
    for source in sources:
        empty = rgba[3] == 0
        if not empty.any():
            break
        rgb, valid = warp_true_colour(source, bounds, TILE_SIZE)
        fill = empty & valid
        rgba[:3, fill] = rgb[:, fill]
        rgba[3, fill] = 255
    return encode_png(rgba)


def warp_true_colour(
    source: TileSource, bounds: tuple[float, float, float, float], size: int
) -> tuple[np.ndarray, np.ndarray]:
    """The scene's true colour on a Web Mercator grid.

    Parameters: `bounds` (left, bottom, right, top) in Web Mercator metres, `size` pixels a side.
    Returns the quicklook, shape (3, size, size) uint8, and where the scene has data, shape
    (size, size) bool.
    """
    destination = np.full((3, size, size), np.nan, dtype=np.float32)
    # Exactly one driver: GDAL picks it from the content, and a VRT could read any file.
    with rasterio.open(source.path, driver="GTiff") as src:
        reproject(
            source=rasterio.band(src, list(source.rgb_bands)),
            destination=destination,
            src_nodata=src.nodata,
            dst_transform=_grid(bounds, size),
            dst_crs=WEB_MERCATOR,
            dst_nodata=np.nan,
            resampling=_resampling(_pixel_metres(src), bounds, size),
        )
    valid = np.asarray(~np.isnan(destination).any(axis=0))
    reflectance = np.nan_to_num(destination) * source.reflectance_scale
    quicklook = np.clip(reflectance * QUICKLOOK_GAIN, 0, 1) ** QUICKLOOK_GAMMA
    return (quicklook * 255 + 0.5).astype(np.uint8), valid


def _grid(bounds: tuple[float, float, float, float], size: int) -> Affine:
    """The north-up transform of a square `size` × `size` grid over `bounds`."""
    left, _, right, top = bounds
    pixel = (right - left) / size
    return Affine(pixel, 0.0, left, 0.0, -pixel, top)


def _pixel_metres(src: rasterio.DatasetReader) -> float:
    degrees_to_m = 111_320.0 if src.crs is not None and src.crs.is_geographic else 1.0
    return float(src.res[0]) * degrees_to_m


def _resampling(
    source_pixel_m: float, bounds: tuple[float, float, float, float], size: int
) -> Resampling:
    """Average when several source pixels fall in one tile pixel (no aliasing), else bilinear."""
    left, bottom, right, top = bounds
    latitude = _to_lonlat().transform((left + right) / 2, (bottom + top) / 2)[1]
    ground_pixel_m = (right - left) / size * math.cos(math.radians(latitude))
    return Resampling.average if ground_pixel_m > 2 * source_pixel_m else Resampling.bilinear


def encode_png(rgba: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(np.moveaxis(rgba, 0, -1))).save(buffer, format="PNG")
    return buffer.getvalue()


@lru_cache(maxsize=1)
def empty_tile_png() -> bytes:
    return encode_png(np.zeros((4, TILE_SIZE, TILE_SIZE), dtype=np.uint8))
