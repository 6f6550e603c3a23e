"""The tile analysis task: a new remote-sensing tile against its reference, through the detector.

The reference is the latest earlier tile whose footprint covers the new one (validated, not
failed), or else a configured baseline raster that covers it; a tile with neither becomes the
first look at its place and has nothing to compare with. Both are read with `detection.io`
and compared by `detection.raster_pair.detect_changes` with the farmland parcels, whose
whole-parcel changes are farm work.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import shapely
from numpy.typing import NDArray
from pyproj import CRS, Transformer
from rasterio.features import geometry_mask
from rasterio.warp import transform_bounds
from rasterio.windows import Window, from_bounds
from rasterio.windows import transform as window_transform
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry
from sqlalchemy import select
from sqlalchemy.orm import Session

from detection.errors import DetectionError
from detection.io.raster import Raster, ReadLimits, read_raster
from detection.objects import ChangeObject
from detection.raster_pair import detect_changes
from detection.rs_params import RasterDetectorParams
from models.detection import DetectionSource
from models.layer import LayerKind
from models.scene import Scene, SceneKind, SceneStatus
from service.analysis.coverage import farmland_features, record_feature_observations
from service.analysis.store import (
    DetectorRun,
    FoundChange,
    change_type_of,
    parameters_json,
    polygons_of,
    store_detections,
    store_png,
)
from service.ingest.scenes import refresh_stac_item
from service.ingest.store import STAGING, object_path
from service.queue import ClaimedJob
from service.settings import Settings
from service.spatial import iter_intersecting

TILE_TASK = "analyse_tile"
RS_DETECTOR_VERSION = "raster-pair-1"
MIN_COVER_FRACTION = 0.98  # a reference must cover this much of the new tile's footprint
CHIP_MARGIN_PX = 24
MIN_CLEAR_FRACTION = 0.5  # of a parcel's pixels, for the tile to count as a look at it
PARCEL_KINDS = frozenset({LayerKind.cultivated_land})


class WaitingForValidationError(Exception):
    """An earlier tile is not validated yet: it may be this tile's reference."""


@dataclass(frozen=True)
class TileInputs:
    scene_id: int
    path: Path | None  # None: nothing to do (already analysed)
    reference_scene_id: int | None
    reference_path: Path | None
    parcels_lonlat: list[BaseGeometry]
    farmland: list[tuple[int, BaseGeometry]] = dataclasses.field(default_factory=list)


@dataclass(frozen=True)
class TileOutcome:
    inputs: TileInputs
    changes: list[FoundChange]
    note: str
    failure: str | None = None  # why the pair cannot be compared (retrying would not help)
    observed: list[int] = dataclasses.field(default_factory=list)  # parcels seen clear


def read_tile_inputs(session: Session, job: ClaimedJob, settings: Settings) -> TileInputs:
    scene = session.get(Scene, job.scene_id)
    if scene is None:
        raise LookupError(f"scene {job.scene_id} of job {job.id} no longer exists")
    if scene.status != SceneStatus.received or scene.geom is None:
        return TileInputs(scene.id, None, None, None, [])  # analysed, or failed validation
    reference = find_reference_tile(scene, session=session)
    baseline = None if reference is not None else find_baseline(scene, settings)
    parcels = farmland_features(
        scene.geom, at=scene.acquired_at, session=session, kinds=PARCEL_KINDS
    ) or farmland_features(scene.geom, at=scene.acquired_at, session=session)
    return TileInputs(
        scene_id=scene.id,
        path=object_path(settings.data_dir, scene.storage_uri),
        reference_scene_id=reference.id if reference is not None else None,
        reference_path=object_path(settings.data_dir, reference.storage_uri)
        if reference is not None
        else baseline,
        parcels_lonlat=[part for feature in parcels for part in polygons_of(feature.geom)],
        farmland=[
            (f.id, f.geom)
            for f in farmland_features(scene.geom, at=scene.acquired_at, session=session)
        ],
    )


def find_reference_tile(scene: Scene, *, session: Session) -> Scene | None:
    """The latest earlier usable tile whose footprint covers `scene`'s."""
    earlier = (
        Scene.kind == SceneKind.rs_tile,
        Scene.acquired_at < scene.acquired_at,
        Scene.status != SceneStatus.failed,
    )
    # An earlier tile still in validation has no footprint yet: it may be the reference.
    waiting = session.scalars(
        select(Scene.id).where(*earlier, Scene.geom.is_(None)).order_by(Scene.id).limit(1)
    ).first()
    if waiting is not None:
        raise WaitingForValidationError(
            f"tile {waiting}, taken before tile {scene.id}, is not validated yet and may be "
            "its reference; analysis waits for it"
        )
    statement = select(Scene).where(*earlier).order_by(Scene.acquired_at.desc(), Scene.id.desc())
    for candidate in iter_intersecting(session, statement, Scene, scene.geom):
        if _covers(candidate.geom, scene.geom):
            return candidate
    return None


