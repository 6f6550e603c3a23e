"""Importing a legal layer file as a new dated version, and finding the versions valid at a time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, or_, select
from sqlalchemy.orm import Session

from models.base import utcnow
from models.geo import bbox_values
from models.layer import Layer, LayerFeature, LayerKind, LayerVersion
from service.errors import ConflictError, InvalidInputError
from service.geodata import (
    SourceFeature,
    VectorSource,
    file_checksum,
    iter_features,
    open_vector,
)
from service.layers.subdivision import SubdivisionParams, subdivide
from service.settings import Settings
from service.spatial import area_m2, m2_to_mu

MAX_VERSION_LENGTH = 64


@dataclass(frozen=True)
class LayerImportResult:
    """What an import stored (or found already stored, when `unchanged`)."""

    kind: LayerKind
    version: str
    layer_version_id: int
    valid_from: datetime
    features: int
    parts: int
    area_m2: float
    repaired: int
    unchanged: bool = False

    def summary(self) -> str:
        if self.unchanged:
            return (
                f"{self.kind.value} version {self.version} is already imported from this very "
                f"file: nothing changed ({self.features} features, {self.parts} parts)"
            )
        return (
            f"imported {self.kind.value} version {self.version}: {self.features} features in "
            f"{self.parts} parts, {m2_to_mu(self.area_m2):,.1f} mu, {self.repaired} repaired, "
            f"valid from {self.valid_from.isoformat()}"
        )


def import_layer(
    path: Path,
    *,
    session: Session,
    settings: Settings,
    kind: LayerKind,
    version: str,
    valid_from: datetime | None = None,
    name: str | None = None,
    source_layer: str | None = None,
    batch_size: int = 5_000,
) -> LayerImportResult:
    """Store the polygons of `path` as version `version` of the layer `kind`.

    The new version is valid from `valid_from` (default: now) until the next version starts;
    the version before it now ends at `valid_from`. Re-importing a version from an identical
    file changes nothing; from a different file it is a `ConflictError`. A refused import
    leaves the session as it was (the work runs in a savepoint); the caller commits.
    """
    version = _checked_version(version)
    valid_from = _checked_time(valid_from or utcnow(), "valid_from")
    source = open_vector(path, layer=source_layer)
    checksum = file_checksum(source)
    existing = _existing_version(session, kind, version)
    if existing is not None:
        return _unchanged_or_conflict(session, existing, kind, checksum, source)
    with session.begin_nested():
        layer = _get_or_create_layer(session, kind, name)
        layer_version = LayerVersion(
            layer_id=layer.id,
            version=version,
            valid_from=valid_from,
            source=source.name,
            checksum=checksum,
            feature_count=0,
        )
        _place_in_timeline(session, layer, layer_version)
        session.add(layer_version)
        session.flush()
        totals = _store_features(session, settings, source, layer_version.id, batch_size)
        layer_version.feature_count = totals.features
        session.flush()
    return LayerImportResult(
        kind=kind,
        version=version,
        layer_version_id=layer_version.id,
        valid_from=valid_from,
        features=totals.features,
        parts=totals.parts,
        area_m2=totals.area_m2,
        repaired=totals.repaired,
    )


def layer_versions_valid_at(session: Session, at: datetime) -> list[LayerVersion]:
    """The version of each layer in force at `at` (valid_from <= at < valid_to)."""
    at = _checked_time(at, "at")
    statement = (
        select(LayerVersion)
        .where(
            LayerVersion.valid_from <= at,
            or_(LayerVersion.valid_to.is_(None), LayerVersion.valid_to > at),
        )
        .order_by(LayerVersion.layer_id)
    )
    return list(session.scalars(statement))


def _checked_version(version: str) -> str:
    version = version.strip()
    if not version or len(version) > MAX_VERSION_LENGTH:
        raise InvalidInputError(
            f"version {version!r} must be 1 to {MAX_VERSION_LENGTH} characters, e.g. '2023'"
        )
    return version


def _checked_time(value: datetime, name: str) -> datetime:
    if value.tzinfo is None:
        raise InvalidInputError(
            f"{name} {value.isoformat()} has no time zone; give it in UTC, e.g. 2023-01-01T00:00Z"
        )
    return value


def _existing_version(session: Session, kind: LayerKind, version: str) -> LayerVersion | None:
    statement = (
        select(LayerVersion)
        .join(Layer, Layer.id == LayerVersion.layer_id)
        .where(Layer.kind == kind, LayerVersion.version == version)
    )
    return session.scalar(statement)


def _unchanged_or_conflict(
    session: Session,
    existing: LayerVersion,
    kind: LayerKind,
    checksum: str,
    source: VectorSource,
) -> LayerImportResult:
    if existing.checksum != checksum:
        raise ConflictError(
            f"{kind.value} version {existing.version} was already imported from "
            f"{existing.source} (sha256 {existing.checksum[:12]}…), and {source.name} differs "
            f"(sha256 {checksum[:12]}…); import it under a new version string"
        )
    parts, total_m2 = session.execute(
        select(
            func.count(LayerFeature.id), func.coalesce(func.sum(LayerFeature.area_m2), 0.0)
        ).where(LayerFeature.layer_version_id == existing.id)
    ).one()
    return LayerImportResult(
        kind=kind,
        version=existing.version,
        layer_version_id=existing.id,
        valid_from=existing.valid_from,
        features=existing.feature_count,
        parts=int(parts),
        area_m2=float(total_m2),
        repaired=0,
        unchanged=True,
    )


def _get_or_create_layer(session: Session, kind: LayerKind, name: str | None) -> Layer:
    layer = session.scalar(select(Layer).where(Layer.kind == kind))
    if layer is None:
        layer = Layer(kind=kind, name=name or kind.value.replace("_", " "))
        session.add(layer)
        session.flush()
    elif name:
        layer.name = name
    return layer


def _place_in_timeline(session: Session, layer: Layer, new: LayerVersion) -> None:
    """Close the version before `new` at its start; end `new` where the next one starts."""
    versions = session.scalars(select(LayerVersion).where(LayerVersion.layer_id == layer.id))
    before = after = None
    for other in versions:
        if other.valid_from == new.valid_from:
            raise ConflictError(
                f"{layer.kind.value} version {other.version} already starts at "
                f"{new.valid_from.isoformat()}; give this version another --valid-from"
            )
        if other.valid_from < new.valid_from and (
            before is None or other.valid_from > before.valid_from
        ):
            before = other
        if other.valid_from > new.valid_from and (
            after is None or other.valid_from < after.valid_from
        ):
            after = other
    if before is not None:
        before.valid_to = new.valid_from
    new.valid_to = after.valid_from if after is not None else None


@dataclass
class _Totals:
    features: int = 0
    parts: int = 0
    area_m2: float = 0.0
    repaired: int = 0


def _store_features(
    session: Session,
    settings: Settings,
    source: VectorSource,
    layer_version_id: int,
    batch_size: int,
) -> _Totals:
    params = SubdivisionParams(max_vertices=settings.layer_max_vertices)
    totals = _Totals()
    for batch in iter_features(source, batch_size=batch_size):
        rows: list[dict[str, Any]] = []
        for feature in batch:
            rows.extend(_part_rows(feature, layer_version_id, settings.area_crs, params))
            totals.repaired += feature.repaired
        # Core executemany: one round trip per batch instead of one ORM object per part.
        session.execute(insert(LayerFeature), rows)
        totals.features += len(batch)
        totals.parts += len(rows)
        totals.area_m2 += sum(row["area_m2"] for row in rows)
    return totals


def _part_rows(
    feature: SourceFeature, layer_version_id: int, area_crs: str, params: SubdivisionParams
) -> list[dict[str, Any]]:
    return [
        {
            "layer_version_id": layer_version_id,
            "source_ref": str(feature.fid),
            "part": number,
            "properties": feature.properties,
            "geom": part,
            "area_m2": area_m2(part, area_crs),
            **bbox_values(part),
        }
        for number, part in enumerate(subdivide(feature.geom, params=params))
    ]
