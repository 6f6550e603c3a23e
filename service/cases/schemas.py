"""What the case API takes (per-role input models) and what it gives back (Read models, GeoJSON).

Property-level authorization lives in the input models: they forbid unknown fields, so nobody
can set priority, jurisdiction, confidence or any detector field through the API, and only
the roles that dispatch may name an assignee.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import shapely
from pydantic import BaseModel, ConfigDict, Field, model_validator
from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry

from models.case import CaseStatus, ConfidenceLevel, DismissalReason


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class InspectorTransitionCreate(_Input):
    """A status change an inspector asks for; the case's other fields are not theirs to set."""

    to: CaseStatus | None = Field(None, description="The status to move the case to.")
    reason_code: DismissalReason | None = Field(
        None, description="Required when dismissing: why this is not a violation."
    )
    note: str | None = Field(None, max_length=2000, description="Free text kept in the history.")

    @model_validator(mode="after")
    def _consistent(self) -> InspectorTransitionCreate:
        if self.to is None and not self._assigns():
            raise ValueError("say what to change: 'to' (a status) and/or 'assignee'")
        if self.to == CaseStatus.dismissed and self.reason_code is None:
            choices = ", ".join(DismissalReason)
            raise ValueError(f"a dismissal needs reason_code, one of: {choices}")
        if self.reason_code is not None and self.to != CaseStatus.dismissed:
            raise ValueError("reason_code is only for dismissals ('to': 'dismissed')")
        if self.reason_code == DismissalReason.other and not self.note:
            raise ValueError("reason_code 'other' needs a note that says what it was")
        if self.to == CaseStatus.new and not self.note:
            raise ValueError("reopening a case needs a note that says why")
        return self

    def _assigns(self) -> bool:
        return False


class TransitionCreate(InspectorTransitionCreate):
    """What a monitoring centre or an administrator may ask: a status change and/or an assignee."""

    assignee: str | None = Field(
        None, max_length=200, description="Name of the inspector client to assign the case to."
    )

    def _assigns(self) -> bool:
        return self.assignee is not None


class CommentCreate(_Input):
    text: str = Field(min_length=1, max_length=4000, description="The comment, plain text.")


class OnsetPartRead(BaseModel):
    """The traced onset of one place within a case that grew in places apart."""

    outline: dict[str, Any] = Field(description="The place, GeoJSON geometry in lon/lat.")
    first_seen: datetime = Field(description="When the first detection of this place was seen.")
    last_unchanged: datetime | None = Field(description="Last date it was clearly unchanged.")
    first_visible: datetime | None = Field(description="First date its change is visible.")
    likeliest_onset: datetime | None = Field(
        description="Date within that bracket its change most likely began on."
    )


class CaseRead(BaseModel):
    id: int
    code: str
    status: CaseStatus
    version: int
    priority: int
    confidence: float
    confidence_level: ConfidenceLevel
    change_types: list[str]
    sources: list[str]
    jurisdiction: str | None = Field(description="Code of the jurisdiction the case lies in.")
    assignee: str | None
    area_m2: float
    area_mu: float
    first_seen_at: datetime
    last_seen_at: datetime
    onset_after: datetime | None = Field(description="Last date the place was clearly unchanged.")
    onset_before: datetime | None = Field(description="First date the change is visible.")
    onset_likeliest: datetime | None = Field(
        description="Date within that bracket the change most likely began on, when traced: "
        "cloud may hide the dates just before the first visible one."
    )
    onset_parts: list[OnsetPartRead] = Field(
        description="When the case holds places apart that began at different times (a pond "
        "dug beside a building months later), the traced onset of each, in order of first "
        "sighting; empty for a case of one place, or one not traced."
    )
    due_at: datetime | None
    overdue: bool = Field(description="Still open after its deadline for the current state.")
    escalated: bool
    escalation_reason: str | None
    reopen_count: int
    dismissal_reason: str | None
    backfill: bool
    bbox: list[float] = Field(description="minx, miny, maxx, maxy in lon/lat degrees.")


class LayerHitRead(BaseModel):
    layer_kind: str
    layer_version_id: int
    layer_feature_id: int
    overlap_m2: float
    overlap_mu: float


class DetectionRead(BaseModel):
    id: int
    scene_id: int
    source: str
    detector_version: str
    change_type: str
    confidence: float
    area_m2: float
    observed_at: datetime
    onset_at: datetime | None
    screening: str
    backfill: bool
    geometry: dict[str, Any]
    layer_hits: list[LayerHitRead]


class EvidenceRead(BaseModel):
    id: int
    kind: str
    sha256: str
    media_type: str
    size_bytes: int
    taken_at: datetime | None
    lon: float | None
    lat: float | None
    detection_id: int | None
    uploaded_by: str
    note: str | None
    created_at: datetime


class CaseEventRead(BaseModel):
    seq: int
    action: str
    from_status: str | None
    to_status: str | None
    actor: str
    role: str
    request_id: str | None
    case_version: int
    payload: dict[str, Any]
    created_at: datetime
    hash: str


class CaseDetailRead(CaseRead):
    geometry: dict[str, Any]
    detections: list[DetectionRead]
    evidence: list[EvidenceRead]
    history: list[CaseEventRead]


class CasePage(BaseModel):
    items: list[CaseRead]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page.")
    links: list[dict[str, str]]


class StateDurations(BaseModel):
    count: int
    median_hours: float
    p90_hours: float


class CaseStatisticsRead(BaseModel):
    total: int
    by_status: dict[str, int]
    by_type: dict[str, int]
    by_jurisdiction: dict[str, int]
    by_month: dict[str, int] = Field(description="By month first seen, YYYY-MM (UTC).")
    time_in_state: dict[str, StateDurations] = Field(
        description="Completed stays in each state, from the case history."
    )
    shares: dict[str, float] = Field(
        description="Fraction of cases ever confirmed, dismissed, rectified, or reopened."
    )


def geojson_geometry(geom: BaseGeometry) -> dict[str, Any]:
    """RFC 7946 geometry: lon/lat, at most 7 decimals (about 1 cm), no CRS member."""
    return dict(mapping(shapely.set_precision(geom, 1e-7)))


def case_feature(case: CaseRead, geom: BaseGeometry) -> dict[str, Any]:
    properties = case.model_dump(mode="json", exclude={"bbox"})
    return {
        "type": "Feature",
        "id": case.id,
        "bbox": case.bbox,
        "geometry": geojson_geometry(geom),
        "properties": properties,
    }


def feature_collection(
    features: list[dict[str, Any]], *, links: list[dict[str, str]] | None = None, **extra: Any
) -> dict[str, Any]:
    collection: dict[str, Any] = {"type": "FeatureCollection", "features": features}
    if links is not None:
        collection["links"] = links
    return collection | extra
