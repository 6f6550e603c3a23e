"""Storing detector output: one Detection row per object, then "3+X" screening and cases.

Rows are keyed by (scene, detector version, object index), so re-running a job finds the rows
it made before and changes nothing: no second detection, no second case, no second alert.
"""

from __future__ import annotations

import dataclasses
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models.case import Case, EvidenceKind
from models.detection import ChangeType, Detection, DetectionSource
from models.scene import Scene
from service.analysis.pair import PairChange
from service.cases.events import attach_evidence
from service.cases.workflow import lock_places, open_or_update_case
from service.ingest.store import MediaKind, ObjectWriter, StoredObject, commit_object
from service.screening.screen import screen_detection
from service.settings import Settings

PNG = MediaKind("image/png", (b"\x89PNG",), "a PNG image")
MAX_CHIP_BYTES = 8 * 2**20
MACHINE = "analysis"


@dataclass(frozen=True)
class FoundChange:
    """One change object as any detector reports it, ready to store.

    `geom` is a lon/lat polygon; `chips` are (before, after) PNGs already stored, or None.
    """

    geom: Polygon
    change_type: ChangeType
    benign: bool
    confidence: float
    area_m2: float
    onset_at: datetime | None = None
    chips: tuple[StoredObject, StoredObject] | None = None


@dataclass(frozen=True)
class StoredDetection:
    detection_id: int
    screening: str
    case_id: int | None
    created: bool


@dataclass(frozen=True)
class DetectorRun:
    """What produced the changes: stored with every detection so decisions can be replayed."""

    source: DetectionSource
    detector_version: str
    parameters: dict[str, Any] = field(default_factory=dict)
    reference_scene_id: int | None = None
    backfill: bool = False  # found by a batch backfill over past imagery, not live ingest


def parameters_json(params: Any) -> dict[str, Any]:
    """A detector's parameters dataclass as JSON, stored with each detection it made."""
    value = _jsonable(dataclasses.asdict(params))
    assert isinstance(value, dict)
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, float) and not math.isfinite(value):
        # JSON has no Infinity or NaN (PostgreSQL refuses them): "inf", "-inf", "nan", which
        # float() reads back.
        return str(value)
    return value


def change_type_of(label: str) -> ChangeType:
    """The stored change type for a detector's label; unknown labels are kept as `unknown`."""
    try:
        return ChangeType(label)
    except ValueError:
        return CAMERA_TYPES.get(label, ChangeType.unknown)


# The camera detector guesses coarser kinds than the screening vocabulary.
CAMERA_TYPES = {
    "building_or_hardening": ChangeType.building,
    "soil_works": ChangeType.excavation,
    "machinery_or_object": ChangeType.machinery,
    "land_change": ChangeType.unknown,
}


def found_changes(changes: Sequence[PairChange], data_dir: Path) -> list[FoundChange]:
    """A comparison's changes ready to store, their chips written as PNGs under `data_dir`."""
    stored: dict[int, tuple[StoredObject, StoredObject]] = {}
    found = []
    for change in changes:
        chips = None
        if change.chips is not None:
            # The parts of one object share one chip pair: store it once.
            key = id(change.chips)
            if key not in stored:
                before, after = (store_png(chip, data_dir) for chip in change.chips)
                stored[key] = (before, after)
            chips = stored[key]
        found.append(
            FoundChange(
                geom=change.geom,
                change_type=change_type_of(change.label),
                benign=change.benign,
                confidence=change.confidence,
                area_m2=change.area_m2,
                chips=chips,
            )
        )
    return found


def polygons_of(geom: BaseGeometry) -> list[Polygon]:
    """The polygon parts of a geometry, largest first (detections are single polygons)."""
    parts = [geom] if isinstance(geom, Polygon) else list(getattr(geom, "geoms", []))
    polygons = [p for p in parts if isinstance(p, Polygon) and not p.is_empty and p.area > 0]
    return sorted(polygons, key=lambda p: -p.area)


def store_detections(
    scene: Scene,
    changes: Sequence[FoundChange],
    *,
    run: DetectorRun,
    session: Session,
    settings: Settings,
) -> list[StoredDetection]:
    """Store `changes` of `scene` once each, screen them and open or update their cases."""
    lock_places([change.geom for change in changes], session=session, settings=settings)
    stored = []
    for index, change in enumerate(changes):
        detection, created = _get_or_add(scene, index, change, run, session)
        if created:
            result = screen_detection(detection, session=session, settings=settings)
            case = open_or_update_case(detection, result, session=session, settings=settings)
            if case is not None and change.chips is not None:
                _attach_chips(case, detection, change.chips, session=session)
        stored.append(
            StoredDetection(detection.id, str(detection.screening), detection.case_id, created)
        )
    return stored


def _get_or_add(
    scene: Scene, index: int, change: FoundChange, run: DetectorRun, session: Session
) -> tuple[Detection, bool]:
    existing = _find(session, scene.id, run.detector_version, index)
    if existing is not None:
        return existing, False
    detection = Detection(
        scene_id=scene.id,
        reference_scene_id=run.reference_scene_id,
        source=run.source,
        detector_version=run.detector_version,
        parameters=run.parameters,
        object_index=index,
        change_type=change.change_type,
        benign=change.benign,
        confidence=float(change.confidence),
        area_m2=float(change.area_m2),
        observed_at=scene.acquired_at,
        onset_at=change.onset_at,
        geom=change.geom,
        backfill=run.backfill,
    )
    try:
        with session.begin_nested():
            session.add(detection)
            session.flush()
    except IntegrityError:
        # Another job stored this object first (a re-run racing the original).
        existing = _find(session, scene.id, run.detector_version, index)
        if existing is None:
            raise
        return existing, False
    return detection, True


def _find(session: Session, scene_id: int, version: str, index: int) -> Detection | None:
    return session.scalars(
        select(Detection).where(
            Detection.scene_id == scene_id,
            Detection.detector_version == version,
            Detection.object_index == index,
        )
    ).one_or_none()


def _attach_chips(
    case: Case,
    detection: Detection,
    chips: tuple[StoredObject, StoredObject],
    *,
    session: Session,
) -> None:
    centre = detection.geom.centroid
    for kind, chip in zip((EvidenceKind.chip_before, EvidenceKind.chip_after), chips, strict=True):
        attach_evidence(
            case,
            session=session,
            kind=kind,
            sha256=chip.sha256,
            storage_uri=chip.storage_uri,
            media_type=chip.media_type,
            size_bytes=chip.size_bytes,
            uploaded_by=MACHINE,
            detection_id=detection.id,
            taken_at=detection.observed_at,
            lon=centre.x,
            lat=centre.y,
        )


def store_png(image: NDArray[np.uint8], data_dir: Path) -> StoredObject:
    """Write an RGB image (rows, cols, 3) as a content-addressed PNG under `data_dir`."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", optimize=False)
    with ObjectWriter(data_dir, kind=PNG, max_bytes=MAX_CHIP_BYTES) as writer:
        writer.write(buffer.getvalue())
        staged = writer.finish()
    return commit_object(staged, data_dir)
