"""Ingested images (camera snapshots and remote-sensing tiles) and the durable ingest queue."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from shapely.geometry.base import BaseGeometry
from sqlalchemy import BigInteger, Enum, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigId, Json, Timestamped, UTCDateTime, utcnow
from models.geo import Geometry, Spatial


class SceneKind(StrEnum):
    camera_snapshot = "camera_snapshot"
    rs_tile = "rs_tile"


class SceneStatus(StrEnum):
    received = "received"
    processing = "processing"
    analysed = "analysed"
    failed = "failed"


class Scene(Spatial, Timestamped, Base):
    """One stored image; content-addressed, so the same bytes are one scene."""

    __tablename__ = "scene"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[SceneKind] = mapped_column(Enum(SceneKind, native_enum=False))
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    storage_uri: Mapped[str] = mapped_column(String(1000))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    media_type: Mapped[str] = mapped_column(String(100))
    source: Mapped[str] = mapped_column(String(200), default="")  # who sent it (client name)
    sensor: Mapped[str] = mapped_column(String(100), default="")
    camera_preset_id: Mapped[int | None] = mapped_column(ForeignKey("camera_preset.id"))
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    crs: Mapped[str | None] = mapped_column(String(64))  # "EPSG:<code>" of the stored raster
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    bands: Mapped[list[str]] = mapped_column(Json, default=list)  # band roles in file order
    status: Mapped[SceneStatus] = mapped_column(
        Enum(SceneStatus, native_enum=False), default=SceneStatus.received
    )
    failure_reason: Mapped[str | None] = mapped_column(Text)
    stac_item: Mapped[dict[str, Any] | None] = mapped_column(Json)
    geom: Mapped[BaseGeometry | None] = mapped_column(Geometry("POLYGON"), nullable=True)

    __table_args__ = (Index(None, "camera_preset_id", "acquired_at"),)


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    done = "done"
    dead = "dead"  # gave up: see dead_reason


class IngestJob(Timestamped, Base):
    """A unit of work on a scene, claimed under a lease that a heartbeat extends."""

    __tablename__ = "ingest_job"
    __table_args__ = (
        UniqueConstraint("scene_id", "task"),
        Index(None, "status", "run_after"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    scene_id: Mapped[int] = mapped_column(ForeignKey("scene.id"), index=True)
    task: Mapped[str] = mapped_column(String(64), default="analyse")
    status: Mapped[JobStatus] = mapped_column(
        Enum(JobStatus, native_enum=False), default=JobStatus.queued
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=5)
    run_after: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    # The worker process (host:pid) that should run it, e.g. the one holding a camera preset's
    # detector state in memory; other workers leave it to that one for a while (service.queue).
    preferred_worker: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    dead_reason: Mapped[str | None] = mapped_column(Text)
