"""Reading cases: filtered lists with cursor pagination, one case in full, statistics.

Every query starts from `visible_cases`, which limits rows to the caller's jurisdictions, so a
case outside them cannot be reached by id, list, bbox, export or statistics. A case that
exists but is not visible is reported exactly like one that does not exist.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Boolean, ColumnElement, Select, String, and_, cast, false, func, or_, select
from sqlalchemy.orm import Session

from models import ApiClient, Case, CaseEvent, Detection, Evidence, Jurisdiction, LayerHit
from models.base import utcnow
from models.case import CaseStatus, ConfidenceLevel
from service.auth import Principal, descendant_ids
from service.cases.schemas import (
    CaseDetailRead,
    CaseEventRead,
    CaseRead,
    CaseStatisticsRead,
    DetectionRead,
    EvidenceRead,
    LayerHitRead,
    StateDurations,
    geojson_geometry,
)
from service.cases.workflow import OPEN_STATUSES
from service.errors import InvalidInputError, NotFoundError
from service.spatial import BBox, iter_intersecting, m2_to_mu

SHARED_OUTCOMES = ("confirmed", "dismissed", "rectified")


@dataclass(frozen=True)
class CaseFilter:
    """What a caller narrows a list, an export or the statistics to (all optional, ANDed)."""

    bbox: BBox | None = None
    statuses: frozenset[CaseStatus] = frozenset()
    change_types: frozenset[str] = frozenset()
    sources: frozenset[str] = frozenset()
    confidence_levels: frozenset[ConfidenceLevel] = frozenset()
    jurisdiction_codes: frozenset[str] = frozenset()
    priority_min: int | None = None
    priority_max: int | None = None
    seen_from: datetime | None = None  # the case was seen at or after this time...
    seen_to: datetime | None = None  # ...and at or before this one
    escalated: bool | None = None


@dataclass(frozen=True)
class CasePageResult:
    cases: list[Case]
    next_cursor: str | None


def scope_clause(principal: Principal) -> ColumnElement[bool]:
    if principal.sees_everything:
        return Case.id.is_not(None)
    if not principal.jurisdiction_ids:
        return false()
    return Case.jurisdiction_id.in_(sorted(principal.jurisdiction_ids))


def visible_cases(principal: Principal, filters: CaseFilter, *, session: Session) -> Select:
    """`select(Case)` limited to the caller's jurisdictions and the filters (bbox excepted)."""
    dialect = session.get_bind().dialect.name
    clauses = [
        scope_clause(principal),
        *_filter_clauses(principal, filters, session=session, dialect=dialect),
    ]
    if dialect == "sqlite" and filters.bbox is not None:
        clauses = [_not_for_index(clause) for clause in clauses]
    return select(Case).where(*clauses)


def _not_for_index(clause: ColumnElement[bool]) -> ColumnElement[bool]:
    """Keep SQLite from answering `clause` with a b-tree index, so that the R*Tree drives.

    Without statistics (SQLite gathers none by itself) the planner takes an indexed equality
    such as `status IN (...)` for the most selective term and walks that index over most of
    the table, testing each row against the bbox: ~600,000 rows for a 100-case box among a
    million cases. Wrapped in `likely()` (same value; "usually true" to the planner) the term
    cannot use an index, and the bbox candidates from the R*Tree are looked up by rowid.
    """
    return func.likely(clause, type_=Boolean)


def _filter_clauses(
    principal: Principal, filters: CaseFilter, *, session: Session, dialect: str
) -> Iterable[ColumnElement[bool]]:
    if filters.statuses:
        yield Case.status.in_(sorted(filters.statuses))
    if filters.confidence_levels:
        yield Case.confidence_level.in_(sorted(filters.confidence_levels))
    if filters.change_types:
        yield or_(*(_json_list_has(Case.change_types, t, dialect) for t in filters.change_types))
    if filters.sources:
        yield or_(*(_json_list_has(Case.sources, s, dialect) for s in filters.sources))
    if filters.priority_min is not None:
        yield Case.priority >= filters.priority_min
    if filters.priority_max is not None:
        yield Case.priority <= filters.priority_max
    if filters.seen_from is not None:
        yield Case.last_seen_at >= filters.seen_from
    if filters.seen_to is not None:
        yield Case.first_seen_at <= filters.seen_to
    if filters.escalated is not None:
        yield Case.escalated.is_(filters.escalated)
    if filters.jurisdiction_codes:
        ids = _jurisdiction_filter_ids(principal, filters.jurisdiction_codes, session=session)
        yield Case.jurisdiction_id.in_(sorted(ids))


