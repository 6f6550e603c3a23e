"""Which earlier tile a new tile is compared with."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry
from sqlalchemy.orm import Session

from models.scene import Scene, SceneKind, SceneStatus
from service.analysis.tiles import (
    WaitingForEarlierTileError,
    WaitingForValidationError,
    find_reference_tile,
    read_tile_inputs,
)
from service.ingest.store import object_key
from service.queue import ClaimedJob, NotYetError
from service.settings import Settings

FOOTPRINT = box(120.00, 30.40, 120.01, 30.41)


def tile(
    session: Session,
    month: int,
    geom: BaseGeometry | None = FOOTPRINT,
    status: SceneStatus = SceneStatus.analysed,
) -> Scene:
    sha256 = hashlib.sha256(uuid.uuid4().bytes).hexdigest()
    scene = Scene(
        kind=SceneKind.rs_tile,
        sha256=sha256,
        storage_uri=object_key(sha256),
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


# A place of its own: PostgreSQL's test database keeps other tests' committed tiles.
PLACE = box(121.50, 31.50, 121.51, 31.51)


def inputs_of(session: Session, scene: Scene, tmp_path: Path):  # type: ignore[no-untyped-def]
    settings = Settings(database_url="sqlite://", data_dir=tmp_path, _env_file=None)  # type: ignore[call-arg]
    job = ClaimedJob(1, scene.id, "analyse_tile", 1, 5, "w", datetime(2025, 1, 1, tzinfo=UTC))
    return read_tile_inputs(session, job, settings)


def test_a_tile_waits_for_an_earlier_overlapping_tile_to_be_analysed(
    db_session: Session, tmp_path: Path
) -> None:
    earlier = tile(db_session, 2, PLACE.buffer(0.002), status=SceneStatus.received)
    new = tile(db_session, 6, PLACE, status=SceneStatus.received)
    with pytest.raises(WaitingForEarlierTileError, match=f"tile {earlier.id}") as waiting:
        inputs_of(db_session, new, tmp_path)
    assert isinstance(waiting.value, NotYetError)  # deferred, not failed
    earlier.status = SceneStatus.analysed
    assert inputs_of(db_session, new, tmp_path).path is not None


@pytest.mark.parametrize(
    ("month", "geom", "status"),
    [
        (2, PLACE, SceneStatus.failed),  # never to be analysed
        (2, box(121.51, 31.50, 121.52, 31.51), SceneStatus.received),  # only touching
        (8, PLACE, SceneStatus.received),  # later
    ],
)
def test_a_tile_does_not_wait_for_tiles_that_do_not_come_before_it_here(
    db_session: Session, tmp_path: Path, month: int, geom: BaseGeometry, status: SceneStatus
) -> None:
    tile(db_session, month, geom, status=status)
    new = tile(db_session, 6, PLACE, status=SceneStatus.received)
    assert inputs_of(db_session, new, tmp_path).path is not None
