"""A world's imagery as it is delivered to the service: upload order and provider products."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import ColorInterp

TILE_TIME = "T02:30:00+00:00"  # a morning overpass over Hangzhou (10:30 local)


@dataclass(frozen=True)
class Upload:
    """One file to send: where, with which capture time, in capture order across sensors."""

    captured_at: datetime
    url: str
    query: dict[str, str]
    path: Path

    @property
    def media_type(self) -> str:
        return "image/jpeg" if self.path.suffix == ".jpg" else "image/tiff"


def delivered_tile(tile: Path, products: Path) -> Path:
    """The tile as a provider delivers it: its cloud and shadow mask as an alpha band.

    Alpha 0 marks cloud, cloud shadow or nodata, GDAL's convention for per-pixel validity, so
    one file carries both the reflectance and where it can be trusted.
    """
    target = products / tile.name
    if target.exists():
        return target
    with rasterio.open(tile) as source:
        data, profile = source.read(), source.profile
    with rasterio.open(tile.with_suffix(".cloud.tif")) as mask:
        clear = (mask.read(1) == 0) & (data != 0).all(axis=0)
    profile.update(count=5, nodata=None)
    products.mkdir(parents=True, exist_ok=True)
    with rasterio.open(target, "w", **profile) as out:
        out.write(data, indexes=[1, 2, 3, 4])
        out.write(np.where(clear, 255, 0).astype(data.dtype), 5)
        out.descriptions = ("blue", "green", "red", "nir", "alpha")
        out.colorinterp = [
            ColorInterp.blue,
            ColorInterp.green,
            ColorInterp.red,
            ColorInterp.undefined,
            ColorInterp.alpha,
        ]
    return target


def uploads(world: Path, products: Path) -> list[Upload]:
    """Every tile and snapshot of `world` as HTTP uploads, in capture order across sensors."""
    items: list[Upload] = []
    meta = json.loads((world / "world.json").read_text())
    for epoch in meta["epochs"]:
        when = datetime.fromisoformat(epoch["date"] + TILE_TIME)
        tile = delivered_tile(world / epoch["tile"], products)
        items.append(Upload(when, "/v1/scenes", {"acquired_at": when.isoformat()}, tile))
    for camera in json.loads((world / "cameras" / "registry.json").read_text()):
        for preset in camera["presets"]:
            folder = world / "cameras" / camera["camera_id"] / preset["preset"]
            url = f"/v1/cameras/{camera['camera_id']}/presets/{preset['preset']}/snapshots"
            for path in sorted(folder.glob("*.jpg")):
                when = datetime.strptime(path.stem, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
                items.append(Upload(when, url, {"captured_at": when.isoformat()}, path))
    return sorted(items, key=lambda upload: (upload.captured_at, upload.url))
