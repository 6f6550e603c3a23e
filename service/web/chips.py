"""Before/after image chips of a case: the imagery around it, with its outline drawn in."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path

import numpy as np
import shapely
from PIL import Image, ImageDraw
from pyproj import Transformer
from shapely.geometry.base import BaseGeometry
from sqlalchemy.orm import Session

from models.case import Case
from models.scene import Scene
from service.errors import InvalidInputError
from service.spatial import BBox
from service.web.tiles import TileSource, check_scene, tile_source, usable_scenes, warp_true_colour

CHIP_SIZE = 384  # pixels a side
MIN_CHIP_M = 120.0  # small cases still get some context around them
CONTEXT_FACTOR = 2.0  # the chip spans this many times the case's larger side
OUTLINE = (255, 235, 59, 255)  # yellow reads well on both crops and bare soil


@dataclass(frozen=True)
class SceneRef:
    scene_id: int
    acquired_at: datetime


@dataclass(frozen=True)
class ImageryPair:
    before: SceneRef | None  # the newest scene from before the change was first seen
    after: SceneRef | None  # the newest scene of all


@lru_cache(maxsize=1)
def _to_mercator() -> Transformer:
    return Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)


def imagery_pair(case: Case, *, session: Session) -> ImageryPair:
    """The scenes to compare for a case; either may be None when no imagery covers it."""
    scenes = [
        scene
        for scene in session.scalars(usable_scenes(session, BBox.of(case.geom)))
        if scene.geom is not None and scene.geom.intersects(case.geom)
    ]
    change_seen = case.onset_before or case.first_seen_at
    earlier = [s for s in scenes if s.acquired_at < change_seen]
    return ImageryPair(
        before=_ref(earlier[0]) if earlier else None,
        after=_ref(scenes[0]) if scenes else None,
    )


def _ref(scene: Scene) -> SceneRef:
    return SceneRef(scene.id, scene.acquired_at)


def chip_bounds(geom: BaseGeometry) -> tuple[float, float, float, float]:
    """A square around the case in Web Mercator metres (left, bottom, right, top)."""
    projected = shapely.transform(geom, _to_mercator().transform, interleaved=False)
    minx, miny, maxx, maxy = projected.bounds
    half = max(maxx - minx, maxy - miny, MIN_CHIP_M) * CONTEXT_FACTOR / 2
    cx, cy = (minx + maxx) / 2, (miny + maxy) / 2
    return cx - half, cy - half, cx + half, cy + half


def chip_source(case: Case, scene_id: int, *, session: Session, data_dir: Path) -> TileSource:
    scene = check_scene(scene_id, session=session)
    if scene.geom is None or not scene.geom.intersects(case.geom):
        raise InvalidInputError(
            f"scene {scene_id} does not cover case {case.code}: pick one of the scenes "
            f"listed by /v1/map/cases/{case.id}/imagery"
        )
    return tile_source(scene, data_dir)


@lru_cache(maxsize=256)
def render_chip_png(source: TileSource, geom_wkb: bytes) -> bytes:
    """The chip as RGBA PNG (CHIP_SIZE a side), the case outlined; transparent off the scene."""
    geom = shapely.from_wkb(geom_wkb)
    bounds = chip_bounds(geom)
    rgb, valid = warp_true_colour(source, bounds, CHIP_SIZE)
    rgba = np.concatenate([rgb, (valid * 255).astype(np.uint8)[None]])
    image = Image.fromarray(np.ascontiguousarray(np.moveaxis(rgba, 0, -1)))
    _draw_outline(image, geom, bounds)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _draw_outline(
    image: Image.Image, geom: BaseGeometry, bounds: tuple[float, float, float, float]
) -> None:
    left, _, right, top = bounds
    scale = CHIP_SIZE / (right - left)
    draw = ImageDraw.Draw(image)
    projected = shapely.transform(geom, _to_mercator().transform, interleaved=False)
    for polygon in getattr(projected, "geoms", [projected]):
        ring = [((x - left) * scale, (top - y) * scale) for x, y in polygon.exterior.coords]
        draw.line(ring, fill=OUTLINE, width=2)