def _covers(reference: BaseGeometry, footprint: BaseGeometry) -> bool:
    return reference.intersection(footprint).area >= MIN_COVER_FRACTION * footprint.area


def find_baseline(scene: Scene, settings: Settings) -> Path | None:
    """The first configured baseline GeoTIFF whose extent covers the tile, if any."""
    for path in settings.tile_baseline_paths:
        if scene.geom is not None and _covers(_raster_footprint(path), scene.geom):
            return path
    return None


def _raster_footprint(path: Path) -> BaseGeometry:
    # Baselines are configured by the operator, not uploaded: only their extent is read here.
    with rasterio.open(path, driver="GTiff") as source:
        bounds = transform_bounds(source.crs, "EPSG:4326", *source.bounds)
    return shapely.box(*bounds)


def analyse_tile(inputs: TileInputs, settings: Settings) -> TileOutcome:
    """Compare the tile with its reference; no database is touched here."""
    if inputs.path is None:
        return TileOutcome(inputs, [], "nothing to do")
    if inputs.reference_path is None:
        with _readable(inputs.path, settings) as path:
            tile = without_alpha(read_raster(path, limits=ReadLimits()))
        note = "first look: no earlier tile or baseline covers it"
        return TileOutcome(inputs, [], note, observed=clear_parcels(tile, inputs.farmland))
    try:
        return _compare(inputs, settings)
    except DetectionError as error:  # e.g. all cloud or nodata where the two dates overlap
        return TileOutcome(inputs, [], "refused", failure=str(error))


def _compare(inputs: TileInputs, settings: Settings) -> TileOutcome:
    assert inputs.path is not None and inputs.reference_path is not None
    with _readable(inputs.path, settings) as after_path:
        after = without_alpha(read_raster(after_path, limits=ReadLimits()))
    with _readable(inputs.reference_path, settings) as before_path:
        before = without_alpha(read_raster(before_path, limits=ReadLimits()))
    if before.crs is None or before.transform is None:
        raise ValueError(f"the reference of tile {inputs.scene_id} has no georeferencing")
    parcels = _to_crs(inputs.parcels_lonlat, before.crs)
    result = detect_changes(
        before.array,
        after.array,
        params=RasterDetectorParams(),
        farmland=parcels or None,
        before_valid=~before.nodata,
        after_valid=~after.nodata,
        transform=before.transform,
        crs=before.crs,
        after_transform=after.transform,
        after_crs=after.crs,
        band_roles=before.band_roles,
    )
    to_lonlat = _transformer(before.crs, "EPSG:4326")
    changes = [
        change
        for found in result.objects
        for change in _changes(found, to_lonlat, before, after, settings)
    ]
    observed = clear_parcels(after, inputs.farmland)
    return TileOutcome(inputs, changes, f"{len(result.objects)} change objects", observed=observed)


def clear_parcels(raster: Raster, farmland: list[tuple[int, BaseGeometry]]) -> list[int]:
    """Parcels (id, lon/lat outline) of which the tile shows at least half clear of cloud,
    shadow and nodata: only those count as observed."""
    if raster.crs is None or raster.transform is None:
        return []
    forward = _transformer("EPSG:4326", raster.crs)
    rows, cols = raster.shape
    observed = []
    for feature_id, geom in farmland:
        local = shapely.transform(geom, forward.transform, interleaved=False)
        window = from_bounds(*local.bounds, transform=raster.transform).round_offsets()
        window = window.round_lengths().intersection(Window(0, 0, cols, rows))
        if window.width < 1 or window.height < 1:
            continue
        inside = ~geometry_mask(
            [local],
            out_shape=(int(window.height), int(window.width)),
            transform=window_transform(window, raster.transform),
        )
        if not inside.any():
            continue
        nodata = raster.nodata[window.toslices()]
        if (~nodata[inside]).mean() >= MIN_CLEAR_FRACTION:
            observed.append(feature_id)
    return observed


def without_alpha(raster: Raster) -> Raster:
    """The raster without its alpha band, whose zeros (cloud, shadow, nodata: the producer's
    mask, GDAL's convention) become nodata, so that they are never called change."""
    if "alpha" not in raster.band_roles:
        return raster
    index = raster.band_roles.index("alpha")
    keep = [i for i, role in enumerate(raster.band_roles) if role != "alpha"]
    return dataclasses.replace(
        raster,
        array=raster.array[:, :, keep],
        nodata=raster.nodata | (raster.array[:, :, index] == 0),
        band_roles=tuple(raster.band_roles[i] for i in keep),
    )


