"""camera detector states kept as a manifest in the preset row and chunks by content key

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 02:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from models.base import BigId

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # States already stored whole in camera_preset.detector_state still load; each preset's
    # next write moves its state to a manifest and chunks.
    op.create_table(
        "camera_state_chunk",
        sa.Column(
            "preset_id",
            BigId,
            sa.ForeignKey("camera_preset.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("data", sa.LargeBinary(), nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        # The chunks are Zstandard output already: TOAST them without trying to compress.
        op.execute("ALTER TABLE camera_state_chunk ALTER COLUMN data SET STORAGE EXTERNAL")


def downgrade() -> None:
    # A manifest means nothing without its chunks: those presets start from an empty state.
    op.execute(
        "UPDATE camera_preset SET detector_state = NULL, "
        "detector_state_version = detector_state_version + 1 "
        "WHERE id IN (SELECT DISTINCT preset_id FROM camera_state_chunk)"
    )
    op.drop_table("camera_state_chunk")
