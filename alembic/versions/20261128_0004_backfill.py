"""batch backfills: runs and their work units (tile × date pair, once per detector version)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 19:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from models.base import UTCDateTime

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _times() -> list[sa.Column]:
    return [
        sa.Column("created_at", UTCDateTime(), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), server_default=sa.func.now(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "backfill_run",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column(
            "status",
            sa.Enum("running", "done", name="backfillrunstatus", native_enum=False),
            nullable=False,
        ),
        sa.Column("area", JSON, nullable=False),
        sa.Column("since", UTCDateTime(), nullable=False),
        sa.Column("until", UTCDateTime(), nullable=False),
        sa.Column("source", sa.String(length=2000), nullable=False),
        sa.Column("alert", sa.Boolean(), nullable=False),
        sa.Column("detector_version", sa.String(length=64), nullable=False),
        sa.Column("parameters", JSON, nullable=False),
        sa.Column("layer_versions", JSON, nullable=False),
        sa.Column("scene_ids", JSON, nullable=False),
        sa.Column("problems", JSON, nullable=False),
        sa.Column("summary", JSON, nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        *_times(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backfill_run")),
        sa.UniqueConstraint("fingerprint", name=op.f("uq_backfill_run_fingerprint")),
    )
    op.create_table(
        "backfill_unit",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("run_id", BIG_ID, nullable=False),
        sa.Column("before_scene_id", BIG_ID, nullable=False),
        sa.Column("after_scene_id", BIG_ID, nullable=False),
        sa.Column("detector_version", sa.String(length=64), nullable=False),
        sa.Column(
            "status",
            sa.Enum("pending", "done", "failed", name="backfillunitstatus", native_enum=False),
            nullable=False,
        ),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("objects", sa.Integer(), nullable=False),
        sa.Column("pixels", sa.BigInteger(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        *_times(),
        sa.ForeignKeyConstraint(
            ["after_scene_id"], ["scene.id"], name=op.f("fk_backfill_unit_after_scene_id_scene")
        ),
        sa.ForeignKeyConstraint(
            ["before_scene_id"], ["scene.id"], name=op.f("fk_backfill_unit_before_scene_id_scene")
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["backfill_run.id"], name=op.f("fk_backfill_unit_run_id_backfill_run")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backfill_unit")),
        sa.UniqueConstraint(
            "before_scene_id",
            "after_scene_id",
            "detector_version",
            name=op.f("uq_backfill_unit_before_scene_id_after_scene_id_detector_version"),
        ),
    )
    op.create_index(
        op.f("ix_backfill_unit_after_scene_id"), "backfill_unit", ["after_scene_id"], unique=False
    )
    op.create_index(op.f("ix_backfill_unit_run_id"), "backfill_unit", ["run_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_backfill_unit_run_id"), table_name="backfill_unit")
    op.drop_index(op.f("ix_backfill_unit_after_scene_id"), table_name="backfill_unit")
    op.drop_table("backfill_unit")
    op.drop_table("backfill_run")
