"""the onset bracket of each part of a case that grew in places apart

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 04:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from models.geo import sqlite_rtree_ddl, sqlite_rtree_drop_ddl

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    # Plain ADD COLUMN (no batch copy), so SQLite keeps the table's R*Tree triggers. Cases
    # traced before have no parts until traced again.
    op.add_column(
        "case", sa.Column("onset_parts", JSON, nullable=False, server_default=sa.text("'[]'"))
    )


def downgrade() -> None:
    with op.batch_alter_table("case") as batch:
        batch.drop_column("onset_parts")
    if op.get_bind().dialect.name == "sqlite":
        # SQLite drops columns by copying the table, which loses the R*Tree's triggers.
        for statement in [*sqlite_rtree_drop_ddl("case"), *sqlite_rtree_ddl("case")]:
            op.execute(statement)
