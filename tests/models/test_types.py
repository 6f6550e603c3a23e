"""Geometries and times survive a round trip through both databases unchanged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from shapely.geometry import MultiPolygon, Point, box
from sqlalchemy import select
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import Session

from models import Camera, Case

T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)


def make_case(code: str, geom, seen: datetime = T0) -> Case:  # type: ignore[no-untyped-def]
    return Case(code=code, first_seen_at=seen, last_seen_at=seen, geom=geom)


def test_polygon_is_stored_as_multipolygon_and_read_back_equal(db_session: Session) -> None:
    square = box(120.10, 30.20, 120.11, 30.21)
    db_session.add(make_case("C-1", square))
    db_session.flush()
    db_session.expire_all()
    stored = db_session.scalars(select(Case).where(Case.code == "C-1")).one()
    assert isinstance(stored.geom, MultiPolygon)
    assert stored.geom.equals(square)
    assert (stored.minx, stored.miny, stored.maxx, stored.maxy) == pytest.approx(square.bounds)


def test_point_round_trip(db_session: Session) -> None:
    db_session.add(Camera(code="T-001", geom=Point(120.1234567, 30.7654321)))
    db_session.flush()
    db_session.expire_all()
    camera = db_session.scalars(select(Camera)).one()
    assert (camera.geom.x, camera.geom.y) == (120.1234567, 30.7654321)


def test_times_come_back_aware_and_in_utc(db_session: Session) -> None:
    seen = datetime(2024, 5, 1, 16, 0, tzinfo=timezone(timedelta(hours=8)))
    db_session.add(make_case("C-2", box(0, 0, 1, 1), seen))
    db_session.flush()
    db_session.expire_all()
    stored = db_session.scalars(select(Case).where(Case.code == "C-2")).one()
    assert stored.first_seen_at == T0
    assert stored.first_seen_at.tzinfo is not None


def test_naive_times_are_refused(db_session: Session) -> None:
    db_session.add(make_case("C-3", box(0, 0, 1, 1), datetime(2024, 5, 1, 8, 0)))
    with pytest.raises(StatementError, match="naive datetime"):
        db_session.flush()
