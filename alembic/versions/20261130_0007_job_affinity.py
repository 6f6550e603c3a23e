"""a job's preferred worker process, and the process holding a preset's detector state

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 12:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from models.geo import sqlite_rtree_ddl, sqlite_rtree_drop_ddl

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN (no batch copy), so SQLite keeps camera_preset's R*Tree triggers.
    op.add_column("ingest_job", sa.Column("preferred_worker", sa.String(200), nullable=True))
    op.add_column("camera_preset", sa.Column("state_holder", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ingest_job") as batch:
        batch.drop_column("preferred_worker")
    with op.batch_alter_table("camera_preset") as batch:
        batch.drop_column("state_holder")
    if op.get_bind().dialect.name == "sqlite":
        # SQLite drops columns by copying the table, which loses the R*Tree's triggers.
        for statement in [
            *sqlite_rtree_drop_ddl("camera_preset"),
            *sqlite_rtree_ddl("camera_preset"),
        ]:
            op.execute(statement)
