"""The tile analysis task: a new remote-sensing tile against its reference, through the detector.

The reference is the latest earlier tile whose footprint covers the new one (validated, not
failed), or else a configured baseline raster that covers it; a tile with neither becomes the
first look at its place and has nothing to compare with. Where the reference is cloud or
nodata, the earlier covering tiles before it fill in, newest first: the new tile is compared
with the last clear look at each pixel (`detection.rs_reference`), so a change that appeared
under a cloud is found on the next clear tile. Both are read with `detection.io` and compared
by `detection.raster_pair.detect_changes` with the farmland parcels, whose whole-parcel
changes are farm work. Tiles of one place are analysed in acquisition order (a tile waits
while an earlier one overlapping it is unanalysed), so cases are placed alike whichever
worker finishes first.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import rasterio
import shapely
from rasterio.warp import transform_bounds
from shapely.geometry.base import BaseGeometry
from sqlalchemy import select
from sqlalchemy.orm import Session

from detection.errors import DetectionError
from detection.io.raster import Raster
from detection.rs_params import RasterDetectorParams
from models.detection import DetectionSource
from models.layer import LayerKind
from models.scene import Scene, SceneKind, SceneStatus
from service.analysis.coverage import farmland_features, record_feature_observations
from service.analysis.pair import clear_parcels, compare_rasters, last_clear_look, read_tile
from service.analysis.store import (
    DetectorRun,
    FoundChange,
    found_changes,
    parameters_json,
    polygons_of,
    store_detections,
)
from service.ingest.scenes import refresh_stac_item
from service.ingest.store import STAGING, object_path
from service.queue import ClaimedJob, NotYetError
from service.settings import Settings
from service.spatial import iter_intersecting

TILE_TASK = "analyse_tile"
RS_DETECTOR_VERSION = "raster-pair-1"
MIN_COVER_FRACTION = 0.98  # a reference must cover this much of the new tile's footprint
#: Covering tiles read at most to compose the last clear look (the reference and older ones):
#: each costs a read, and a pixel cloudy on all of them stays uncompared.
REFERENCE_LOOKS = 6
PARCEL_KINDS = frozenset({LayerKind.cultivated_land})


class WaitingForValidationError(NotYetError):
    """An earlier tile is not validated yet: it may be this tile's reference."""


class WaitingForEarlierTileError(NotYetError):
    """An earlier tile overlapping this one is not analysed yet (see `read_tile_inputs`)."""


@dataclass(frozen=True)
class TileInputs:
    scene_id: int
    path: Path | None  # None: nothing to do (already analysed)
    reference_scene_id: int | None
    reference_path: Path | None
    parcels_lonlat: list[BaseGeometry]
    farmland: list[tuple[int, BaseGeometry]] = dataclasses.field(default_factory=list)
    # Earlier covering tiles before the reference, newest first: they fill its cloud.
    older_paths: tuple[Path, ...] = ()


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
    # Cases are placed in acquisition order where tiles overlap: whether a detection continues
    # a case or opens one depends on the looks before it, so with several workers a tile
    # analysed before an earlier one would group the same detections into other cases.
    earlier = _earlier_tile_unanalysed(scene, session=session)
    if earlier is not None:
        raise WaitingForEarlierTileError(
            f"tile {earlier}, taken before tile {scene.id} and overlapping it, is not analysed "
            "yet; tiles of one place are analysed in acquisition order"
        )
    looks = find_reference_tiles(scene, session=session)
    reference = looks[0] if looks else None
    baseline = None if reference is not None else find_baseline(scene, settings)
    parcels_lonlat, farmland = tile_parcels(scene.geom, at=scene.acquired_at, session=session)
    return TileInputs(
        scene_id=scene.id,
        path=object_path(settings.data_dir, scene.storage_uri),
        reference_scene_id=reference.id if reference is not None else None,
        reference_path=object_path(settings.data_dir, reference.storage_uri)
        if reference is not None
        else baseline,
        parcels_lonlat=parcels_lonlat,
        farmland=farmland,
        older_paths=tuple(object_path(settings.data_dir, look.storage_uri) for look in looks[1:]),
    )


def tile_parcels(
    footprint: BaseGeometry, *, at: datetime, session: Session
) -> tuple[list[BaseGeometry], list[tuple[int, BaseGeometry]]]:
    """For a tile footprint at a time: the parcel polygons the detector tells farm work by
    (cultivated land, else any farmland), and every farmland parcel as (id, outline)."""
    farmland = farmland_features(footprint, at=at, session=session)
    parcels = farmland_features(footprint, at=at, session=session, kinds=PARCEL_KINDS) or farmland
    return (
        [part for feature in parcels for part in polygons_of(feature.geom)],
        [(feature.id, feature.geom) for feature in farmland],
    )


def find_reference_tile(scene: Scene, *, session: Session) -> Scene | None:
    """The latest earlier usable tile whose footprint covers `scene`'s."""
    looks = find_reference_tiles(scene, session=session, limit=1)
    return looks[0] if looks else None


def find_reference_tiles(
    scene: Scene, *, session: Session, limit: int = REFERENCE_LOOKS
) -> list[Scene]:
    """Up to `limit` earlier usable tiles whose footprints cover `scene`'s, newest first."""
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
    looks: list[Scene] = []
    for candidate in iter_intersecting(session, statement, Scene, scene.geom):
        if _covers(candidate.geom, scene.geom):
            looks.append(candidate)
            if len(looks) >= limit:
                break
    return looks


def _earlier_tile_unanalysed(scene: Scene, *, session: Session) -> int | None:
    """An earlier tile overlapping `scene` that is still waiting for its analysis, if any."""
    statement = select(Scene).where(
        Scene.kind == SceneKind.rs_tile,
        Scene.acquired_at < scene.acquired_at,
        Scene.status == SceneStatus.received,
    )
    for earlier in iter_intersecting(session, statement, Scene, scene.geom):
        if earlier.geom.intersection(scene.geom).area > 0:  # not merely touching
            return earlier.id
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
            tile = read_tile(path)
        note = "first look: no earlier tile or baseline covers it"
        return TileOutcome(inputs, [], note, observed=clear_parcels(tile, inputs.farmland))
    try:
        return _compare(inputs, settings)
    except DetectionError as error:  # e.g. all cloud or nodata where the two dates overlap
        return TileOutcome(inputs, [], "refused", failure=str(error))


def _compare(inputs: TileInputs, settings: Settings) -> TileOutcome:
    assert inputs.path is not None and inputs.reference_path is not None
    with _readable(inputs.path, settings) as after_path:
        after = read_tile(after_path)
    with _readable(inputs.reference_path, settings) as before_path:
        before = read_tile(before_path)
    before, source = last_clear_look(before, _older_tiles(inputs.older_paths, settings))
    try:
        comparison = compare_rasters(
            before,
            after,
            parcels_lonlat=inputs.parcels_lonlat,
            farmland=inputs.farmland,
            reference_source=source,
        )
    except ValueError as error:
        raise ValueError(f"tile {inputs.scene_id}: {error}") from error
    changes = found_changes(comparison.changes, settings.data_dir)
    note = f"{comparison.objects} change objects"
    return TileOutcome(inputs, changes, note, observed=list(comparison.observed))


def _older_tiles(paths: tuple[Path, ...], settings: Settings) -> Iterator[Raster]:
    """The tiles at `paths`, read one at a time as the composite asks for them; one that
    cannot be read only fills less (the new tile is still compared with its reference)."""
    for path in paths:
        try:
            with _readable(path, settings) as readable:
                raster = read_tile(readable)
        except DetectionError:
            continue
        yield raster


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
