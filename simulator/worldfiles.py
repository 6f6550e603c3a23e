"""The vector files of a world: legal layers, jurisdictions, truth, camera registry, calibration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import shapely
from shapely.geometry import Point, Polygon
from shapely.geometry.base import BaseGeometry

from simulator.calendar import SurfaceState
from simulator.camera import VIEW_M, control_pixels
from simulator.events import GROWING_TYPES
from simulator.geojson import feature_collection, geometry_json, write_json
from simulator.world import World, to_lonlat


def write_vectors(world: World, out_dir: Path) -> None:
    crs = world.grid.crs
    for kind, features in world.layers.items():
        collection = feature_collection([(f.properties, f.geom) for f in features], crs)
        write_json(out_dir / "layers" / f"{kind}.geojson", collection, compact=True)
    for level, features in (("township", world.townships), ("village", world.villages)):
        collection = feature_collection([(f.properties, f.geom) for f in features], crs)
        write_json(out_dir / "jurisdictions" / f"{level}.geojson", collection, compact=True)
    _write_truth(world, out_dir)
    _write_cameras(world, out_dir)


def _write_truth(world: World, out_dir: Path) -> None:
    crs, dates = world.grid.crs, world.dates
    violations = [
        (
            {
                "id": v.id,
                "type": v.type,
                "subtype": v.subtype,
                "onset": v.onset.isoformat(),
                "epoch": v.onset_epoch,
                "epoch_date": dates[v.onset_epoch].isoformat(),
                "area_m2": round(v.geom.area, 2),
                "in_approved": v.in_approved,
                "grows": v.type in GROWING_TYPES,
                "parcel_id": v.parcel_id,
            },
            v.geom,
        )
        for v in world.violations
    ]
    write_json(
        out_dir / "truth" / "violations.geojson", feature_collection(violations, crs), compact=True
    )
    extents = [
        (
            {
                "id": v.id,
                "epoch": k,
                "date": dates[k].isoformat(),
                "area_m2": round(extent.area, 2),
                "in_approved": v.in_approved,
            },
            extent,
        )
        for v in world.violations
        for k, extent in enumerate(v.extents)
        if extent is not None
    ]
    write_json(
        out_dir / "truth" / "violation_extents.geojson",
        feature_collection(extents, crs),
        compact=True,
    )
    benign = [
        (
            {
                "id": b.id,
                "type": b.type,
                "onset": b.onset.isoformat(),
                "epoch": b.onset_epoch,
                "epoch_date": dates[b.onset_epoch].isoformat(),
                "area_m2": round(b.geom.area, 2),
                "parcel_id": b.parcel_id,
            },
            b.geom,
        )
        for b in world.benign
    ]
    write_json(out_dir / "truth" / "benign.geojson", feature_collection(benign, crs), compact=True)
    parcels = [
        (
            {
                "parcel_id": p.id,
                "crop": p.crop,
                "states": [SurfaceState(int(s)).name for s in world.states[i]],
            },
            p.geom,
        )
        for i, p in enumerate(world.landscape.parcels)
    ]
    write_json(
        out_dir / "truth" / "parcels.geojson", feature_collection(parcels, crs), compact=True
    )


def _areas_of(geometry: BaseGeometry) -> BaseGeometry:
    """The polygons of `geometry`: a parcel meeting the view's edge meets it in lines or
    points too."""
    return shapely.union_all(
        [part for part in shapely.get_parts(geometry) if isinstance(part, Polygon)]
    )


def _write_cameras(world: World, out_dir: Path) -> None:
    crs = world.grid.crs
    transformer = to_lonlat(crs)
    parcels = [f.geom for f in world.layers["cultivated_land"]]
    parcel_index = shapely.STRtree(parcels)
    cultivated = shapely.union_all(parcels)
    registry = []
    for camera in world.cameras:
        lon, lat = transformer.transform(camera.x, camera.y)
        presets = []
        for preset in camera.presets:
            points = []
            for col, row in control_pixels(preset):
                x, y = preset.unproject(np.array([col]), np.array([row]))
                p_lon, p_lat = transformer.transform(float(x[0]), float(y[0]))
                points.append({"pixel": [col, row], "lon": round(p_lon, 9), "lat": round(p_lat, 9)})
            in_view = preset.footprint.intersection(Point(camera.x, camera.y).buffer(VIEW_M))
            farmland = in_view.intersection(cultivated)
            # The cultivated-land patches in view, as the one map holds them: the units farm
            # work acts on, which the detector tells apart from a violation on part of one.
            in_view_parcels = [
                _areas_of(parcels[i].intersection(farmland))
                for i in sorted(parcel_index.query(farmland, predicate="intersects"))
            ]
            write_json(
                out_dir / "cameras" / camera.camera_id / preset.preset / "calibration.json",
                {
                    "camera_id": camera.camera_id,
                    "image_size": list(preset.image_size),
                    "control_points": points,
                    "farmland": geometry_json(farmland, crs),
                    "parcels": [
                        geometry_json(parcel, crs) for parcel in in_view_parcels if parcel.area > 0
                    ],
                },
            )
            presets.append(
                {
                    "preset": preset.preset,
                    "image_size": list(preset.image_size),
                    "yaw_deg": round(preset.yaw_deg, 3),
                    "pitch_deg": round(preset.pitch_deg, 3),
                    "hfov_deg": round(preset.hfov_deg, 3),
                    "horizon_row": round(preset.horizon_row(), 2),
                    "control_points": points,
                }
            )
        registry.append(
            {
                "camera_id": camera.camera_id,
                "lon": round(lon, 9),
                "lat": round(lat, 9),
                "height_m": round(camera.height_m, 2),
                "presets": presets,
            }
        )
    write_json(out_dir / "cameras" / "registry.json", registry)
