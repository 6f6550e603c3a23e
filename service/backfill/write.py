"""Writing what workers computed: detections and cases through the live path, onsets, checks.

One process writes (fine for SQLite), one transaction per work unit, so a stopped backfill
has written whole units only. Detections are marked as backfill, and so are the alerts their
cases raise, unless the run asked for live alerts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import shapely
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.backfill import BackfillRun, BackfillUnit, BackfillUnitStatus
from models.base import utcnow
from models.case import Case, CaseEvent, EvidenceKind
from models.detection import DetectionSource
from models.scene import Scene
from service.alerts.outbox import ALERT_BACKFILL
from service.analysis.coverage import record_feature_observations
from service.analysis.pair import Chip
from service.analysis.store import DetectorRun, found_changes, store_detections, store_png
from service.backfill.compute import DateLook, PartOnset, TraceResult, UnitResult
from service.cases.events import append_event, attach_evidence
from service.settings import Settings

MACHINE = "backfill"


@contextmanager
def backfill_alerts(session: Session, *, live: bool) -> Iterator[None]:
    """Within the block, the alerts written are backfill (hidden from feeds) unless `live`."""
    session.info[ALERT_BACKFILL] = not live
    try:
        yield
    finally:
        session.info.pop(ALERT_BACKFILL, None)


@dataclass(frozen=True)
class UnitWrite:
    written: bool  # False: another writer had already written this unit
    new_case_ids: tuple[int, ...] = ()
    updated_case_ids: tuple[int, ...] = ()


def write_unit(
    result: UnitResult, run: BackfillRun, *, session: Session, settings: Settings
) -> UnitWrite:
    """Store one unit's changes as live ingest would, and mark the unit done (or failed)."""
    unit = session.get(BackfillUnit, result.unit_id, populate_existing=True)
    if unit is None or unit.status != BackfillUnitStatus.pending:
        return UnitWrite(False)
    unit.seconds = result.seconds
    unit.finished_at = utcnow()
    if result.comparison is None:
        unit.status = BackfillUnitStatus.failed
        unit.failure_reason = result.failure
        session.flush()
        return UnitWrite(True)
    scene = session.get(Scene, unit.after_scene_id)
    assert scene is not None
    last_case_id = session.scalar(select(func.max(Case.id))) or 0
    detector = DetectorRun(
        source=DetectionSource.remote_sensing,
        detector_version=run.detector_version,
        parameters=run.parameters,
        reference_scene_id=unit.before_scene_id,
        backfill=True,
    )
    changes = found_changes(result.comparison.changes, settings.data_dir)
    with backfill_alerts(session, live=run.alert):
        stored = store_detections(scene, changes, run=detector, session=session, settings=settings)
    record_feature_observations(
        list(result.comparison.observed),
        source=DetectionSource.remote_sensing,
        scene=scene,
        session=session,
    )
    unit.status = BackfillUnitStatus.done
    unit.objects = result.comparison.objects
    unit.pixels = result.comparison.pixels
    session.flush()
    cases = sorted({s.case_id for s in stored if s.case_id is not None})
    return UnitWrite(
        True,
        tuple(c for c in cases if c > last_case_id),
        tuple(c for c in cases if c <= last_case_id),
    )


def write_trace(
    result: TraceResult, *, session: Session, settings: Settings, actor: str = MACHINE
) -> bool:
    """Record a case's onset bracket and chips, and any rectification verdict; True if the
    case changed. Running it again with the same result changes nothing."""
    case = session.get(Case, result.case_id, populate_existing=True)
    if case is None:
        return False
    changed = _record_onset(case, result, session=session, settings=settings, actor=actor)
    if result.rectification is not None:
        changed |= _record_rectification(case, result, session, settings, actor)
    return changed


