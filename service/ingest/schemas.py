"""Request and response bodies of the ingest endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from models.scene import JobStatus, SceneKind, SceneStatus


class TileCreate(BaseModel):
    """A tile already on the server, under one of the allow-listed ingest roots."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(
        min_length=1, max_length=4096, description="Absolute path under an allow-listed root."
    )
    acquired_at: datetime = Field(description="Acquisition time, ISO 8601 with a UTC offset.")
    sensor: str = Field("", max_length=100, description="Sensor name, e.g. 'GF-2 PMS'.")


class JobRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    task: str
    status: JobStatus
    attempts: int
    max_attempts: int
    run_after: datetime
    finished_at: datetime | None
    last_error: str | None
    dead_reason: str | None


class SceneRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: SceneKind
    status: SceneStatus
    failure_reason: str | None = Field(description="Why the scene cannot be used, if it failed.")
    sha256: str
    size_bytes: int
    media_type: str
    sensor: str
    camera_preset_id: int | None
    acquired_at: datetime
    received_at: datetime
    crs: str | None
    width: int | None
    height: int | None
    bands: list[str]
    jobs: list[JobRead] = []
    stac_item: dict[str, Any] | None = Field(description="The scene as a STAC 1.1 Item.")
