"""Importing administrative areas from a vector file: upserted by code, linked to parents."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shapely.geometry import MultiPolygon, Polygon
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.jurisdiction import Jurisdiction, JurisdictionLevel
from service.geodata import GeodataError, SourceFeature, VectorSource, iter_features, open_vector
from service.settings import Settings
from service.spatial import area_m2, m2_to_mu

DEFAULT_PARENT_FIELD = "parent_code"
MAX_CODE_LENGTH = 64
MAX_NAME_LENGTH = 200
# Codes per IN (...) lookup; well under SQLite's bound-parameter limit.
LOOKUP_CHUNK = 500


@dataclass(frozen=True)
class JurisdictionImportResult:
    level: JurisdictionLevel
    created: int
    updated: int
    with_parent: int
    area_m2: float
    repaired: int

    def summary(self) -> str:
        return (
            f"imported {self.created + self.updated} {self.level.value} jurisdictions "
            f"({self.created} new, {self.updated} updated, {self.with_parent} with a parent), "
            f"{m2_to_mu(self.area_m2):,.1f} mu, {self.repaired} repaired"
        )


@dataclass(frozen=True)
class _Fields:
    code: str
    name: str
    parent: str | None


def import_jurisdictions(
    path: Path,
    *,
    session: Session,
    settings: Settings,
    level: JurisdictionLevel,
    code_field: str = "code",
    name_field: str = "name",
    parent_field: str | None = DEFAULT_PARENT_FIELD,
    source_layer: str | None = None,
    batch_size: int = 2_000,
) -> JurisdictionImportResult:
    """Create or update (by code) one jurisdiction per feature of `path`.

    A parent code is looked up among the jurisdictions already stored, including those of
    this file. A file without the default parent field has no parents; a parent field named
    explicitly must exist. A refused import leaves the session as it was; the caller commits.
    """
    source = open_vector(path, layer=source_layer)
    fields = _resolve_fields(source, code_field, name_field, parent_field)
    created = updated = repaired = 0
    total_m2 = 0.0
    parents: dict[str, tuple[str, str]] = {}  # code -> (parent code, feature label)
    seen: dict[str, str] = {}  # code -> feature label, to catch duplicates in the file
    with session.begin_nested():
        for batch in iter_features(source, batch_size=batch_size):
            values = [_feature_values(source, feature, fields, seen) for feature in batch]
            stored = _by_code(session, [code for code, _, _ in values])
            for feature, (code, name, parent_code) in zip(batch, values, strict=True):
                row = stored.get(code)
                if row is None:
                    row = Jurisdiction(code=code)
                    session.add(row)
                    created += 1
                else:
                    updated += 1
                row.name, row.level = name, level
                row.geom = _multipolygon(feature.geom)
                row.area_m2 = area_m2(row.geom, settings.area_crs)
                row.parent_id = None
                total_m2 += row.area_m2
                repaired += feature.repaired
                if parent_code is not None:
                    parents[code] = (parent_code, feature.label)
            session.flush()
        _link_parents(session, source, parents)
        session.flush()
    return JurisdictionImportResult(
        level=level,
        created=created,
        updated=updated,
        with_parent=len(parents),
        area_m2=total_m2,
        repaired=repaired,
    )


def _resolve_fields(
    source: VectorSource, code_field: str, name_field: str, parent_field: str | None
) -> _Fields:
    for role, field in (("code", code_field), ("name", name_field)):
        if field not in source.fields:
            raise GeodataError(
                f"{source.name} has no field {field!r} for the {role}; its fields are "
                f"{list(source.fields)}: name the right one with --{role}-field"
            )
    if parent_field is not None and parent_field not in source.fields:
        if parent_field != DEFAULT_PARENT_FIELD:
            raise GeodataError(
                f"{source.name} has no field {parent_field!r} for the parent code; its fields "
                f"are {list(source.fields)}: name the right one with --parent-field"
            )
        parent_field = None
    return _Fields(code=code_field, name=name_field, parent=parent_field)


def _feature_values(
    source: VectorSource, feature: SourceFeature, fields: _Fields, seen: dict[str, str]
) -> tuple[str, str, str | None]:
    code = _text(feature.properties.get(fields.code))
    name = _text(feature.properties.get(fields.name))
    where = f"{source.name}: {feature.label}"
    if not code or len(code) > MAX_CODE_LENGTH:
        raise GeodataError(
            f"{where} has code {code!r} in field {fields.code!r}; "
            f"every area needs a code of 1 to {MAX_CODE_LENGTH} characters"
        )
    if not name or len(name) > MAX_NAME_LENGTH:
        raise GeodataError(
            f"{where} has name {name!r} in field {fields.name!r}; "
            f"every area needs a name of 1 to {MAX_NAME_LENGTH} characters"
        )
    if code in seen:
        raise GeodataError(
            f"{where} repeats code {code!r} of {seen[code]}; merge the two areas into one "
            "feature or correct the code"
        )
    seen[code] = feature.label
    parent = _text(feature.properties.get(fields.parent)) if fields.parent else None
    if parent == code:
        raise GeodataError(
            f"{where} names itself ({code!r}) as its parent; correct the parent code"
        )
    return code, name, parent or None


def _text(value: Any) -> str:
    # Numeric codes come back as floats from some Shapefiles (330100.0).
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return "" if value is None else str(value).strip()


def _multipolygon(geom: Polygon | MultiPolygon) -> MultiPolygon:
    return MultiPolygon([geom]) if isinstance(geom, Polygon) else geom


def _by_code(session: Session, codes: Iterable[str]) -> dict[str, Jurisdiction]:
    codes = list(dict.fromkeys(codes))
    found: dict[str, Jurisdiction] = {}
    for start in range(0, len(codes), LOOKUP_CHUNK):
        chunk = codes[start : start + LOOKUP_CHUNK]
        rows = session.scalars(select(Jurisdiction).where(Jurisdiction.code.in_(chunk)))
        found.update((row.code, row) for row in rows)
    return found


def _link_parents(
    session: Session, source: VectorSource, parents: dict[str, tuple[str, str]]
) -> None:
    if not parents:
        return
    stored = _by_code(session, [*parents, *(parent for parent, _ in parents.values())])
    for code, (parent_code, label) in parents.items():
        parent = stored.get(parent_code)
        if parent is None:
            raise GeodataError(
                f"{source.name}: {label} ({code}) names parent {parent_code!r}, which is not "
                "imported; import the higher level first, or correct the parent code"
            )
        stored[code].parent_id = parent.id
