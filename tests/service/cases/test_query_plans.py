"""On SQLite a bbox listing is driven by the R*Tree, whatever other filters it carries."""

from __future__ import annotations

from sqlalchemy import Select, text
from sqlalchemy.orm import Session

from models import Case
from models.case import CaseStatus
from models.client import Role
from service.auth import Principal
from service.cases.queries import CaseFilter, visible_cases
from service.db import create_db_engine
from service.spatial import BBox, intersects_clause

ADMIN = Principal(client_id=0, name="centre", role=Role.admin, jurisdiction_ids=frozenset())
INSPECTOR = Principal(
    client_id=0, name="chief", role=Role.inspector, jurisdiction_ids=frozenset({1})
)
BOX = BBox(120.0, 30.0, 120.01, 30.01)
STATUSES = frozenset({CaseStatus.new, CaseStatus.verifying})


def test_the_rtree_drives_a_bbox_listing_filtered_by_status_and_jurisdiction(
    sqlite_url: str,
) -> None:
    for principal in (ADMIN, INSPECTOR):
        filters = CaseFilter(bbox=BOX, statuses=STATUSES, priority_min=10)
        steps = plan(sqlite_url, principal, filters)
        # The R*Tree's candidates are looked up by rowid; no b-tree index of `case` (status,
        # priority, jurisdiction) is walked over most of the table instead.
        assert any("case_rtree" in step for step in steps), steps
        assert any("INTEGER PRIMARY KEY" in step for step in steps), steps
        assert not any("USING INDEX" in step for step in steps), steps


def test_without_a_bbox_the_status_index_still_serves(sqlite_url: str) -> None:
    steps = plan(sqlite_url, ADMIN, CaseFilter(statuses=STATUSES))
    assert any("USING INDEX ix_case_status_priority" in step for step in steps), steps


def plan(url: str, principal: Principal, filters: CaseFilter) -> list[str]:
    """SQLite's plan for one page of the listing, step by step."""
    engine = create_db_engine(url)
    try:
        with Session(engine) as session:
            sql = str(
                listing(principal, filters, session).compile(
                    engine, compile_kwargs={"literal_binds": True}
                )
            )
            return [row[-1] for row in session.execute(text("EXPLAIN QUERY PLAN " + sql))]
    finally:
        engine.dispose()


def listing(principal: Principal, filters: CaseFilter, session: Session) -> Select[tuple[Case]]:
    statement = visible_cases(principal, filters, session=session)
    if filters.bbox is not None:
        statement = statement.where(intersects_clause(Case, filters.bbox.geometry, "sqlite"))
    return statement.order_by(Case.last_seen_at.desc(), Case.id.desc()).limit(101)
