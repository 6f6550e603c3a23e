"""Which earlier tile a new tile is compared with."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime

import pytest
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry
from sqlalchemy.orm import Session

from models.scene import Scene, SceneKind, SceneStatus
from service.analysis.tiles import WaitingForValidationError, find_reference_tile

FOOTPRINT = box(120.00, 30.40, 120.01, 30.41)


def tile(
    session: Session,
    month: int,
    geom: BaseGeometry | None = FOOTPRINT,
    status: SceneStatus = SceneStatus.analysed,
) -> Scene:
    scene = Scene(
        kind=SceneKind.rs_tile,
        sha256=hashlib.sha256(uuid.uuid4().bytes).hexdigest(),
        storage_uri="objects/x",
        size_bytes=1,
        media_type="image/tiff",
        acquired_at=datetime(2025, month, 16, 2, 30, tzinfo=UTC),
        status=status,
        geom=geom,
        bands=[],
    )
    session.add(scene)
    session.flush()
    return scene


def test_the_reference_is_the_latest_earlier_tile_covering_the_footprint(
    db_session: Session,
) -> None:
    tile(db_session, 1)
    covering = tile(db_session, 3, FOOTPRINT.buffer(0.001))
    tile(db_session, 4, box(120.005, 30.40, 120.015, 30.41))  # only half of it
    tile(db_session, 5, status=SceneStatus.failed)  # unreadable: never a reference
    new = tile(db_session, 6, status=SceneStatus.received)
    tile(db_session, 7)  # later: never a reference
    reference = find_reference_tile(new, session=db_session)
    assert reference is not None and reference.id == covering.id


def test_the_first_tile_of_a_place_has_no_reference(db_session: Session) -> None:
    tile(db_session, 1, box(121.0, 31.0, 121.01, 31.01))
    new = tile(db_session, 6, status=SceneStatus.received)
    assert find_reference_tile(new, session=db_session) is None


def test_an_earlier_tile_still_in_validation_makes_the_job_wait(db_session: Session) -> None:
    tile(db_session, 2, geom=None, status=SceneStatus.received)
    new = tile(db_session, 6, status=SceneStatus.received)
    with pytest.raises(WaitingForValidationError):
        find_reference_tile(new, session=db_session)
