"""Tower cameras and their PTZ presets, each preset with its image-to-ground calibration."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from shapely.geometry.base import BaseGeometry
from sqlalchemy import Enum, Float, ForeignKey, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigId, Json, Timestamped, UTCDateTime
from models.geo import Geometry, Spatial


class CameraHealth(StrEnum):
    ok = "ok"
    moved = "moved"
    obstructed = "obstructed"
    night_ir = "night_ir"
    no_signal = "no_signal"
    unknown = "unknown"


class Camera(Spatial, Timestamped, Base):
    __tablename__ = "camera"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)  # the id cameras report with
    name: Mapped[str] = mapped_column(String(200), default="")
    height_m: Mapped[float | None] = mapped_column(Float)
    jurisdiction_id: Mapped[int | None] = mapped_column(ForeignKey("jurisdiction.id"), index=True)
    health: Mapped[CameraHealth] = mapped_column(
        Enum(CameraHealth, native_enum=False), default=CameraHealth.unknown
    )
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    geom: Mapped[BaseGeometry] = mapped_column(Geometry("POINT"))  # tower position


class CameraPreset(Spatial, Timestamped, Base):
    """A PTZ preset: what the camera sees from one stored pose."""

    __tablename__ = "camera_preset"
    __table_args__ = (UniqueConstraint("camera_id", "preset"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    camera_id: Mapped[int] = mapped_column(ForeignKey("camera.id"), index=True)
    preset: Mapped[str] = mapped_column(String(32))
    image_width: Mapped[int] = mapped_column(Integer)
    image_height: Mapped[int] = mapped_column(Integer)
    # [{"pixel": [col, row], "lon": .., "lat": ..}, ...]
    control_points: Mapped[list[dict[str, Any]]] = mapped_column(Json, default=list)
    homography: Mapped[list[list[float]] | None] = mapped_column(Json)  # image → ground, 3×3
    rms_error_m: Mapped[float | None] = mapped_column(Float)
    calibrated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The ground the preset can actually see (its viewshed), for coverage and blind spots.
    geom: Mapped[BaseGeometry | None] = mapped_column(Geometry("POLYGON"), nullable=True)
    # The camera detector's memory of this view between snapshots: its manifest
    # (`EncodedState.manifest`), the chunks in `camera_state_chunk`; states stored whole
    # (`CameraState.to_bytes()`) before that table existed still load. It lives in the
    # database, not a file, so that it commits in the same transaction as the detections it
    # led to: a job that is rolled back or re-run never sees a state ahead of the detections.
    # `detector_state_version` guards against two workers advancing it at once.
    detector_state: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    detector_state_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The worker process (host:pid) that wrote the state last and may still hold it decoded:
    # the preset's next job is offered to it first.
    state_holder: Mapped[str | None] = mapped_column(String(200))


class CameraStateChunk(Base):
    """One compressed chunk of a preset's detector state, by content key.

    A snapshot replaces one frame of a background's ring and its noise estimate, about a fifth
    of a 1080p preset's ~1.2 MB state: kept apart by key, only those chunks are written again.
    """

    __tablename__ = "camera_state_chunk"

    preset_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("camera_preset.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
