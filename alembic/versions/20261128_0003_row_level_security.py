"""row-level security: jurisdiction scoping on cases, their events, evidence and alerts

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 18:00:00
"""

from collections.abc import Sequence

from alembic import op

from service.rls import drop_policy_statements, policy_statements

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # SQLite has no row-level security; the service's query filters are its only wall there.
    if op.get_bind().dialect.name != "postgresql":
        return
    for statement in policy_statements():
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for statement in drop_policy_statements():
        op.execute(statement)