def _json_list_has(column: object, value: str, dialect: str) -> ColumnElement[bool]:
    """`value` is an element of the JSON array in `column` (JSONB containment on PostgreSQL)."""
    if dialect == "postgresql":
        wanted = func.jsonb_build_array(cast(value, String))
        return column.op("@>", return_type=Boolean)(wanted)  # type: ignore[attr-defined,no-any-return]
    elements = func.json_each(column).table_valued("value")
    return select(elements.c.value).where(elements.c.value == value).exists()


def _jurisdiction_filter_ids(
    principal: Principal, codes: frozenset[str], *, session: Session
) -> frozenset[int]:
    rows = session.execute(
        select(Jurisdiction.code, Jurisdiction.id).where(Jurisdiction.code.in_(sorted(codes)))
    )
    found: dict[str, int] = {code: jurisdiction_id for code, jurisdiction_id in rows}
    visible = {
        c for c, i in found.items() if principal.sees_everything or i in principal.jurisdiction_ids
    }
    if unknown := sorted(codes - visible):
        # Unknown and out-of-reach codes get one message, so existence does not leak.
        raise InvalidInputError(
            f"jurisdiction {', '.join(unknown)} is not one of yours: use the codes of your "
            "own jurisdictions or their sub-areas"
        )
    return descendant_ids(found.values(), session=session)


