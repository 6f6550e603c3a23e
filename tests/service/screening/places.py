"""Builders for screening and case tests: legal layers, jurisdictions and detections in Hangzhou."""

from __future__ import annotations

import hashlib
import itertools
from datetime import UTC, datetime

from pyproj import Geod
from shapely.geometry import MultiPolygon, Polygon, box
from shapely.geometry.base import BaseGeometry
from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Detection, Jurisdiction, Layer, LayerFeature, LayerVersion, Scene
from models.detection import ChangeType, DetectionSource
from models.jurisdiction import JurisdictionLevel
from models.layer import LayerKind
from models.scene import SceneKind
from service.settings import Settings

SETTINGS = Settings(
    database_url="sqlite://",
    case_merge_window_days=30,
    case_merge_buffer_m=20,
    suppression_days=90,
    min_overlap_fraction_for_approval=0.8,
)
GEOD = Geod(ellps="GRS80")  # CGCS2000's ellipsoid: an area check independent of the code's CRS

# A 1 km square of permanent basic farmland, and plots placed around it.
FARMLAND = box(120.100, 30.100, 120.110, 30.110)
PLOT = box(120.1040, 30.1040, 120.1045, 30.1044)  # about 48 m × 44 m, inside the farmland
PLOT_EAST = box(120.1044, 30.1040, 120.1049, 30.1044)  # overlaps PLOT's east edge
FAR_PLOT = box(120.1070, 30.1070, 120.1075, 30.1074)  # about 400 m away, still in farmland
OUTSIDE = box(120.2000, 30.2000, 120.2005, 30.2004)  # no layer here

_serial = itertools.count(1)


def at(year: int, month: int = 6, day: int = 1) -> datetime:
    return datetime(year, month, day, 3, 0, tzinfo=UTC)


def geodesic_m2(geom: BaseGeometry) -> float:
    area, _ = GEOD.geometry_area_perimeter(geom)
    return abs(area)


def add_layer_version(
    session: Session,
    kind: LayerKind,
    shapes: list[BaseGeometry],
    *,
    version: str = "2023",
    valid_from: datetime | None = None,
    valid_to: datetime | None = None,
) -> LayerVersion:
    layer = session.scalars(select(Layer).where(Layer.kind == kind)).first()
    if layer is None:
        layer = Layer(kind=kind, name=str(kind))
        session.add(layer)
        session.flush()
    layer_version = LayerVersion(
        layer_id=layer.id,
        version=version,
        valid_from=valid_from or at(2000, 1, 1),
        valid_to=valid_to,
        source=f"{kind}-{version}.gpkg",
        checksum="0" * 64,
        feature_count=len(shapes),
    )
    session.add(layer_version)
    session.flush()
    for index, shape in enumerate(shapes):
        session.add(
            LayerFeature(
                layer_version_id=layer_version.id,
                source_ref=f"{kind}-{version}-{index}",
                geom=MultiPolygon([shape]) if isinstance(shape, Polygon) else shape,
                area_m2=geodesic_m2(shape),
            )
        )
    session.flush()
    return layer_version


def add_jurisdiction(
    session: Session,
    level: JurisdictionLevel,
    geom: Polygon,
    *,
    parent: Jurisdiction | None = None,
) -> Jurisdiction:
    serial = next(_serial)
    jurisdiction = Jurisdiction(
        code=f"{level}-{serial}",
        name=f"{level} {serial}",
        level=level,
        parent_id=parent.id if parent else None,
        geom=MultiPolygon([geom]),
        area_m2=geodesic_m2(geom),
    )
    session.add(jurisdiction)
    session.flush()
    return jurisdiction


def add_detection(
    session: Session,
    geom: Polygon,
    observed_at: datetime,
    *,
    source: DetectionSource = DetectionSource.remote_sensing,
    change_type: ChangeType = ChangeType.building,
    confidence: float = 0.7,
    benign: bool = False,
    compared_with: datetime | None = None,
) -> Detection:
    """A stored detection; `compared_with` adds the reference image it was found against."""
    reference = _add_scene(session, source, compared_with) if compared_with else None
    detection = Detection(
        scene_id=_add_scene(session, source, observed_at).id,
        reference_scene_id=reference.id if reference else None,
        source=source,
        detector_version="test-1",
        object_index=0,
        change_type=change_type,
        benign=benign,
        confidence=confidence,
        area_m2=geodesic_m2(geom),
        observed_at=observed_at,
        geom=geom,
    )
    session.add(detection)
    session.flush()
    return detection


def _add_scene(session: Session, source: DetectionSource, acquired_at: datetime) -> Scene:
    serial = next(_serial)
    scene = Scene(
        kind=SceneKind.camera_snapshot if source == "camera" else SceneKind.rs_tile,
        sha256=hashlib.sha256(f"scene-{serial}-{acquired_at}".encode()).hexdigest(),
        storage_uri=f"file:///scenes/{serial}",
        size_bytes=1,
        media_type="image/tiff",
        acquired_at=acquired_at,
    )
    session.add(scene)
    session.flush()
    return scene
