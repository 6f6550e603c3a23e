"""API clients (people and machines) with their role and jurisdictions, and idempotency keys."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Boolean, Enum, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigId, Json, Timestamped, UTCDateTime, utcnow


class Role(StrEnum):
    admin = "admin"
    monitor = "monitor"  # monitoring centre
    inspector = "inspector"  # field chief
    analyst = "analyst"
    ingest = "ingest"  # camera gateways and tile producers


class ApiClient(Timestamped, Base):
    __tablename__ = "api_client"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    role: Mapped[Role] = mapped_column(Enum(Role, native_enum=False))
    key_prefix: Mapped[str] = mapped_column(String(16), unique=True)  # shown, never secret
    key_hash: Mapped[str] = mapped_column(String(128))  # only the hash is stored
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ClientJurisdiction(Base):
    """The jurisdictions a client may see (and their descendants)."""

    __tablename__ = "client_jurisdiction"

    client_id: Mapped[int] = mapped_column(ForeignKey("api_client.id"), primary_key=True)
    jurisdiction_id: Mapped[int] = mapped_column(ForeignKey("jurisdiction.id"), primary_key=True)


class IdempotencyKey(Base):
    """A stored answer to a POST, so a retried request gets the same answer, not a duplicate."""

    __tablename__ = "idempotency_key"
    __table_args__ = (UniqueConstraint("client_id", "key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    client_id: Mapped[int | None] = mapped_column(ForeignKey("api_client.id"))
    key: Mapped[str] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None] = mapped_column(Integer)  # None while still in flight
    response: Mapped[dict[str, Any] | None] = mapped_column(Json)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
