"""Test data for ingest: JPEGs and GeoTIFFs made on the fly, cameras made through the ORM."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.transform import Affine
from shapely.geometry import Point
from sqlalchemy.orm import Session

from models.base import utcnow
from models.camera import Camera, CameraPreset
from models.scene import Scene, SceneKind
from service.settings import Settings

SNAPSHOT_SIZE = (64, 48)  # width, height the test presets are calibrated for


def jpeg_bytes(seed: int | None = None, size: tuple[int, int] = SNAPSHOT_SIZE) -> bytes:
    """A small noisy JPEG; different seeds give different bytes (so different scenes)."""
    rng = np.random.default_rng(seed if seed is not None else uuid.uuid4().int % 2**32)
    pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def geotiff_bytes(tmp_path: Path, *, crs: str | None = "EPSG:4549") -> bytes:
    """A 32×32 four-band GeoTIFF near Hangzhou (CGCS2000 / 3-degree GK CM 120°E)."""
    path = tmp_path / f"tile-{uuid.uuid4().hex}.tif"
    rng = np.random.default_rng(uuid.uuid4().int % 2**32)  # new bytes, so a new scene
    profile = {
        "driver": "GTiff",
        "width": 32,
        "height": 32,
        "count": 4,
        "dtype": "uint16",
        "transform": Affine(2.0, 0.0, 500_000, 0.0, -2.0, 3_340_000),
        "crs": crs,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(rng.integers(0, 4000, (4, 32, 32), dtype=np.uint16))
    data = path.read_bytes()
    path.unlink()
    return data


def add_camera(session: Session, *, code: str | None = None, preset: str = "1") -> tuple[str, str]:
    """A camera with one preset calibrated for SNAPSHOT_SIZE; returns (code, preset)."""
    code = code or f"cam-{uuid.uuid4().hex[:8]}"
    camera = Camera(code=code, name="test tower", geom=Point(120.1, 30.2))
    session.add(camera)
    session.flush()
    session.add(
        CameraPreset(
            camera_id=camera.id,
            preset=preset,
            image_width=SNAPSHOT_SIZE[0],
            image_height=SNAPSHOT_SIZE[1],
        )
    )
    session.flush()
    return code, preset


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        database_url="sqlite:///unused.db",
        data_dir=tmp_path / "data",
        max_snapshot_bytes=200_000,
        max_tile_bytes=200_000,
        ingest_roots=[tmp_path / "incoming"],
        retry_base_seconds=10,
        retry_max_seconds=600,
        _env_file=None,  # type: ignore[call-arg]
    )


def add_placeholder_scene(session: Session) -> Scene:
    """A tile scene row with a unique hash and no file behind it: something to queue jobs for."""
    digest = uuid.uuid4().hex * 2
    scene = Scene(
        kind=SceneKind.rs_tile,
        sha256=digest,
        storage_uri=f"objects/{digest[:2]}/{digest[2:4]}/{digest}",
        size_bytes=1,
        media_type="image/tiff",
        acquired_at=utcnow(),
        bands=[],
    )
    session.add(scene)
    session.flush()
    return scene
