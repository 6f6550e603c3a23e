"""the head of each case's event chain kept on the case row

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 06:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from models.case import GENESIS_HASH
from models.geo import sqlite_rtree_ddl, sqlite_rtree_drop_ddl
from service import rls

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Every case with events takes the seq and hash of its last one.
FILL_HEADS = """
UPDATE "case" SET
    event_seq = (SELECT max(e.seq) FROM case_event e WHERE e.case_id = "case".id),
    event_hash = (
        SELECT e.hash FROM case_event e WHERE e.case_id = "case".id ORDER BY e.seq DESC LIMIT 1
    )
WHERE EXISTS (SELECT 1 FROM case_event e WHERE e.case_id = "case".id)
"""


def upgrade() -> None:
    # Plain ADD COLUMN (no batch copy), so SQLite keeps the table's R*Tree triggers.
    op.add_column("case", sa.Column("event_seq", sa.Integer(), nullable=False, server_default="0"))
    op.add_column(
        "case",
        sa.Column("event_hash", sa.String(64), nullable=False, server_default=GENESIS_HASH),
    )
    if op.get_bind().dialect.name == "postgresql":
        # Row-level security is forced on the table owner too: the fill must see every case.
        op.execute(sa.text(f"SELECT set_config('{rls.SETTING}', '{rls.EVERYTHING}', true)"))
    op.execute(FILL_HEADS)


def downgrade() -> None:
    with op.batch_alter_table("case") as batch:
        batch.drop_column("event_hash")
        batch.drop_column("event_seq")
    if op.get_bind().dialect.name == "sqlite":
        # SQLite drops columns by copying the table, which loses the R*Tree's triggers.
        for statement in [*sqlite_rtree_drop_ddl("case"), *sqlite_rtree_ddl("case")]:
            op.execute(statement)
