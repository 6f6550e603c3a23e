"""Row-level security on PostgreSQL: a query that forgets the jurisdiction filter fails closed.

Everything runs inside the test's rolled-back transaction, the probe role included.
"""

from __future__ import annotations

import uuid

import pytest
from shapely.geometry import MultiPolygon, box
from sqlalchemy import func, select, text
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.orm import Session

from models import Case, CaseEvent, Jurisdiction
from models.client import Role
from models.jurisdiction import JurisdictionLevel
from service import rls
from service.auth import Principal
from tests.service.api.conftest import add_case


def _area(session: Session, label: str) -> int:
    area = Jurisdiction(
        code=f"{label}-{uuid.uuid4().hex[:8]}", name=label, level=JurisdictionLevel.district,
        geom=MultiPolygon([box(120.0, 30.0, 120.1, 30.1)]), area_m2=1.0,
    )  # fmt: skip
    session.add(area)
    session.flush()
    return area.id


def _counts(session: Session) -> tuple[int, int]:
    cases = session.scalar(select(func.count()).select_from(Case)) or 0
    events = session.scalar(select(func.count()).select_from(CaseEvent)) or 0
    return cases, events


def test_policies_show_only_the_callers_rows_and_nothing_without_a_scope(
    db_session: Session,
) -> None:
    if db_session.get_bind().dialect.name != "postgresql":
        pytest.skip("row-level security is a PostgreSQL feature")
    mine, theirs = _area(db_session, "mine"), _area(db_session, "theirs")
    add_case(db_session, mine, "in")
    add_case(db_session, theirs, "out")
    everything = _counts(db_session)
    probe = f"tx_rls_probe_{uuid.uuid4().hex[:8]}"
    for statement in rls.policy_statements():
        db_session.execute(text(statement))
    db_session.execute(text(f"CREATE ROLE {probe} NOLOGIN"))
    db_session.execute(text(f'GRANT SELECT, UPDATE ON "case", case_event TO {probe}'))
    db_session.execute(text(f"SET LOCAL ROLE {probe}"))  # not a superuser: policies apply

    assert _counts(db_session) == (0, 0)  # no scope set: nothing, not everything
    rls.apply_scope(db_session, Principal(1, "i", Role.inspector, frozenset({mine})))
    assert _counts(db_session) == (1, 1)
    moved = db_session.execute(
        text('UPDATE "case" SET priority = 99 WHERE jurisdiction_id = :j'), {"j": theirs}
    )
    assert moved.rowcount == 0  # type: ignore[attr-defined]
    rls.apply_scope(db_session, Principal(2, "a", Role.admin, frozenset()))
    assert _counts(db_session) == everything
    rls.apply_scope(db_session, Principal(1, "i", Role.inspector, frozenset({mine})))
    with pytest.raises(ProgrammingError, match="row-level security"), db_session.begin_nested():
        db_session.execute(
            text('UPDATE "case" SET jurisdiction_id = :theirs WHERE jurisdiction_id = :mine'),
            {"theirs": theirs, "mine": mine},
        )
