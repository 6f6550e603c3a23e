"""Case codes: two writers opening cases at once draw different numbers."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime

import pytest
from shapely.geometry import MultiPolygon, box
from sqlalchemy import Engine, delete

from models import Case
from models.case import CaseStatus
from service.cases.workflow import next_case_code
from service.db import SQLITE_IMMEDIATE, machine_session_factory

SEEN = datetime(2026, 5, 1, tzinfo=UTC)


def open_case(session, prefix: str) -> str:  # type: ignore[no-untyped-def]
    code = next_case_code(prefix, 2026, session=session)
    session.add(
        Case(
            code=code,
            status=CaseStatus.new,
            version=1,
            geom=MultiPolygon([box(120.0, 30.0, 120.001, 30.001)]),
            area_m2=10_000.0,
            change_types=["building"],
            sources=["camera"],
            first_seen_at=SEEN,
            last_seen_at=SEEN,
            priority=50,
        )
    )
    session.flush()
    return code


@pytest.mark.db
def test_two_writers_opening_cases_at_once_draw_different_numbers(db_engine: Engine) -> None:
    prefix = f"R{uuid.uuid4().hex[:6]}"
    factory = machine_session_factory(db_engine.execution_options(**SQLITE_IMMEDIATE))
    first_drawn = threading.Event()
    codes: list[str] = []
    errors: list[BaseException] = []

    def first() -> None:
        with factory.begin() as session:
            codes.append(open_case(session, prefix))
            first_drawn.set()
            # Hold the transaction open while the second writer draws its number.
            threading.Event().wait(0.5)

    def second() -> None:
        first_drawn.wait(10)
        try:
            with factory.begin() as session:
                codes.append(open_case(session, prefix))
        except BaseException as error:  # reported below, not lost in the thread
            errors.append(error)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    with factory.begin() as session:  # other tests share this database and count its cases
        session.execute(delete(Case).where(Case.code.like(f"{prefix}-%")))
    assert errors == []
    assert codes == [f"{prefix}-2026-000001", f"{prefix}-2026-000002"]
