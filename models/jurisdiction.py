"""Administrative areas: city → district → township → village, each with its polygon."""

from __future__ import annotations

from enum import StrEnum

from shapely.geometry.base import BaseGeometry
from sqlalchemy import Enum, Float, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigId, Timestamped
from models.geo import Geometry, Spatial


class JurisdictionLevel(StrEnum):
    city = "city"
    district = "district"
    township = "township"
    village = "village"


class Jurisdiction(Spatial, Timestamped, Base):
    __tablename__ = "jurisdiction"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    level: Mapped[JurisdictionLevel] = mapped_column(Enum(JurisdictionLevel, native_enum=False))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("jurisdiction.id"), index=True)
    geom: Mapped[BaseGeometry] = mapped_column(Geometry("MULTIPOLYGON"))
    area_m2: Mapped[float] = mapped_column(Float)
