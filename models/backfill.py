"""Batch backfills over past imagery: each run, and its work units (one tile × date pair)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Enum,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigId, Json, Timestamped, UTCDateTime


class BackfillRunStatus(StrEnum):
    running = "running"  # or stopped part way: running it again continues it
    done = "done"


class BackfillRun(Timestamped, Base):
    """One backfill: its arguments, and everything needed to reproduce and compare it."""

    __tablename__ = "backfill_run"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # sha256 of the arguments and the detector: the same command continues the same run.
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[BackfillRunStatus] = mapped_column(
        Enum(BackfillRunStatus, native_enum=False), default=BackfillRunStatus.running
    )
    area: Mapped[dict[str, Any]] = mapped_column(Json)  # GeoJSON geometry, lon/lat
    since: Mapped[datetime] = mapped_column(UTCDateTime)
    until: Mapped[datetime] = mapped_column(UTCDateTime)
    source: Mapped[str] = mapped_column(String(2000))
    alert: Mapped[bool] = mapped_column(Boolean, default=False)
    detector_version: Mapped[str] = mapped_column(String(64))
    parameters: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    layer_versions: Mapped[list[dict[str, Any]]] = mapped_column(Json, default=list)
    scene_ids: Mapped[list[int]] = mapped_column(Json, default=list)
    problems: Mapped[list[dict[str, Any]]] = mapped_column(Json, default=list)  # input, reason
    summary: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class BackfillUnitStatus(StrEnum):
    pending = "pending"
    done = "done"
    failed = "failed"  # the pair cannot be compared: see failure_reason


class BackfillUnit(Timestamped, Base):
    """One tile × consecutive date pair, compared once per detector version."""

    __tablename__ = "backfill_unit"
    __table_args__ = (UniqueConstraint("before_scene_id", "after_scene_id", "detector_version"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("backfill_run.id"), index=True)
    before_scene_id: Mapped[int] = mapped_column(ForeignKey("scene.id"))
    after_scene_id: Mapped[int] = mapped_column(ForeignKey("scene.id"), index=True)
    detector_version: Mapped[str] = mapped_column(String(64))
    status: Mapped[BackfillUnitStatus] = mapped_column(
        Enum(BackfillUnitStatus, native_enum=False), default=BackfillUnitStatus.pending
    )
    failure_reason: Mapped[str | None] = mapped_column(Text)
    objects: Mapped[int] = mapped_column(Integer, default=0)
    pixels: Mapped[int] = mapped_column(BigInteger, default=0)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