@contextmanager
def _readable(path: Path, settings: Settings) -> Iterator[Path]:
    # The reader picks its decoder by suffix; stored objects have none (see validate.py).
    if path.suffix.lower() in {".tif", ".tiff"}:
        yield path
        return
    staging = settings.data_dir / STAGING
    staging.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=staging) as folder:
        link = Path(folder) / "scene.tif"
        link.symlink_to(path.resolve())
        yield link


@lru_cache(maxsize=8)
def _transformer(source: str, target: str) -> Transformer:
    return Transformer.from_crs(
        CRS.from_user_input(source), CRS.from_user_input(target), always_xy=True
    )


def _to_crs(geoms: list[BaseGeometry], crs: str) -> list[BaseGeometry]:
    forward = _transformer("EPSG:4326", crs)
    return [shapely.transform(g, forward.transform, interleaved=False) for g in geoms]


def _changes(
    found: ChangeObject,
    to_lonlat: Transformer,
    before: Raster,
    after: Raster,
    settings: Settings,
) -> list[FoundChange]:
    lonlat = shapely.transform(found.geometry, to_lonlat.transform, interleaved=False)
    parts = polygons_of(shapely.make_valid(lonlat))
    total = sum(part.area for part in parts) or 1.0
    chips = None if found.benign else _chips(found.geometry, before, after, settings)
    return [
        FoundChange(
            geom=part,
            change_type=change_type_of(found.change_type),
            benign=found.benign,
            confidence=found.confidence,
            area_m2=found.area_m2 * part.area / total,
            chips=chips,
        )
        for part in parts
    ]


def _chips(geometry: Polygon, before: Raster, after: Raster, settings: Settings) -> Any:
    """True-colour crops around the change from both dates, as PNGs (before grid)."""
    assert before.transform is not None
    inverse = ~before.transform
    minx, miny, maxx, maxy = geometry.bounds
    cols, rows = zip(inverse @ (minx, maxy), inverse @ (maxx, miny), strict=True)
    height, width = before.shape
    r0, r1 = max(0, int(min(rows)) - CHIP_MARGIN_PX), min(height, int(max(rows)) + CHIP_MARGIN_PX)
    c0, c1 = max(0, int(min(cols)) - CHIP_MARGIN_PX), min(width, int(max(cols)) + CHIP_MARGIN_PX)
    if r1 <= r0 or c1 <= c0 or after.shape != before.shape:
        return None  # the after date is on another grid: no pixel-aligned chip pair
    window = (slice(r0, r1), slice(c0, c1))
    pair = [_true_colour(raster, window) for raster in (before, after)]
    # One stretch for both dates, so that a brighter or darker surface shows as such.
    low, high = np.percentile(np.stack(pair), (2, 98))
    scale = max(float(high - low), 1e-6)
    before_png, after_png = (
        store_png((np.clip((rgb - low) / scale, 0, 1) * 255).astype(np.uint8), settings.data_dir)
        for rgb in pair
    )
    return before_png, after_png


def _true_colour(raster: Raster, window: tuple[slice, slice]) -> NDArray[np.float32]:
    roles = list(raster.band_roles)
    bands = [roles.index(r) if r in roles else i for i, r in enumerate(("red", "green", "blue"))]
    return raster.array[window][..., bands].astype(np.float32)


def write_tile_outcome(
    session: Session, job: ClaimedJob, settings: Settings, outcome: TileOutcome
) -> None:
    scene = session.get(Scene, outcome.inputs.scene_id, populate_existing=True)
    if scene is None or outcome.inputs.path is None or scene.status != SceneStatus.received:
        return  # analysed by an earlier run of this job, or failed meanwhile
    if outcome.failure is not None:
        scene.status = SceneStatus.failed
        scene.failure_reason = f"analysis: {outcome.failure}"
        refresh_stac_item(session=session, scene=scene)
        session.flush()
        return
    run = DetectorRun(
        source=DetectionSource.remote_sensing,
        detector_version=RS_DETECTOR_VERSION,
        parameters=parameters_json(RasterDetectorParams()),
        reference_scene_id=outcome.inputs.reference_scene_id,
    )
    store_detections(scene, outcome.changes, run=run, session=session, settings=settings)
    if scene.geom is not None:
        record_feature_observations(
            outcome.observed, source=DetectionSource.remote_sensing, scene=scene, session=session
        )
    scene.status = SceneStatus.analysed
    refresh_stac_item(session=session, scene=scene)
    session.flush()
