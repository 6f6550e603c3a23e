"""Detector outputs stored per scene, and their hits on the legal layers."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from shapely.geometry.base import BaseGeometry
from sqlalchemy import Boolean, Enum, Float, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigId, Json, UTCDateTime, utcnow
from models.geo import Geometry, Spatial


class ChangeType(StrEnum):
    building = "building"
    hardening = "hardening"
    excavation = "excavation"
    piling = "piling"
    pond = "pond"
    material_stacking = "material_stacking"
    vegetation_loss = "vegetation_loss"
    machinery = "machinery"
    # Farm activity: reported as benign, never a case.
    ploughing = "ploughing"
    harvest = "harvest"
    paddy_flooding = "paddy_flooding"
    unknown = "unknown"


class DetectionSource(StrEnum):
    camera = "camera"
    remote_sensing = "remote_sensing"


class Screening(StrEnum):
    """Outcome of the "3+X" machine review of one detection."""

    pending = "pending"
    suspected_violation = "suspected_violation"
    covered_by_approval = "covered_by_approval"
    outside_farmland = "outside_farmland"
    benign = "benign"
    suppressed = "suppressed"


class Detection(Spatial, Base):
    __tablename__ = "detection"
    # Re-running a job never duplicates: one row per object of a scene per detector version.
    __table_args__ = (UniqueConstraint("scene_id", "detector_version", "object_index"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    scene_id: Mapped[int] = mapped_column(ForeignKey("scene.id"), index=True)
    reference_scene_id: Mapped[int | None] = mapped_column(ForeignKey("scene.id"))
    source: Mapped[DetectionSource] = mapped_column(Enum(DetectionSource, native_enum=False))
    detector_version: Mapped[str] = mapped_column(String(64))
    parameters: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    object_index: Mapped[int] = mapped_column(Integer)
    change_type: Mapped[ChangeType] = mapped_column(Enum(ChangeType, native_enum=False))
    benign: Mapped[bool] = mapped_column(Boolean, default=False)
    confidence: Mapped[float] = mapped_column(Float)
    area_m2: Mapped[float] = mapped_column(Float)
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    onset_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    screening: Mapped[Screening] = mapped_column(
        Enum(Screening, native_enum=False), default=Screening.pending
    )
    case_id: Mapped[int | None] = mapped_column(ForeignKey("case.id"), index=True)
    backfill: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    geom: Mapped[BaseGeometry] = mapped_column(Geometry("POLYGON"))


class LayerHit(Base):
    """How much of a detection falls on one feature of a layer version."""

    __tablename__ = "layer_hit"
    __table_args__ = (UniqueConstraint("detection_id", "layer_feature_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    detection_id: Mapped[int] = mapped_column(ForeignKey("detection.id"), index=True)
    layer_version_id: Mapped[int] = mapped_column(ForeignKey("layer_version.id"))
    layer_feature_id: Mapped[int] = mapped_column(ForeignKey("layer_feature.id"))
    layer_kind: Mapped[str] = mapped_column(String(64))
    overlap_m2: Mapped[float] = mapped_column(Float)
    overlap_mu: Mapped[float] = mapped_column(Float)
