"""A small map world for the page, tile and browser tests, built through the ORM.

Two districts side by side; remote-sensing scenes of flat, known colours over district A, so a
tile's pixels can be predicted; cases, a camera and a legal layer in each district.

    A (120.00–120.03 E)          B (120.03–120.06 E)
    scenes, cases "a1".."aN"     case "b1", camera "cam-b"
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from rasterio.io import MemoryFile
from rasterio.transform import Affine
from rasterio.warp import transform_bounds
from shapely.geometry import MultiPolygon, Point, box
from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Camera, CameraPreset, Case, Jurisdiction, Layer, LayerFeature, LayerVersion
from models.base import utcnow
from models.camera import CameraHealth
from models.case import CaseStatus
from models.client import Role
from models.jurisdiction import JurisdictionLevel
from models.layer import LayerKind
from models.scene import Scene, SceneKind, SceneStatus
from service.cases.events import append_event
from service.clients import create_client
from service.ingest.store import object_key

SCENE_CRS = "EPSG:4549"  # CGCS2000 / 3-degree Gauss-Krüger CM 120°E
SCENE_PIXEL_M = 2.0
SCENE_SIZE = 256  # pixels a side: 512 m
SCENE_ORIGIN = (501_000.0, 3_340_000.0)  # upper-left corner, metres
OLD_WEST_ORIGIN = (501_000.0 - 512, 3_340_000.0)  # the scene-sized square just west
DISTRICTS = {
    "A": box(120.00, 30.17, 120.03, 30.19),
    "B": box(120.03, 30.17, 120.06, 30.19),
}
CLIENTS = {"admin": (Role.admin, []), "inspector_a": (Role.inspector, ["A"])}
CLIENTS |= {"inspector_b": (Role.inspector, ["B"]), "monitor_a": (Role.monitor, ["A"])}
CASE_SIDE_DEG = 0.0004  # about 40 m


@dataclass
class MapWorld:
    keys: dict[str, str]
    jurisdiction_ids: dict[str, int]
    case_ids: dict[str, int] = field(default_factory=dict)
    scene_ids: dict[str, int] = field(default_factory=dict)
    other_ids: dict[str, list[int]] = field(default_factory=dict)


def scene_bounds_lonlat(
    origin: tuple[float, float] = SCENE_ORIGIN,
) -> tuple[float, float, float, float]:
    left, top = origin
    side = SCENE_SIZE * SCENE_PIXEL_M
    return transform_bounds(SCENE_CRS, "EPSG:4326", left, top - side, left + side, top)


def geotiff_bytes(
    reflectance_rgb: tuple[float, float, float],
    *,
    nodata_left_cols: int = 0,
    origin: tuple[float, float] = SCENE_ORIGIN,
) -> bytes:
    """A flat-colour 4-band uint16 GeoTIFF (blue, green, red, nir; reflectance × 10000)."""
    red, green, blue = (round(v * 10_000) for v in reflectance_rgb)
    data = np.empty((4, SCENE_SIZE, SCENE_SIZE), dtype=np.uint16)
    data[0], data[1], data[2], data[3] = blue, green, red, 3000
    data[:, :, :nodata_left_cols] = 0
    transform = Affine(SCENE_PIXEL_M, 0, origin[0], 0, -SCENE_PIXEL_M, origin[1])
    profile = {
        "driver": "GTiff", "width": SCENE_SIZE, "height": SCENE_SIZE, "count": 4,
        "dtype": "uint16", "crs": SCENE_CRS, "transform": transform, "nodata": 0,
        "tiled": True, "blockxsize": 128, "blockysize": 128, "compress": "zstd",
    }  # fmt: skip
    with MemoryFile() as memory:
        with memory.open(**profile) as dst:
            dst.write(data)
        return bytes(memory.read())


def add_scene(
    session: Session,
    data_dir: Path,
    *,
    acquired_at: datetime,
    reflectance_rgb: tuple[float, float, float],
    nodata_left_cols: int = 0,
    origin: tuple[float, float] = SCENE_ORIGIN,
) -> Scene:
    """A stored, validated scene as ingest would leave it (content-addressed file + row)."""
    body = geotiff_bytes(reflectance_rgb, nodata_left_cols=nodata_left_cols, origin=origin)
    sha256 = hashlib.sha256(body).hexdigest()
    key = object_key(sha256)
    path = data_dir / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    scene = Scene(
        kind=SceneKind.rs_tile, sha256=sha256, storage_uri=key, size_bytes=len(body),
        media_type="image/tiff", acquired_at=acquired_at, crs=SCENE_CRS, width=SCENE_SIZE,
        height=SCENE_SIZE, bands=["blue", "green", "red", "nir"], status=SceneStatus.analysed,
        geom=box(*scene_bounds_lonlat(origin)), source="test", sensor="test",
    )  # fmt: skip
    session.add(scene)
    session.flush()
    return scene


def case_box(lon: float, lat: float) -> MultiPolygon:
    half = CASE_SIDE_DEG / 2
    return MultiPolygon([box(lon - half, lat - half, lon + half, lat + half)])


def add_case(
    session: Session, jurisdiction_id: int, lon: float, lat: float, *, first_seen: datetime, **kw
) -> int:
    values: dict[str, object] = {
        "code": f"W-{uuid.uuid4().hex[:10]}",
        "status": CaseStatus.new,
        "version": 1,
        "geom": case_box(lon, lat),
        "area_m2": 1600.0,
        "change_types": ["building"],
        "sources": ["remote_sensing"],
        "first_seen_at": first_seen,
        "last_seen_at": first_seen,
        "jurisdiction_id": jurisdiction_id,
        "priority": 60,
    } | kw
    case = Case(**values)
    session.add(case)
    session.flush()
    append_event(
        case, session=session, action="opened", actor="machine-review", role="system",
        to_status=str(case.status), at=first_seen,
    )  # fmt: skip
    return case.id


def build_world(session: Session, data_dir: Path, *, cases_in_a: int = 3) -> MapWorld:
    """Jurisdictions, clients, two scenes (old red-ish, new green-ish), cases, a camera, a layer."""
    suffix = uuid.uuid4().hex[:8]
    ids: dict[str, int] = {}
    for label, geom in DISTRICTS.items():
        area = Jurisdiction(
            code=f"{label}-{suffix}", name=f"District {label}", level=JurisdictionLevel.district,
            geom=MultiPolygon([geom]), area_m2=1.0,
        )  # fmt: skip
        session.add(area)
        session.flush()
        ids[label] = area.id
    keys = {
        label: create_client(
            f"web-{label}-{suffix}", session=session, role=role,
            jurisdiction_codes=[f"{a}-{suffix}" for a in areas],
        ).key
        for label, (role, areas) in CLIENTS.items()
    }  # fmt: skip
    world = MapWorld(keys, ids)
    now = utcnow()
    before = add_scene(session, data_dir, acquired_at=now - timedelta(days=90),
                       reflectance_rgb=(0.20, 0.05, 0.05))  # fmt: skip
    after = add_scene(session, data_dir, acquired_at=now - timedelta(days=5),
                      reflectance_rgb=(0.05, 0.20, 0.05), nodata_left_cols=64)  # fmt: skip
    # West of the others and never imaged again: ground not observed for 200 days.
    old_west = add_scene(session, data_dir, acquired_at=now - timedelta(days=200),
                         reflectance_rgb=(0.1, 0.1, 0.1), origin=OLD_WEST_ORIGIN)  # fmt: skip
    world.scene_ids = {"before": before.id, "after": after.id, "old_west": old_west.id}
    west, south, east, north = scene_bounds_lonlat()
    for index in range(cases_in_a):
        lon = west + (east - west) * (0.3 + 0.2 * index)
        lat = south + (north - south) * (0.3 + 0.2 * (index % 3))
        world.case_ids[f"a{index + 1}"] = add_case(
            session, ids["A"], lon, lat, first_seen=now - timedelta(days=30), priority=20 * index
        )
    world.case_ids["b1"] = add_case(session, ids["B"], 120.045, 30.18, first_seen=now)
    world.other_ids = _add_cameras_and_layer(session, ids, suffix)
    session.flush()
    return world


def _add_cameras_and_layer(
    session: Session, ids: dict[str, int], suffix: str
) -> dict[str, list[int]]:
    cameras = []
    for label, (lon, lat) in {"A": (120.01, 30.18), "B": (120.045, 30.185)}.items():
        camera = Camera(
            code=f"cam-{label}-{suffix}", name=f"Tower {label}", jurisdiction_id=ids[label],
            health=CameraHealth.ok if label == "A" else CameraHealth.no_signal,
            geom=Point(lon, lat),
        )  # fmt: skip
        session.add(camera)
        session.flush()
        viewshed = box(lon, lat - 0.002, lon + 0.004, lat + 0.002)
        session.add(CameraPreset(camera_id=camera.id, preset="1", image_width=1920,
                                 image_height=1080, geom=viewshed))  # fmt: skip
        cameras.append(camera.id)
    kind = LayerKind.permanent_basic_farmland
    layer = session.scalars(select(Layer).where(Layer.kind == kind)).one_or_none()
    if layer is None:
        layer = Layer(kind=kind, name="Permanent basic farmland")
        session.add(layer)
        session.flush()
    version = LayerVersion(
        layer_id=layer.id, version=f"v-{suffix}", valid_from=utcnow() - timedelta(days=1),
        source="test", checksum="0" * 64, feature_count=2,
    )  # fmt: skip
    session.add(version)
    session.flush()
    features = []
    for ref, geom in {"in-a": box(120.005, 30.175, 120.02, 30.185),
                      "in-b": box(120.04, 30.175, 120.05, 30.185)}.items():  # fmt: skip
        feature = LayerFeature(layer_version_id=version.id, source_ref=ref,
                               geom=MultiPolygon([geom]), area_m2=1.0)  # fmt: skip
        session.add(feature)
        session.flush()
        features.append(feature.id)
    return {"cameras": cameras, "layer_versions": [version.id], "layer_features": features}
