"""GeoJSON (RFC 7946) from world-CRS geometries: lon/lat, counter-clockwise outer rings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from simulator.world import to_lonlat

DECIMALS = 9  # about 0.1 mm: rounding never moves a vertex noticeably


def lonlat_geometry(geom: BaseGeometry, crs: str) -> BaseGeometry:
    """Reproject a geometry from the world CRS to lon/lat, with RFC 7946 ring orientation."""
    transformer = to_lonlat(crs)

    def reproject(xy: np.ndarray) -> np.ndarray:
        lon, lat = transformer.transform(xy[:, 0], xy[:, 1])
        return np.round(np.column_stack([lon, lat]), DECIMALS)

    moved = shapely.transform(geom, reproject)
    return shapely.orient_polygons(moved) if hasattr(shapely, "orient_polygons") else moved


def geometry_json(geom: BaseGeometry, crs: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(shapely.to_geojson(lonlat_geometry(geom, crs)))
    return result


def feature_collection(features: list[tuple[dict[str, Any], BaseGeometry]], crs: str) -> dict:
    return {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "properties": props, "geometry": geometry_json(geom, crs)}
            for props, geom in features
        ],
    }


def write_json(path: Path, content: Any, *, compact: bool = False) -> None:
    """Write JSON with sorted keys, so equal content is equal bytes.

    `compact` drops the indentation: large GeoJSON then goes through the C encoder, ~10× faster.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    layout: dict[str, Any] = {"separators": (",", ":")} if compact else {"indent": 1}
    path.write_text(json.dumps(content, ensure_ascii=False, sort_keys=True, **layout) + "\n")
