"""Field evidence: photos attached to a case with their position and time, and their files."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Case, Evidence
from models.case import EvidenceKind
from service.auth import Principal
from service.cases.events import attach_evidence
from service.cases.photos import CleanPhoto, ExifFacts, clean_photo
from service.errors import InvalidInputError, NotFoundError
from service.ingest.scenes import check_acquired_at
from service.ingest.store import JPEG, ObjectWriter, commit_object, object_path, read_chunks
from service.settings import Settings


@dataclass(frozen=True)
class PhotoClaims:
    """What the uploader states about a photo (query parameters); None where they state nothing."""

    lon: float | None = None
    lat: float | None = None
    taken_at: datetime | None = None
    caption: str | None = None


@dataclass(frozen=True)
class Placement:
    """Where and when a photo was taken, and where each fact came from (`exif` or `client`)."""

    lon: float
    lat: float
    taken_at: datetime
    position_source: str
    time_source: str


def read_photo(path: Path, *, settings: Settings) -> CleanPhoto:
    """A staged upload checked and stripped of its metadata (see `service.cases.photos`)."""
    data = io.BytesIO()
    for chunk in read_chunks(path):
        data.write(chunk)
    return clean_photo(
        data.getvalue(),
        max_pixels=settings.max_evidence_pixels,
        local_zone=ZoneInfo(settings.evidence_timezone),
    )


def place_photo(facts: ExifFacts, claims: PhotoClaims, *, settings: Settings) -> Placement:
    """Position and time from the uploader where given, else from the EXIF; 422 if missing.

    The uploader's values win: a field app knows its own GPS fix and clock, while a photo
    may come from a camera that records neither.
    """
    if (claims.lon is None) != (claims.lat is None):
        raise InvalidInputError("give lon and lat together (WGS 84 degrees), or neither")
    if claims.lon is not None and claims.lat is not None:
        lon, lat, position_source = claims.lon, claims.lat, "client"
    elif facts.lon is not None and facts.lat is not None:
        lon, lat, position_source = facts.lon, facts.lat, "exif"
    else:
        raise InvalidInputError(
            "the photo carries no GPS position: turn on location for the camera, or send "
            "lon and lat as query parameters (WGS 84 degrees)"
        )
    if claims.taken_at is not None:
        when, time_source = claims.taken_at, "client"
    elif facts.taken_at is not None:
        when, time_source = facts.taken_at, "exif" if facts.taken_at_offset_known else "exif_local"
    else:
        raise InvalidInputError(
            "the photo carries no capture time: send taken_at as a query parameter, "
            "ISO 8601 with a UTC offset, e.g. 2026-11-28T08:30:00+08:00"
        )
    taken_at = check_acquired_at(when, skew_seconds=settings.capture_clock_skew_seconds)
    return Placement(lon, lat, taken_at, position_source, time_source)


def add_field_photo(
    case: Case,
    photo: CleanPhoto,
    placement: Placement,
    *,
    session: Session,
    data_dir: Path,
    principal: Principal,
    caption: str | None = None,
    request_id: str | None = None,
) -> tuple[Evidence, bool]:
    """Store the stripped photo under its hash and attach it to `case` (once per file).

    Returns the evidence and whether it is new; flushes, never commits.
    """
    with ObjectWriter(data_dir, kind=JPEG, max_bytes=len(photo.jpeg)) as writer:
        writer.write(photo.jpeg)
        stored = commit_object(writer.finish(), data_dir)
    existing = _find(case.id, stored.sha256, session=session)
    if existing is not None:
        return existing, False
    evidence = attach_evidence(
        case,
        session=session,
        kind=EvidenceKind.field_photo,
        sha256=stored.sha256,
        storage_uri=stored.storage_uri,
        media_type=stored.media_type,
        size_bytes=stored.size_bytes,
        uploaded_by=principal.name,
        role=str(principal.role),
        taken_at=placement.taken_at,
        lon=placement.lon,
        lat=placement.lat,
        note=caption,
        request_id=request_id,
        details={
            "position_source": placement.position_source,
            "time_source": placement.time_source,
        },
    )
    return evidence, True


def _find(case_id: int, sha256: str, *, session: Session) -> Evidence | None:
    statement = select(Evidence).where(
        Evidence.case_id == case_id,
        Evidence.kind == EvidenceKind.field_photo,
        Evidence.sha256 == sha256,
    )
    return session.scalars(statement).first()


def get_evidence_or_raise(case: Case, evidence_id: int, *, session: Session) -> Evidence:
    """Evidence `evidence_id` of `case` (which the caller may see); NotFoundError otherwise."""
    evidence = session.scalars(
        select(Evidence).where(Evidence.id == evidence_id, Evidence.case_id == case.id)
    ).first()
    if evidence is None:
        raise NotFoundError(
            f"case {case.id} has no evidence {evidence_id}; its evidence is listed at "
            f"/v1/cases/{case.id}"
        )
    return evidence


def evidence_file(evidence: Evidence, *, data_dir: Path) -> Path:
    """The stored file of `evidence`; NotFoundError if the store has lost it."""
    path = object_path(data_dir, evidence.storage_uri)
    if not path.is_file():
        raise NotFoundError(
            f"the file of evidence {evidence.id} is missing from the store; "
            "ask an operator to restore the data directory"
        )
    return path