def encode_cursor(case: Case) -> str:
    raw = json.dumps([case.last_seen_at.isoformat(), case.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        seen, case_id = json.loads(base64.urlsafe_b64decode(padded))
        when = datetime.fromisoformat(seen)
        if when.tzinfo is None or not isinstance(case_id, int):
            raise ValueError(cursor)
        return when, case_id
    except (ValueError, TypeError, binascii.Error, json.JSONDecodeError) as error:
        raise InvalidInputError(
            "cursor is not one this service issued: copy next_cursor (or the 'next' link) from "
            "the previous page, or start again without a cursor"
        ) from error


def list_cases(
    principal: Principal,
    filters: CaseFilter,
    *,
    session: Session,
    limit: int,
    cursor: str | None = None,
) -> CasePageResult:
    """One page of visible cases, most recently seen first; `next_cursor` when more remain."""
    statement = visible_cases(principal, filters, session=session)
    if cursor:
        seen, case_id = decode_cursor(cursor)
        statement = statement.where(
            or_(Case.last_seen_at < seen, and_(Case.last_seen_at == seen, Case.id < case_id))
        )
    statement = statement.order_by(Case.last_seen_at.desc(), Case.id.desc())
    cases = _fetch(session, statement, filters.bbox, limit=limit + 1)
    more = len(cases) > limit
    cases = cases[:limit]
    return CasePageResult(cases, encode_cursor(cases[-1]) if more and cases else None)


def _fetch(
    session: Session, statement: Select, bbox: BBox | None, *, limit: int | None
) -> list[Case]:
    if bbox is None:
        if limit is not None:
            statement = statement.limit(limit)
        return list(session.scalars(statement))
    return list(iter_intersecting(session, statement, Case, bbox.geometry, limit=limit))


def all_cases(
    principal: Principal, filters: CaseFilter, *, session: Session, max_rows: int
) -> list[Case]:
    """Every visible case matching `filters` (for exports), refusing more than `max_rows`."""
    statement = visible_cases(principal, filters, session=session)
    statement = statement.order_by(Case.last_seen_at.desc(), Case.id.desc())
    cases = _fetch(session, statement, filters.bbox, limit=max_rows + 1)
    if len(cases) > max_rows:
        raise InvalidInputError(
            f"more than {max_rows} cases match: narrow the export with bbox, datetime, "
            "status or jurisdiction"
        )
    return cases


def get_case_or_raise(
    case_id: int, principal: Principal, *, session: Session, for_update: bool = False
) -> Case:
    """The case if the caller may see it; NotFoundError alike for missing and out of reach."""
    statement = select(Case).where(Case.id == case_id, scope_clause(principal))
    if for_update:
        statement = statement.with_for_update()
    case = session.scalars(statement.execution_options(populate_existing=True)).first()
    if case is None:
        raise NotFoundError(
            f"case {case_id} not found among the cases you can see; list them at /v1/cases"
        )
    return case


def case_reads(
    cases: Sequence[Case], *, session: Session, now: datetime | None = None
) -> list[CaseRead]:
    """Read models for `cases`, resolving jurisdiction codes and assignee names in two queries."""
    now = now or utcnow()
    codes = _names(session, Jurisdiction.id, Jurisdiction.code, {c.jurisdiction_id for c in cases})
    names = _names(session, ApiClient.id, ApiClient.name, {c.assignee_id for c in cases})
    return [_case_read(c, codes, names, now) for c in cases]


def _names(
    session: Session, id_column: object, name_column: object, ids: set[int | None]
) -> dict[int, str]:
    wanted = sorted(i for i in ids if i is not None)
    if not wanted:
        return {}
    rows = session.execute(select(id_column, name_column).where(id_column.in_(wanted)))  # type: ignore[call-overload,attr-defined]
    return {key: name for key, name in rows}


def _case_read(case: Case, codes: dict[int, str], names: dict[int, str], now: datetime) -> CaseRead:
    return case_read(
        case,
        jurisdiction=codes.get(case.jurisdiction_id) if case.jurisdiction_id else None,
        assignee=names.get(case.assignee_id) if case.assignee_id else None,
        bounds=case.geom.bounds,
        now=now,
    )


def case_read(
    case: Any,
    *,
    jurisdiction: str | None,
    assignee: str | None,
    bounds: tuple[float, float, float, float],
    now: datetime,
) -> CaseRead:
    """The read model of `case` (a `Case`, or any object with its columns as attributes),
    its jurisdiction's code, assignee's name and outline's bounds given."""
    return CaseRead(
        id=case.id,
        code=case.code,
        status=case.status,
        version=case.version,
        priority=case.priority,
        confidence=case.confidence,
        confidence_level=case.confidence_level,
        change_types=list(case.change_types),
        sources=list(case.sources),
        jurisdiction=jurisdiction,
        assignee=assignee,
        area_m2=round(case.area_m2, 2),
        area_mu=round(m2_to_mu(case.area_m2), 4),
        first_seen_at=case.first_seen_at,
        last_seen_at=case.last_seen_at,
        onset_after=case.onset_after,
        onset_before=case.onset_before,
        onset_likeliest=case.onset_likeliest,
        onset_parts=case.onset_parts or [],
        due_at=case.due_at,
        overdue=case.status in OPEN_STATUSES and case.due_at is not None and case.due_at < now,
        escalated=case.escalated,
        escalation_reason=case.escalation_reason,
        reopen_count=case.reopen_count or 0,
        dismissal_reason=case.dismissal_reason,
        backfill=case.backfill,
        bbox=list(bounds),
    )


def case_detail(case: Case, *, session: Session) -> CaseDetailRead:
    """One case in full: its detections with their layer hits, its evidence and its history."""
    detections = list(
        session.scalars(
            select(Detection)
            .where(Detection.case_id == case.id)
            .order_by(Detection.observed_at, Detection.id)
        )
    )
    hits: dict[int, list[LayerHitRead]] = defaultdict(list)
    for hit in session.scalars(
        select(LayerHit)
        .where(LayerHit.detection_id.in_([d.id for d in detections]))
        .order_by(LayerHit.id)
    ):
        hits[hit.detection_id].append(LayerHitRead.model_validate(hit, from_attributes=True))
    evidence = session.scalars(
        select(Evidence).where(Evidence.case_id == case.id).order_by(Evidence.id)
    )
    events = session.scalars(
        select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.seq)
    )
    return CaseDetailRead(
        **case_reads([case], session=session)[0].model_dump(),
        geometry=geojson_geometry(case.geom),
        detections=[_detection_read(d, hits[d.id]) for d in detections],
        evidence=[EvidenceRead.model_validate(e, from_attributes=True) for e in evidence],
        history=[CaseEventRead.model_validate(e, from_attributes=True) for e in events],
    )


def _detection_read(detection: Detection, hits: list[LayerHitRead]) -> DetectionRead:
    return DetectionRead(
        id=detection.id,
        scene_id=detection.scene_id,
        source=str(detection.source),
        detector_version=detection.detector_version,
        change_type=str(detection.change_type),
        confidence=detection.confidence,
        area_m2=round(detection.area_m2, 2),
        observed_at=detection.observed_at,
        onset_at=detection.onset_at,
        screening=str(detection.screening),
        backfill=detection.backfill,
        geometry=geojson_geometry(detection.geom),
        layer_hits=hits,
    )


def case_statistics(
    principal: Principal, filters: CaseFilter, *, session: Session
) -> CaseStatisticsRead:
    """Counts, time in each state and outcome shares over the visible cases matching `filters`."""
    cases = _fetch(
        session, visible_cases(principal, filters, session=session), filters.bbox, limit=None
    )
    ids = {c.id for c in cases}
    codes = _names(session, Jurisdiction.id, Jurisdiction.code, {c.jurisdiction_id for c in cases})
    stays, reached = _history(session, principal, filters, ids)
    total = len(cases)
    shares = {f"{o}": len(reached[o]) / total if total else 0.0 for o in SHARED_OUTCOMES}
    shares["reopened"] = (
        sum(1 for c in cases if (c.reopen_count or 0) > 0) / total if total else 0.0
    )
    return CaseStatisticsRead(
        total=total,
        by_status=dict(Counter(str(c.status) for c in cases)),
        by_type=dict(Counter(t for c in cases for t in c.change_types)),
        by_jurisdiction=dict(Counter(codes.get(c.jurisdiction_id or 0, "none") for c in cases)),
        by_month=dict(sorted(Counter(c.first_seen_at.strftime("%Y-%m") for c in cases).items())),
        time_in_state={s: _durations(hours) for s, hours in sorted(stays.items())},
        shares=shares,
    )


def _history(
    session: Session, principal: Principal, filters: CaseFilter, ids: set[int]
) -> tuple[dict[str, list[float]], dict[str, set[int]]]:
    """Hours spent in each state (completed stays only) and which cases reached which state."""
    scoped = visible_cases(principal, filters, session=session).with_only_columns(Case.id)
    rows = session.execute(
        select(CaseEvent.case_id, CaseEvent.to_status, CaseEvent.created_at)
        .where(CaseEvent.case_id.in_(scoped.scalar_subquery()), CaseEvent.to_status.is_not(None))
        .order_by(CaseEvent.case_id, CaseEvent.seq)
    )
    stays: dict[str, list[float]] = defaultdict(list)
    reached: dict[str, set[int]] = defaultdict(set)
    previous: tuple[int, str, datetime] | None = None
    for case_id, status, at in rows:
        # Skip cases outside the exact bbox (SQLite filters by index boxes first).
        if case_id not in ids or status is None:
            continue
        reached[status].add(case_id)
        if previous is not None and previous[0] == case_id:
            stays[previous[1]].append((at - previous[2]) / timedelta(hours=1))
        previous = (case_id, status, at)
    return stays, reached


def _durations(hours: list[float]) -> StateDurations:
    values = np.asarray(hours, dtype=float)
    return StateDurations(
        count=len(values),
        median_hours=round(float(np.median(values)), 3),
        p90_hours=round(float(np.percentile(values, 90)), 3),
    )


def visible_extent(
    principal: Principal, *, session: Session
) -> tuple[list[float], list[str | None]]:
    """Bounding box (lon/lat) and time span (first to last seen) of the caller's cases."""
    scoped = select(Case).where(scope_clause(principal)).subquery()
    row = session.execute(
        select(
            func.min(scoped.c.minx),
            func.min(scoped.c.miny),
            func.max(scoped.c.maxx),
            func.max(scoped.c.maxy),
            func.min(scoped.c.first_seen_at),
            func.max(scoped.c.last_seen_at),
        )
    ).one()
    bbox = [float(v) for v in row[:4]] if row[0] is not None else [-180.0, -90.0, 180.0, 90.0]
    span = [_iso_or_none(row[4]), _iso_or_none(row[5])]
    return bbox, span


def _iso_or_none(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)
