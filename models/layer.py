"""The legal layers ("3+X"), each imported as a dated version so decisions can be replayed."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from shapely.geometry.base import BaseGeometry
from sqlalchemy import Enum, Float, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigId, Json, UTCDateTime, utcnow
from models.geo import Geometry, Spatial


class LayerKind(StrEnum):
    # The three control lines.
    cultivated_land = "cultivated_land"
    permanent_basic_farmland = "permanent_basic_farmland"
    urban_development_boundary = "urban_development_boundary"
    # The X lines.
    ecological_red_line = "ecological_red_line"
    purple_line = "purple_line"  # historic sites
    yellow_line = "yellow_line"  # infrastructure
    blue_line = "blue_line"  # water
    green_line = "green_line"
    orange_line = "orange_line"
    geohazard_line = "geohazard_line"
    # Legal uses: a change inside these is covered by an approval, not a violation.
    approved_construction = "approved_construction"
    facility_agriculture = "facility_agriculture"


class Layer(Base):
    __tablename__ = "layer"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[LayerKind] = mapped_column(Enum(LayerKind, native_enum=False), unique=True)
    name: Mapped[str] = mapped_column(String(200))


class LayerVersion(Base):
    """One import of a layer; valid from `valid_from` until the next version's start."""

    __tablename__ = "layer_version"
    __table_args__ = (UniqueConstraint("layer_id", "version"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    layer_id: Mapped[int] = mapped_column(ForeignKey("layer.id"), index=True)
    version: Mapped[str] = mapped_column(String(64))
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime)
    valid_to: Mapped[datetime | None] = mapped_column(UTCDateTime)
    source: Mapped[str] = mapped_column(String(500))
    checksum: Mapped[str] = mapped_column(String(64))  # sha256 of the imported file
    feature_count: Mapped[int] = mapped_column(Integer)
    imported_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LayerFeature(Spatial, Base):
    """A polygon of a layer version; large source polygons are stored as several parts."""

    __tablename__ = "layer_feature"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    layer_version_id: Mapped[int] = mapped_column(ForeignKey("layer_version.id"), index=True)
    source_ref: Mapped[str] = mapped_column(String(200))  # the feature's id in the source file
    part: Mapped[int] = mapped_column(Integer, default=0)
    properties: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    geom: Mapped[BaseGeometry] = mapped_column(Geometry("MULTIPOLYGON"))
    area_m2: Mapped[float] = mapped_column(Float)


class FarmlandObservation(Base):
    """When a farmland parcel was last seen by one kind of sensor, so that "no case" can be
    told apart from "not observed"."""

    __tablename__ = "farmland_observation"
    __table_args__ = (UniqueConstraint("layer_feature_id", "source"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    layer_feature_id: Mapped[int] = mapped_column(ForeignKey("layer_feature.id"))
    source: Mapped[str] = mapped_column(String(32))  # "camera" or "remote_sensing"
    last_observed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    scene_id: Mapped[int] = mapped_column(ForeignKey("scene.id"))  # the scene that saw it then