def _record_onset(
    case: Case, result: TraceResult, *, session: Session, settings: Settings, actor: str
) -> bool:
    after = result.onset_after.acquired_at if result.onset_after else None
    before = result.onset_before.acquired_at if result.onset_before else case.onset_before
    likeliest = (
        result.onset_likeliest.acquired_at if result.onset_likeliest else case.onset_likeliest
    )
    parts = [_part_json(part) for part in result.parts]
    bracket = (after, before, likeliest, parts)
    if (case.onset_after, case.onset_before, case.onset_likeliest, case.onset_parts) == bracket:
        return False
    case.onset_after, case.onset_before, case.onset_likeliest = after, before, likeliest
    case.onset_parts = parts
    case.version += 1
    append_event(
        case,
        session=session,
        action="onset_traced",
        actor=actor,
        role="system",
        payload={
            "last_unchanged": _look_json(result.onset_after),
            "first_visible": _look_json(result.onset_before),
            "likeliest_onset": _look_json(result.onset_likeliest),
            "parts": [
                {key: value for key, value in part.items() if key != "outline"} for part in parts
            ],
            "dates_looked_at": len(result.looks),
            "dates_observed": sum(look.state != "unobserved" for look in result.looks),
        },
    )
    if result.onset_chips is not None and result.onset_after and result.onset_before:
        notes = (
            f"trace: last clearly unchanged {after:%Y-%m-%d}" if after else "trace",
            f"trace: first visible {before:%Y-%m-%d}" if before else "trace",
        )
        looks = (result.onset_after, result.onset_before)
        _attach_chips(case, result.onset_chips, looks, notes, session, settings.data_dir, actor)
    return True


def _record_rectification(
    case: Case, result: TraceResult, session: Session, settings: Settings, actor: str
) -> bool:
    look = result.rectification_look
    action = f"rectification_{result.rectification}"
    # One event per verdict per date looked at: the same imagery says the same thing again.
    seen = {
        (event_action, str(payload.get("date")))
        for event_action, payload in session.execute(
            select(CaseEvent.action, CaseEvent.payload).where(CaseEvent.case_id == case.id)
        )
    }
    date = look.acquired_at.isoformat() if look else None
    if (action, str(date)) in seen:
        return False
    case.version += 1
    append_event(
        case,
        session=session,
        action=action,
        actor=actor,
        role="system",
        payload={"date": date, "changed_fraction": look.changed_fraction if look else None},
    )
    if result.rectification_chips is not None and look is not None and result.onset_before:
        label = "rectification observed" if result.rectification == "observed" else "still present"
        notes = ("violation as first seen", f"{label} {look.acquired_at:%Y-%m-%d}")
        looks = (result.onset_before, look)
        _attach_chips(
            case, result.rectification_chips, looks, notes, session, settings.data_dir, actor
        )
    return True


def _attach_chips(
    case: Case,
    chips: tuple[Chip, Chip],
    looks: tuple[DateLook, DateLook],
    notes: tuple[str, str],
    session: Session,
    data_dir: Path,
    actor: str,
) -> None:
    centre = case.geom.centroid
    kinds = (EvidenceKind.chip_before, EvidenceKind.chip_after)
    for kind, chip, look, note in zip(kinds, chips, looks, notes, strict=True):
        stored = store_png(chip, data_dir)
        attach_evidence(
            case,
            session=session,
            kind=kind,
            sha256=stored.sha256,
            storage_uri=stored.storage_uri,
            media_type=stored.media_type,
            size_bytes=stored.size_bytes,
            uploaded_by=actor,
            taken_at=look.acquired_at,
            lon=centre.x,
            lat=centre.y,
            note=note,
        )


def _part_json(part: PartOnset) -> dict[str, Any]:
    def day(look: DateLook | None) -> str | None:
        return look.acquired_at.isoformat() if look is not None else None

    return {
        # As read back from the column (lists, not tuples), so a trace run again compares equal.
        "outline": json.loads(shapely.to_geojson(part.outline)),
        "first_seen": part.reference_at.isoformat(),
        "last_unchanged": day(part.onset_after),
        "first_visible": day(part.onset_before),
        "likeliest_onset": day(part.onset_likeliest),
    }


def _look_json(look: DateLook | None) -> dict | None:
    if look is None:
        return None
    return {
        "scene_id": look.scene_id,
        "date": look.acquired_at.isoformat(),
        "changed_fraction": look.changed_fraction,
    }
