"""Layer hits of a detection on the legal layers valid when it was seen, and the verdict."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import shapely
from shapely.geometry.base import BaseGeometry
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from models import Case, Detection, LayerFeature, LayerHit, LayerVersion
from models.case import CaseStatus
from models.detection import Screening
from models.layer import Layer, LayerKind
from service.cases.events import status_entered_at
from service.errors import InvalidInputError
from service.screening.priority import X_LINE_KINDS
from service.settings import Settings
from service.spatial import area_m2, iter_intersecting, m2_to_mu

FARMLAND_KINDS = frozenset({LayerKind.permanent_basic_farmland, LayerKind.cultivated_land})
APPROVAL_KINDS = frozenset({LayerKind.approved_construction, LayerKind.facility_agriculture})
# Dismissals that mean "this kind of change here is legitimate", so repeats are not alarms.
SUPPRESSING_DISMISSALS = frozenset({"farming_activity", "approved_use"})


@dataclass(frozen=True)
class HitSummary:
    layer_kind: str
    layer_version_id: int
    layer_feature_id: int
    overlap_m2: float
    overlap_mu: float


@dataclass(frozen=True)
class ScreeningResult:
    """The verdict on one detection and the evidence for it."""

    detection_id: int
    outcome: Screening
    hits: tuple[HitSummary, ...]
    tags: tuple[str, ...]  # X lines the detection touches
    in_urban_boundary: bool
    farmland_m2: float  # overlap with permanent basic farmland or cultivated land
    approval_fraction: float  # share of the detection covered by approved parcels
    suppressed_by_case_id: int | None = None

    @property
    def layer_kinds(self) -> frozenset[str]:
        return frozenset(hit.layer_kind for hit in self.hits)


def screen_detection(
    detection: Detection, *, session: Session, settings: Settings
) -> ScreeningResult:
    """Intersect `detection` with the layer versions valid at its time and record the verdict.

    Writes one LayerHit per touched feature (running it again adds none) and sets
    `detection.screening`; flushes, never commits.
    """
    _check_outline(detection)
    hits = record_layer_hits(detection, session=session, settings=settings)
    detection_m2 = area_m2(detection.geom, settings.area_crs)
    kinds = {hit.layer_kind for hit in hits}
    farmland_m2 = _union_overlap_m2(detection, hits, FARMLAND_KINDS, session, settings)
    approval_m2 = _union_overlap_m2(detection, hits, APPROVAL_KINDS, session, settings)
    approval_fraction = approval_m2 / detection_m2 if detection_m2 > 0 else 0.0
    outcome, suppressor = _verdict(
        detection, farmland_m2, approval_fraction, session=session, settings=settings
    )
    detection.screening = outcome
    session.flush()
    return ScreeningResult(
        detection_id=detection.id,
        outcome=outcome,
        hits=tuple(hits),
        tags=tuple(sorted(kinds & X_LINE_KINDS)),
        in_urban_boundary=LayerKind.urban_development_boundary in kinds,
        farmland_m2=farmland_m2,
        approval_fraction=approval_fraction,
        suppressed_by_case_id=suppressor,
    )


def _check_outline(detection: Detection) -> None:
    geom = detection.geom
    if geom is None or geom.is_empty or geom.area == 0:
        raise InvalidInputError(
            f"detection {detection.id} has no outline (empty or zero area): "
            "store its polygon before screening"
        )
    if not geom.is_valid:
        raise InvalidInputError(
            f"detection {detection.id} outline is not a valid polygon "
            f"({shapely.is_valid_reason(geom)}): repair it (e.g. shapely.make_valid) and retry"
        )


def _verdict(
    detection: Detection,
    farmland_m2: float,
    approval_fraction: float,
    *,
    session: Session,
    settings: Settings,
) -> tuple[Screening, int | None]:
    if detection.benign:
        return Screening.benign, None
    if approval_fraction >= settings.min_overlap_fraction_for_approval:
        return Screening.covered_by_approval, None
    if farmland_m2 <= 0:
        return Screening.outside_farmland, None
    suppressor = find_suppressing_case(detection, session=session, settings=settings)
    if suppressor is not None:
        return Screening.suppressed, suppressor.id
    return Screening.suspected_violation, None


def valid_layer_versions(at: datetime, *, session: Session) -> list[LayerVersion]:
    """For each layer, the latest version whose validity covers `at` (replays the past)."""
    statement = (
        select(LayerVersion)
        .where(LayerVersion.valid_from <= at)
        .where(or_(LayerVersion.valid_to.is_(None), LayerVersion.valid_to > at))
        .order_by(LayerVersion.layer_id, LayerVersion.valid_from.desc(), LayerVersion.id.desc())
    )
    latest: dict[int, LayerVersion] = {}
    for version in session.scalars(statement):
        latest.setdefault(version.layer_id, version)
    return list(latest.values())


def record_layer_hits(
    detection: Detection, *, session: Session, settings: Settings
) -> list[HitSummary]:
    """Every feature of the valid layer versions that `detection` overlaps, stored once each."""
    versions = valid_layer_versions(detection.observed_at, session=session)
    if not versions:
        return []
    kinds = select(Layer.id, Layer.kind).where(Layer.id.in_([v.layer_id for v in versions]))
    kind_by_layer = {layer_id: kind for layer_id, kind in session.execute(kinds)}
    kind_by_version = {v.id: str(kind_by_layer[v.layer_id]) for v in versions}
    existing = {
        hit.layer_feature_id: hit
        for hit in session.scalars(select(LayerHit).where(LayerHit.detection_id == detection.id))
    }
    statement = (
        select(LayerFeature)
        .where(LayerFeature.layer_version_id.in_(kind_by_version))
        .order_by(LayerFeature.id)
    )
    hits = []
    for feature in iter_intersecting(session, statement, LayerFeature, detection.geom):
        overlap_m2 = area_m2(detection.geom.intersection(feature.geom), settings.area_crs)
        if overlap_m2 <= 0:  # touching along an edge is not an overlap
            continue
        hit = existing.get(feature.id) or _add_hit(
            session, detection, feature, kind_by_version[feature.layer_version_id], overlap_m2
        )
        hits.append(_summary(hit))
    session.flush()
    return hits


def _add_hit(
    session: Session, detection: Detection, feature: LayerFeature, kind: str, overlap_m2: float
) -> LayerHit:
    hit = LayerHit(
        detection_id=detection.id,
        layer_version_id=feature.layer_version_id,
        layer_feature_id=feature.id,
        layer_kind=kind,
        overlap_m2=overlap_m2,
        overlap_mu=m2_to_mu(overlap_m2),
    )
    session.add(hit)
    return hit


def _summary(hit: LayerHit) -> HitSummary:
    return HitSummary(
        layer_kind=hit.layer_kind,
        layer_version_id=hit.layer_version_id,
        layer_feature_id=hit.layer_feature_id,
        overlap_m2=hit.overlap_m2,
        overlap_mu=hit.overlap_mu,
    )


def _union_overlap_m2(
    detection: Detection,
    hits: list[HitSummary],
    kinds: frozenset[LayerKind],
    session: Session,
    settings: Settings,
) -> float:
    # Features of different layers (or parts of one) may overlap each other: union, not sum.
    feature_ids = [hit.layer_feature_id for hit in hits if hit.layer_kind in kinds]
    if not feature_ids:
        return 0.0
    shapes: list[BaseGeometry] = list(
        session.scalars(select(LayerFeature.geom).where(LayerFeature.id.in_(feature_ids)))
    )
    covered = detection.geom.intersection(shapely.union_all(shapes))
    return area_m2(covered, settings.area_crs)


def find_suppressing_case(
    detection: Detection, *, session: Session, settings: Settings
) -> Case | None:
    """A case at this place dismissed as farming or approved use, recently enough to count.

    "Recently" is the suppression window before the detection's own time, so a backfill over
    old imagery is judged by the dismissals that existed then.
    """
    statement = (
        select(Case)
        .where(Case.status == CaseStatus.dismissed)
        .where(Case.dismissal_reason.in_(SUPPRESSING_DISMISSALS))
        .order_by(Case.id)
    )
    window = timedelta(days=settings.suppression_days)
    for case in iter_intersecting(session, statement, Case, detection.geom):
        if case.id == detection.case_id or str(detection.change_type) not in case.change_types:
            continue
        dismissed_at = status_entered_at(case.id, CaseStatus.dismissed, session=session)
        if dismissed_at and dismissed_at <= detection.observed_at <= dismissed_at + window:
            return case
    return None
