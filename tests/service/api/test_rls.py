"""Row-level security on PostgreSQL: a query that forgets the jurisdiction filter fails closed.

The world's service connects as an ordinary role (see conftest), so the policies apply here
exactly as in production; a superuser would see every row whatever the setting.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.orm import Session

from models import Case, CaseEvent
from models.client import Role
from service import rls
from service.auth import Principal
from service.cases import queries
from service.cases.queries import CaseFilter
from service.db import create_session_factory, machine_session_factory, transaction
from tests.service.api.conftest import World


@pytest.fixture
def engine(world: World) -> Iterator[Engine]:
    if not world.url.startswith("postgresql"):
        pytest.skip("row-level security is a PostgreSQL feature")
    engine: Engine = world.http.app.state.engine  # type: ignore[attr-defined]
    with engine.connect() as connection:
        superuser, bypass = connection.execute(
            text("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
        ).one()
    assert not superuser and not bypass, "the service must not connect as a superuser here"
    yield engine


def _inspector(world: World, label: str = "A1") -> Principal:
    return Principal(1, "inspector", Role.inspector, frozenset({world.ids[label]}))


def _visible(session: Session, world: World) -> set[int]:
    """This world's cases and cases with events that the session can see, filter-free."""
    ids = world.case_ids
    cases = set(session.scalars(select(Case.id).where(Case.id.in_(ids))))
    with_events = set(session.scalars(select(CaseEvent.case_id).where(CaseEvent.case_id.in_(ids))))
    assert cases == with_events  # events follow their case
    return cases


def test_a_session_without_a_scope_sees_no_cases(world: World, engine: Engine) -> None:
    with transaction(create_session_factory(engine)) as session:
        assert session.scalar(select(func.count()).select_from(Case)) == 0
        assert session.scalar(select(func.count()).select_from(CaseEvent)) == 0


def test_an_unfiltered_query_shows_an_inspector_only_their_jurisdiction(
    world: World, engine: Engine
) -> None:
    inside = world.case_ids[0]  # the world's "in" case; "out" lies in district B
    as_admin = Principal(2, "admin", Role.admin, frozenset())  # no filter in the query
    with transaction(create_session_factory(engine)) as session:
        rls.apply_scope(session, _inspector(world))
        assert _visible(session, world) == {inside}
        everything = queries.all_cases(as_admin, CaseFilter(), session=session, max_rows=10_000)
        assert inside in {c.id for c in everything}
        assert {c.jurisdiction_id for c in everything} <= {world.ids["A1"]}


def test_the_scope_survives_a_commit_within_one_session(world: World, engine: Engine) -> None:
    with create_session_factory(engine)() as session:
        rls.apply_scope(session, _inspector(world, "B"))
        session.commit()
        assert _visible(session, world) == {world.case_ids[1]}


def test_machine_jobs_see_every_jurisdiction(world: World, engine: Engine) -> None:
    with transaction(machine_session_factory(engine)) as session:
        assert _visible(session, world) == set(world.case_ids)


def test_an_inspector_cannot_write_into_another_jurisdiction(world: World, engine: Engine) -> None:
    theirs, mine = world.ids["B"], world.ids["A1"]
    with create_session_factory(engine)() as session, session.begin():
        rls.apply_scope(session, _inspector(world))
        moved = session.execute(
            text('UPDATE "case" SET priority = 99 WHERE jurisdiction_id = :j'), {"j": theirs}
        )
        assert moved.rowcount == 0  # type: ignore[attr-defined]
        with pytest.raises(ProgrammingError, match="row-level security"):
            session.execute(
                text('UPDATE "case" SET jurisdiction_id = :theirs WHERE id = :id'),
                {"theirs": theirs, "id": world.case_ids[0]},
            )
        session.rollback()
    with transaction(machine_session_factory(engine)) as session:
        case = session.get(Case, world.case_ids[0])
        assert case is not None and case.jurisdiction_id == mine
