"""camera detector state per preset, farmland observation times

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 17:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from models.base import UTCDateTime
from models.geo import sqlite_rtree_ddl, sqlite_rtree_drop_ddl

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("camera_preset") as batch:
        batch.add_column(sa.Column("detector_state", sa.LargeBinary(), nullable=True))
        batch.add_column(
            sa.Column("detector_state_version", sa.Integer(), nullable=False, server_default="0")
        )
    op.create_table(
        "farmland_observation",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("layer_feature_id", BIG_ID, nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("last_observed_at", UTCDateTime(), nullable=False),
        sa.Column("scene_id", BIG_ID, nullable=False),
        sa.ForeignKeyConstraint(
            ["layer_feature_id"],
            ["layer_feature.id"],
            name=op.f("fk_farmland_observation_layer_feature_id_layer_feature"),
        ),
        sa.ForeignKeyConstraint(
            ["scene_id"], ["scene.id"], name=op.f("fk_farmland_observation_scene_id_scene")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_farmland_observation")),
        sa.UniqueConstraint(
            "layer_feature_id",
            "source",
            name=op.f("uq_farmland_observation_layer_feature_id_source"),
        ),
    )


def downgrade() -> None:
    op.drop_table("farmland_observation")
    with op.batch_alter_table("camera_preset") as batch:
        batch.drop_column("detector_state_version")
        batch.drop_column("detector_state")
    if op.get_bind().dialect.name == "sqlite":
        # SQLite drops columns by copying the table, which loses the R*Tree's triggers.
        for statement in [
            *sqlite_rtree_drop_ddl("camera_preset"),
            *sqlite_rtree_ddl("camera_preset"),
        ]:
            op.execute(statement)
