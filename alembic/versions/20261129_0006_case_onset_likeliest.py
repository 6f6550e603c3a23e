"""the likeliest onset date of a case, within its traced bracket

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 22:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from models.geo import sqlite_rtree_ddl, sqlite_rtree_drop_ddl

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN (no batch copy), so SQLite keeps the table's R*Tree triggers. Cases
    # traced before keep it empty until traced again: it is not their first visible date.
    op.add_column("case", sa.Column("onset_likeliest", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("case") as batch:
        batch.drop_column("onset_likeliest")
    if op.get_bind().dialect.name == "sqlite":
        # SQLite drops columns by copying the table, which loses the R*Tree's triggers.
        for statement in [*sqlite_rtree_drop_ddl("case"), *sqlite_rtree_ddl("case")]:
            op.execute(statement)
