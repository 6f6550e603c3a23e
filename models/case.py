"""Cases (one per place, whichever sensor found it), their append-only history and evidence."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from shapely.geometry.base import BaseGeometry
from sqlalchemy import (
    BigInteger,
    Boolean,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigId, Json, Timestamped, UTCDateTime, utcnow
from models.geo import Geometry, Spatial

GENESIS_HASH = "0" * 64  # prev_hash of a case's first event, and the head of an empty chain


class CaseStatus(StrEnum):
    new = "new"
    dispatched = "dispatched"
    verifying = "verifying"
    confirmed = "confirmed"
    dismissed = "dismissed"
    rectifying = "rectifying"
    rectified = "rectified"
    closed = "closed"


class DismissalReason(StrEnum):
    """Why a case is not a violation; kept as a label the detector can learn from."""

    farming_activity = "farming_activity"
    approved_use = "approved_use"
    pre_existing = "pre_existing"
    detector_error = "detector_error"
    duplicate = "duplicate"
    other = "other"


class ConfidenceLevel(StrEnum):
    nominal = "nominal"
    high = "high"  # e.g. seen again, or large and in protected farmland
    highest = "highest"  # camera and satellite agree


class Case(Spatial, Timestamped, Base):
    __tablename__ = "case"
    __table_args__ = (Index(None, "status", "priority"), Index(None, "last_seen_at"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code: Mapped[str] = mapped_column(
        String(32), unique=True
    )  # human reference, e.g. C-2024-000123
    status: Mapped[CaseStatus] = mapped_column(
        Enum(CaseStatus, native_enum=False), default=CaseStatus.new
    )
    version: Mapped[int] = mapped_column(Integer, default=1)  # ETag for If-Match
    priority: Mapped[int] = mapped_column(Integer, default=0)  # 0 (low) .. 100 (urgent)
    confidence: Mapped[float] = mapped_column(Float, default=0.0)
    confidence_level: Mapped[ConfidenceLevel] = mapped_column(
        Enum(ConfidenceLevel, native_enum=False), default=ConfidenceLevel.nominal
    )
    change_types: Mapped[list[str]] = mapped_column(Json, default=list)
    sources: Mapped[list[str]] = mapped_column(Json, default=list)
    jurisdiction_id: Mapped[int | None] = mapped_column(ForeignKey("jurisdiction.id"), index=True)
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("api_client.id"))
    area_m2: Mapped[float] = mapped_column(Float, default=0.0)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    onset_after: Mapped[datetime | None] = mapped_column(UTCDateTime)  # last clearly unchanged
    onset_before: Mapped[datetime | None] = mapped_column(UTCDateTime)  # first change visible
    # The date within that bracket the change most likely began on (cloud may hide the dates
    # just before the first visible one); set by the trace.
    onset_likeliest: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A case that grew in places apart (a pond dug beside a building months later) also has
    # the bracket of each place, a place sighted with the case having the case's own:
    # [{"outline": GeoJSON, "first_seen": ISO, "last_unchanged", "first_visible",
    # "likeliest_onset": ISO or null}], in order of first sighting; set by the trace.
    onset_parts: Mapped[list[dict[str, Any]]] = mapped_column(
        Json, default=list, server_default="[]"
    )
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    escalated: Mapped[bool] = mapped_column(Boolean, default=False)
    escalation_reason: Mapped[str | None] = mapped_column(Text)
    reopen_count: Mapped[int] = mapped_column(Integer, default=0)
    dismissal_reason: Mapped[str | None] = mapped_column(String(64))
    backfill: Mapped[bool] = mapped_column(Boolean, default=False)
    geom: Mapped[BaseGeometry] = mapped_column(Geometry("MULTIPOLYGON"))
    # The head of the event chain (seq and hash of the last event), on the row a change
    # already locks: the next event follows it without a query, and `audit verify` finds a
    # removed last event, which the chain alone cannot show.
    event_seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    event_hash: Mapped[str] = mapped_column(
        String(64), default=GENESIS_HASH, server_default=GENESIS_HASH
    )


class CaseEvent(Base):
    """Append-only, hash-chained history of a case: never updated, never deleted."""

    __tablename__ = "case_event"
    __table_args__ = (UniqueConstraint("case_id", "seq"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("case.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)  # 1, 2, ... within the case
    action: Mapped[str] = mapped_column(String(64))
    from_status: Mapped[str | None] = mapped_column(String(32))
    to_status: Mapped[str | None] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(32))
    request_id: Mapped[str | None] = mapped_column(String(64))
    case_version: Mapped[int] = mapped_column(Integer)
    payload: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)  # before/after, comment...
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class EvidenceKind(StrEnum):
    field_photo = "field_photo"
    chip_before = "chip_before"
    chip_after = "chip_after"
    document = "document"


class Evidence(Base):
    __tablename__ = "evidence"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("case.id"), index=True)
    kind: Mapped[EvidenceKind] = mapped_column(Enum(EvidenceKind, native_enum=False))
    sha256: Mapped[str] = mapped_column(String(64))
    storage_uri: Mapped[str] = mapped_column(String(1000))
    media_type: Mapped[str] = mapped_column(String(100))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    taken_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lon: Mapped[float | None] = mapped_column(Float)
    lat: Mapped[float | None] = mapped_column(Float)
    detection_id: Mapped[int | None] = mapped_column(ForeignKey("detection.id"))
    uploaded_by: Mapped[str] = mapped_column(String(200))
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
