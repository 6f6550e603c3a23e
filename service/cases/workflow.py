"""One case per place: open, extend and reopen cases from screened detections.

The status transition table lives here; the inspector-facing transitions build on it later.
Every change bumps `case.version`, appends one hash-chained event and, where the monitoring
centre should hear about it, one outbox row, all in the caller's transaction (flush only).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

import shapely
from pyproj import CRS, Transformer
from shapely.geometry import MultiPolygon
from shapely.geometry.base import BaseGeometry
from sqlalchemy import Integer, cast, func, select
from sqlalchemy.orm import Session

from models import Case, Detection, Jurisdiction, LayerHit, Scene
from models.base import utcnow
from models.case import CaseStatus, DismissalReason
from models.detection import Screening
from models.geo import SRID
from models.jurisdiction import JurisdictionLevel
from service.alerts.outbox import AlertType, record_alert
from service.cases.events import append_event, status_entered_at
from service.errors import InvalidInputError, InvalidTransitionError
from service.screening.priority import (
    PriorityInputs,
    combined_confidence,
    confidence_level,
    priority_score,
)
from service.screening.screen import ScreeningResult
from service.settings import Settings
from service.spatial import area_m2, iter_intersecting, project

S = CaseStatus
# The one transition table: from each status, the statuses a case may move to.
TRANSITIONS: dict[CaseStatus, frozenset[CaseStatus]] = {
    S.new: frozenset({S.dispatched, S.dismissed}),  # the centre may dismiss before dispatch
    S.dispatched: frozenset({S.verifying}),
    S.verifying: frozenset({S.confirmed, S.dismissed}),
    S.confirmed: frozenset({S.rectifying}),
    S.rectifying: frozenset({S.rectified}),
    S.rectified: frozenset({S.closed, S.new}),  # new: a rebound before closing
    S.closed: frozenset({S.new}),  # a rebound reopens a closed case
    S.dismissed: frozenset(),
}
OPEN_STATUSES = frozenset({S.new, S.dispatched, S.verifying, S.confirmed, S.rectifying})
REBOUND_STATUSES = frozenset({S.rectified, S.closed})
LEVEL_RANK = {
    JurisdictionLevel.village: 0,
    JurisdictionLevel.township: 1,
    JurisdictionLevel.district: 2,
    JurisdictionLevel.city: 3,
}
# Why a field check found no violation; the first two also silence repeats (see screening).
DISMISSAL_REASONS = frozenset(DismissalReason)
MACHINE_ROLE = "system"
MIN_GROWTH_M2 = 0.01  # below this the outline did not really grow (floating-point noise)


def check_transition(current: CaseStatus, target: CaseStatus) -> None:
    if target not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "none (final state)"
        raise InvalidTransitionError(
            f"a case cannot go from {current} to {target}; from {current} it may go to: {allowed}"
        )


def open_or_update_case(
    detection: Detection,
    screening: ScreeningResult,
    *,
    session: Session,
    settings: Settings,
    actor: str = "machine-review",
    now: datetime | None = None,
) -> Case | None:
    """The case for a suspected violation: joined, reopened as a rebound, or newly opened.

    Returns None for any other screening outcome. A detection already attached to a case
    returns that case unchanged, so re-running a job changes nothing.
    """
    if screening.detection_id != detection.id:
        raise InvalidInputError(
            f"screening result is for detection {screening.detection_id}, not {detection.id}: "
            "screen this detection first"
        )
    if screening.outcome != Screening.suspected_violation:
        return None
    if detection.case_id is not None:
        return session.get(Case, detection.case_id)
    now = now or utcnow()
    candidates = find_candidate_cases(detection, session=session, settings=settings)
    if candidates.open:
        oldest, *others = candidates.open
        _join(oldest, detection, session, settings, actor, [c.id for c in others])
        return oldest
    if candidates.rebound:
        return _reopen(candidates.rebound[0], detection, session, settings, actor, now)
    return _open(detection, session, settings, actor, now)


@dataclass(frozen=True)
class Candidates:
    open: list[Case]  # oldest first
    rebound: list[Case]  # rectified or closed before the detection was seen, oldest first


def find_candidate_cases(
    detection: Detection, *, session: Session, settings: Settings
) -> Candidates:
    """Cases within the merge buffer of `detection`: open ones seen within the time window,
    and rectified or closed ones the detection came after.

    The window is counted from the detection's reference look, not from its own date: a
    satellite pass compared with the last clear one before it continues a case last seen on
    that earlier look, however many cloudy weeks lie between the two.
    """
    search = buffer_m(detection.geom, settings.case_merge_buffer_m, settings.area_crs)
    lock_place(search, session=session)
    statement = (
        select(Case)
        .where(Case.status.in_(OPEN_STATUSES | REBOUND_STATUSES))
        .order_by(Case.first_seen_at, Case.id)
    )
    window = timedelta(days=settings.case_merge_window_days)
    seen = detection.observed_at
    looked = _reference_look_at(detection, session)
    open_cases, rebound_cases = [], []
    for case in iter_intersecting(session, statement, Case, search):
        if case.status in OPEN_STATUSES:
            if case.first_seen_at - window <= seen and looked <= case.last_seen_at + window:
                open_cases.append(case)
            continue
        finished_at = status_entered_at(case.id, case.status, session=session)
        if seen > (finished_at or case.last_seen_at):
            rebound_cases.append(case)
    return Candidates(open_cases, rebound_cases)


#: Side, in degrees, of the lon/lat cells whose locks serialise case placement (about 1 km).
PLACE_CELL_DEG = 0.01


def lock_place(search: BaseGeometry, *, session: Session) -> None:
    """Hold every cell `search` (lon/lat) touches until the transaction ends, on PostgreSQL.

    Two workers placing detections of one place at once would each find no case (neither
    has committed its own yet) and open two. Whoever holds the cells looks for cases first; the
    other waits, then sees the committed case and joins it. Two searches that overlap share a
    cell, so this is enough. The two-integer advisory locks have a key space of their own,
    apart from the case-code lock's. SQLite lets one writer in at a time anyway.
    """
    _lock_cells(_cells(search), session=session)


def lock_places(geoms: Iterable[BaseGeometry], *, session: Session, settings: Settings) -> None:
    """`lock_place` for the merge searches of all `geoms` (lon/lat) at once.

    A transaction that places several detections takes all their cells, in one global order,
    before its first new case takes the case-code lock: a cell taken after that lock could
    wait for a worker that waits for the lock. Cells already held are taken again at once.
    """
    cells: set[tuple[int, int]] = set()
    for geom in geoms:
        cells |= _cells(buffer_m(geom, settings.case_merge_buffer_m, settings.area_crs))
    _lock_cells(cells, session=session)


def _cells(search: BaseGeometry) -> set[tuple[int, int]]:
    west, south, east, north = search.bounds
    columns = range(math.floor(west / PLACE_CELL_DEG), math.floor(east / PLACE_CELL_DEG) + 1)
    rows = range(math.floor(south / PLACE_CELL_DEG), math.floor(north / PLACE_CELL_DEG) + 1)
    return {(column, row) for column in columns for row in rows}


def _lock_cells(cells: set[tuple[int, int]], *, session: Session) -> None:
    if session.get_bind().dialect.name != "postgresql":
        return
    # One order for every transaction, so that waits cannot form a cycle.
    for column, row in sorted(cells):
        lock = func.pg_advisory_xact_lock(cast(column, Integer), cast(row, Integer))
        session.execute(select(lock))


def _reference_look_at(detection: Detection, session: Session) -> datetime:
    """When the image `detection` was compared with was taken (its own time if none was)."""
    if detection.reference_scene_id is None:
        return detection.observed_at
    # `get` answers without a query when the session has already loaded the scene.
    reference = session.get(Scene, detection.reference_scene_id)
    taken = reference.acquired_at if reference is not None else None
    return min(taken or detection.observed_at, detection.observed_at)


@lru_cache(maxsize=8)
def _to_lonlat(area_crs: str) -> Transformer:
    return Transformer.from_crs(CRS.from_user_input(area_crs), CRS.from_epsg(SRID), always_xy=True)


def buffer_m(geom: BaseGeometry, distance_m: float, area_crs: str) -> BaseGeometry:
    """`geom` (lon/lat) grown by `distance_m` metres, measured in the projected area CRS."""
    grown = project(geom, area_crs).buffer(distance_m)
    return shapely.transform(grown, _to_lonlat(area_crs).transform, interleaved=False)


def _open(
    detection: Detection, session: Session, settings: Settings, actor: str, now: datetime
) -> Case:
    case = Case(
        code=next_case_code(settings.case_code_prefix, detection.observed_at.year, session=session),
        status=S.new,
        version=1,
        geom=_as_multipolygon(detection.geom),
        area_m2=area_m2(detection.geom, settings.area_crs),
        change_types=[str(detection.change_type)],
        sources=[str(detection.source)],
        first_seen_at=detection.observed_at,
        last_seen_at=detection.observed_at,
        onset_before=detection.observed_at,
        jurisdiction_id=jurisdiction_for(detection.geom, session=session),
        due_at=due_at_for(S.new, now, settings),
        backfill=detection.backfill,
    )
    session.add(case)
    session.flush()
    detection.case_id = case.id
    _refresh_scores(case, session, settings)
    payload = {"detection_id": detection.id, "source": str(detection.source)}
    append_event(
        case,
        session=session,
        action="opened",
        actor=actor,
        role=MACHINE_ROLE,
        to_status=S.new,
        payload=payload,
    )
    record_alert(case, session=session, event_type=AlertType.case_created, reason="new_detection")
    return case


def _join(
    case: Case,
    detection: Detection,
    session: Session,
    settings: Settings,
    actor: str,
    also_overlapping: list[int],
) -> None:
    before_area, before_confidence = case.area_m2, case.confidence
    before_level = case.confidence_level
    _absorb(case, detection, session, settings)
    case.version += 1
    grown_m2 = case.area_m2 - before_area
    payload = {
        "detection_id": detection.id,
        "source": str(detection.source),
        "grown_m2": round(grown_m2, 2),
        "confidence": [round(before_confidence, 4), round(case.confidence, 4)],
        # Cases are not merged automatically: the others are named for a person to decide.
        "also_overlaps_case_ids": also_overlapping,
    }
    append_event(
        case,
        session=session,
        action="detection_attached",
        actor=actor,
        role=MACHINE_ROLE,
        payload=payload,
    )
    reasons = []
    if grown_m2 > MIN_GROWTH_M2:
        reasons.append("outline_grown")
    if case.confidence > before_confidence or case.confidence_level != before_level:
        reasons.append("confidence_raised")
    if reasons:
        record_alert(
            case,
            session=session,
            event_type=AlertType.case_updated,
            reason="+".join(reasons),
            details={"grown_m2": payload["grown_m2"]},
        )


def _reopen(
    case: Case,
    detection: Detection,
    session: Session,
    settings: Settings,
    actor: str,
    now: datetime,
) -> Case:
    previous = case.status
    check_transition(previous, S.new)
    reason = (
        f"rebound: {detection.source} detection {detection.id} seen "
        f"{detection.observed_at.isoformat()} over a case that was {previous}"
    )
    case.status = S.new
    case.reopen_count += 1
    case.escalated = True
    case.escalation_reason = reason
    case.due_at = due_at_for(S.new, now, settings)
    _absorb(case, detection, session, settings)
    case.version += 1
    append_event(
        case,
        session=session,
        action="reopened",
        actor=actor,
        role=MACHINE_ROLE,
        from_status=previous,
        to_status=S.new,
        payload={"detection_id": detection.id, "reason": reason},
    )
    record_alert(case, session=session, event_type=AlertType.case_reopened, reason=reason)
    return case


def _absorb(case: Case, detection: Detection, session: Session, settings: Settings) -> None:
    """Fold the detection into the case: outline, area, types, sources, times, scores."""
    detection.case_id = case.id
    case.geom = _as_multipolygon(shapely.union(case.geom, detection.geom))
    case.area_m2 = area_m2(case.geom, settings.area_crs)
    # JSON columns are replaced, not mutated, so the ORM sees the change.
    case.change_types = sorted({*case.change_types, str(detection.change_type)})
    case.sources = sorted({*case.sources, str(detection.source)})
    case.first_seen_at = min(case.first_seen_at, detection.observed_at)
    case.last_seen_at = max(case.last_seen_at, detection.observed_at)
    case.onset_before = min(case.onset_before or detection.observed_at, detection.observed_at)
    if case.onset_likeliest is not None and case.onset_likeliest > case.onset_before:
        # An older sighting joined: the change was there by then, whatever the trace found.
        case.onset_likeliest = case.onset_before
    _refresh_scores(case, session, settings)


def _refresh_scores(case: Case, session: Session, settings: Settings) -> None:
    session.flush()
    sightings = session.execute(
        select(Detection.source, Detection.confidence, Detection.geom)
        .where(Detection.case_id == case.id)
        .order_by(Detection.observed_at, Detection.id)
    ).all()
    best_by_source: dict[str, float] = {}
    for source, confidence, _ in sightings:
        best_by_source[str(source)] = max(best_by_source.get(str(source), 0.0), confidence)
    case.confidence = combined_confidence(best_by_source.values())
    case.confidence_level = confidence_level(set(best_by_source), len(sightings))
    first_area = area_m2(sightings[0].geom, settings.area_crs) if sightings else 0.0
    kinds = session.scalars(
        select(LayerHit.layer_kind)
        .join(Detection, Detection.id == LayerHit.detection_id)
        .where(Detection.case_id == case.id)
        .distinct()
    )
    inputs = PriorityInputs(
        confidence=case.confidence,
        layer_kinds=frozenset(kinds),
        area_m2=case.area_m2,
        growth=case.area_m2 / first_area - 1 if first_area > 0 else 0.0,
        sightings=len(sightings),
        reopen_count=case.reopen_count or 0,
    )
    case.priority = priority_score(inputs)


def _as_multipolygon(geom: BaseGeometry) -> MultiPolygon:
    polygons = shapely.get_parts(shapely.make_valid(geom))
    return MultiPolygon(
        [
            part
            for poly in polygons
            for part in shapely.get_parts(poly)
            if part.geom_type == "Polygon"
        ]
    )


def due_at_for(status: CaseStatus, start: datetime, settings: Settings) -> datetime | None:
    """When a case entering `status` at `start` becomes overdue (None: no deadline)."""
    hours = settings.case_due_hours.get(str(status))
    return start + timedelta(hours=hours) if hours is not None else None


def next_case_code(prefix: str, year: int, *, session: Session) -> str:
    """The next human reference of the year, e.g. "TX-2024-000123".

    Writers take numbers one at a time: on PostgreSQL a transaction-scoped advisory lock per
    prefix and year is held until the new case commits, so a second worker reads the number
    the first one took instead of drawing the same one (SQLite writers are serialised anyway).
    """
    stem = f"{prefix}-{year}-"
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(func.hashtext(f"case-code:{stem}"))))
    last = session.scalar(select(func.max(Case.code)).where(Case.code.like(f"{stem}%")))
    number = int(last.removeprefix(stem)) + 1 if last else 1
    return f"{stem}{number:06d}"


def jurisdiction_for(geom: BaseGeometry, *, session: Session) -> int | None:
    """The smallest jurisdiction (village before township before district) holding the
    detection's representative point, which always lies inside the polygon."""
    point = geom.representative_point()
    holders = [
        j
        for j in iter_intersecting(session, select(Jurisdiction), Jurisdiction, point)
        if j.geom.intersects(point)
    ]
    if not holders:
        return None
    best = min(holders, key=lambda j: (LEVEL_RANK[j.level], j.area_m2, j.id))
    return best.id
