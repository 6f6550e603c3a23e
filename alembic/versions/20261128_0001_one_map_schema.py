"""one map schema

Revision ID: 0001
Revises:
Create Date: 2026-11-28 16:04:44.362113
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from models.geo import Geometry, gist_index_name, sqlite_rtree_ddl, sqlite_rtree_drop_ddl

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
SPATIAL_TABLES = (
    "jurisdiction",
    "layer_feature",
    "camera",
    "camera_preset",
    "scene",
    "detection",
    "case",
)


def create_spatial_indexes() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in SPATIAL_TABLES:
            op.create_index(gist_index_name(table), table, ["geom"], postgresql_using="gist")
    else:
        for table in SPATIAL_TABLES:
            for statement in sqlite_rtree_ddl(table):
                op.execute(statement)


def drop_spatial_indexes() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in SPATIAL_TABLES:
            op.drop_index(gist_index_name(table), table_name=table)
    else:
        for table in SPATIAL_TABLES:
            for statement in sqlite_rtree_drop_ddl(table):
                op.execute(statement)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    op.create_table(
        "api_client",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "role",
            sa.Enum(
                "admin", "monitor", "inspector", "analyst", "ingest", name="role", native_enum=False
            ),
            nullable=False,
        ),
        sa.Column("key_prefix", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=128), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("rotated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_client")),
        sa.UniqueConstraint("key_prefix", name=op.f("uq_api_client_key_prefix")),
        sa.UniqueConstraint("name", name=op.f("uq_api_client_name")),
    )
    op.create_table(
        "jurisdiction",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "level",
            sa.Enum(
                "city",
                "district",
                "township",
                "village",
                name="jurisdictionlevel",
                native_enum=False,
            ),
            nullable=False,
        ),
        sa.Column("parent_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("geom", Geometry("MULTIPOLYGON"), nullable=False),
        sa.Column("area_m2", sa.Float(), nullable=False),
        sa.Column("minx", sa.Float(), nullable=True),
        sa.Column("miny", sa.Float(), nullable=True),
        sa.Column("maxx", sa.Float(), nullable=True),
        sa.Column("maxy", sa.Float(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["jurisdiction.id"], name=op.f("fk_jurisdiction_parent_id_jurisdiction")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jurisdiction")),
        sa.UniqueConstraint("code", name=op.f("uq_jurisdiction_code")),
    )
    with op.batch_alter_table("jurisdiction", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_jurisdiction_parent_id"), ["parent_id"], unique=False)

    op.create_table(
        "layer",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "cultivated_land",
                "permanent_basic_farmland",
                "urban_development_boundary",
                "ecological_red_line",
                "purple_line",
                "yellow_line",
                "blue_line",
                "green_line",
                "orange_line",
                "geohazard_line",
                "approved_construction",
                "facility_agriculture",
                name="layerkind",
                native_enum=False,
            ),
            nullable=False,
        ),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_layer")),
        sa.UniqueConstraint("kind", name=op.f("uq_layer_kind")),
    )
    op.create_table(
        "camera",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("height_m", sa.Float(), nullable=True),
        sa.Column(
            "jurisdiction_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column(
            "health",
            sa.Enum(
                "ok",
                "moved",
                "obstructed",
                "night_ir",
                "no_signal",
                "unknown",
                name="camerahealth",
                native_enum=False,
            ),
            nullable=False,
        ),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("geom", Geometry("POINT"), nullable=False),
        sa.Column("minx", sa.Float(), nullable=True),
        sa.Column("miny", sa.Float(), nullable=True),
        sa.Column("maxx", sa.Float(), nullable=True),
        sa.Column("maxy", sa.Float(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["jurisdiction_id"],
            ["jurisdiction.id"],
            name=op.f("fk_camera_jurisdiction_id_jurisdiction"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_camera")),
        sa.UniqueConstraint("code", name=op.f("uq_camera_code")),
    )
    with op.batch_alter_table("camera", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_camera_jurisdiction_id"), ["jurisdiction_id"], unique=False
        )

    op.create_table(
        "case",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "new",
                "dispatched",
                "verifying",
                "confirmed",
                "dismissed",
                "rectifying",
                "rectified",
                "closed",
                name="casestatus",
                native_enum=False,
            ),
            nullable=False,
        ),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column(
            "confidence_level",
            sa.Enum("nominal", "high", "highest", name="confidencelevel", native_enum=False),
            nullable=False,
        ),
        sa.Column("change_types", JSON, nullable=False),
        sa.Column("sources", JSON, nullable=False),
        sa.Column(
            "jurisdiction_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column(
            "assignee_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("area_m2", sa.Float(), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("onset_after", sa.DateTime(timezone=True), nullable=True),
        sa.Column("onset_before", sa.DateTime(timezone=True), nullable=True),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("escalated", sa.Boolean(), nullable=False),
        sa.Column("escalation_reason", sa.Text(), nullable=True),
        sa.Column("reopen_count", sa.Integer(), nullable=False),
        sa.Column("dismissal_reason", sa.String(length=64), nullable=True),
        sa.Column("backfill", sa.Boolean(), nullable=False),
        sa.Column("geom", Geometry("MULTIPOLYGON"), nullable=False),
        sa.Column("minx", sa.Float(), nullable=True),
        sa.Column("miny", sa.Float(), nullable=True),
        sa.Column("maxx", sa.Float(), nullable=True),
        sa.Column("maxy", sa.Float(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["assignee_id"], ["api_client.id"], name=op.f("fk_case_assignee_id_api_client")
        ),
        sa.ForeignKeyConstraint(
            ["jurisdiction_id"],
            ["jurisdiction.id"],
            name=op.f("fk_case_jurisdiction_id_jurisdiction"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case")),
        sa.UniqueConstraint("code", name=op.f("uq_case_code")),
    )
    with op.batch_alter_table("case", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_case_jurisdiction_id"), ["jurisdiction_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_case_last_seen_at"), ["last_seen_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_case_status_priority"), ["status", "priority"], unique=False
        )

    op.create_table(
        "client_jurisdiction",
        sa.Column(
            "client_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "jurisdiction_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["api_client.id"],
            name=op.f("fk_client_jurisdiction_client_id_api_client"),
        ),
        sa.ForeignKeyConstraint(
            ["jurisdiction_id"],
            ["jurisdiction.id"],
            name=op.f("fk_client_jurisdiction_jurisdiction_id_jurisdiction"),
        ),
        sa.PrimaryKeyConstraint(
            "client_id", "jurisdiction_id", name=op.f("pk_client_jurisdiction")
        ),
    )
    op.create_table(
        "idempotency_key",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("client_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response", JSON, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"], ["api_client.id"], name=op.f("fk_idempotency_key_client_id_api_client")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idempotency_key")),
        sa.UniqueConstraint("client_id", "key", name=op.f("uq_idempotency_key_client_id_key")),
    )
    op.create_table(
        "layer_version",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("layer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_to", sa.DateTime(timezone=True), nullable=True),
        sa.Column("source", sa.String(length=500), nullable=False),
        sa.Column("checksum", sa.String(length=64), nullable=False),
        sa.Column("feature_count", sa.Integer(), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["layer_id"], ["layer.id"], name=op.f("fk_layer_version_layer_id_layer")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_layer_version")),
        sa.UniqueConstraint("layer_id", "version", name=op.f("uq_layer_version_layer_id_version")),
    )
    with op.batch_alter_table("layer_version", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_layer_version_layer_id"), ["layer_id"], unique=False)

    op.create_table(
        "webhook_subscription",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "client_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("secrets", JSON, nullable=False),
        sa.Column("filters", JSON, nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("last_event_id", sa.Integer(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["api_client.id"],
            name=op.f("fk_webhook_subscription_client_id_api_client"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_subscription")),
    )
    with op.batch_alter_table("webhook_subscription", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_webhook_subscription_client_id"), ["client_id"], unique=False
        )

    op.create_table(
        "alert_event",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("case_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("camera_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column(
            "jurisdiction_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("backfill", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["camera_id"], ["camera.id"], name=op.f("fk_alert_event_camera_id_camera")
        ),
        sa.ForeignKeyConstraint(["case_id"], ["case.id"], name=op.f("fk_alert_event_case_id_case")),
        sa.ForeignKeyConstraint(
            ["jurisdiction_id"],
            ["jurisdiction.id"],
            name=op.f("fk_alert_event_jurisdiction_id_jurisdiction"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_event")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("alert_event", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alert_event_case_id"), ["case_id"], unique=False)

    op.create_table(
        "camera_preset",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "camera_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("preset", sa.String(length=32), nullable=False),
        sa.Column("image_width", sa.Integer(), nullable=False),
        sa.Column("image_height", sa.Integer(), nullable=False),
        sa.Column("control_points", JSON, nullable=False),
        sa.Column("homography", JSON, nullable=True),
        sa.Column("rms_error_m", sa.Float(), nullable=True),
        sa.Column("calibrated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("geom", Geometry("POLYGON"), nullable=True),
        sa.Column("minx", sa.Float(), nullable=True),
        sa.Column("miny", sa.Float(), nullable=True),
        sa.Column("maxx", sa.Float(), nullable=True),
        sa.Column("maxy", sa.Float(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["camera_id"], ["camera.id"], name=op.f("fk_camera_preset_camera_id_camera")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_camera_preset")),
        sa.UniqueConstraint("camera_id", "preset", name=op.f("uq_camera_preset_camera_id_preset")),
    )
    with op.batch_alter_table("camera_preset", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_camera_preset_camera_id"), ["camera_id"], unique=False)

    op.create_table(
        "case_event",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("case_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("from_status", sa.String(length=32), nullable=True),
        sa.Column("to_status", sa.String(length=32), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("case_version", sa.Integer(), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["case.id"], name=op.f("fk_case_event_case_id_case")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_event")),
        sa.UniqueConstraint("case_id", "seq", name=op.f("uq_case_event_case_id_seq")),
    )
    with op.batch_alter_table("case_event", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_case_event_case_id"), ["case_id"], unique=False)

    op.create_table(
        "layer_feature",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "layer_version_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("source_ref", sa.String(length=200), nullable=False),
        sa.Column("part", sa.Integer(), nullable=False),
        sa.Column("properties", JSON, nullable=False),
        sa.Column("geom", Geometry("MULTIPOLYGON"), nullable=False),
        sa.Column("area_m2", sa.Float(), nullable=False),
        sa.Column("minx", sa.Float(), nullable=True),
        sa.Column("miny", sa.Float(), nullable=True),
        sa.Column("maxx", sa.Float(), nullable=True),
        sa.Column("maxy", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["layer_version_id"],
            ["layer_version.id"],
            name=op.f("fk_layer_feature_layer_version_id_layer_version"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_layer_feature")),
    )
    with op.batch_alter_table("layer_feature", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_layer_feature_layer_version_id"), ["layer_version_id"], unique=False
        )

    op.create_table(
        "scene",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "kind",
            sa.Enum("camera_snapshot", "rs_tile", name="scenekind", native_enum=False),
            nullable=False,
        ),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("storage_uri", sa.String(length=1000), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("media_type", sa.String(length=100), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("sensor", sa.String(length=100), nullable=False),
        sa.Column(
            "camera_preset_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("crs", sa.String(length=64), nullable=True),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("bands", JSON, nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "received",
                "processing",
                "analysed",
                "failed",
                name="scenestatus",
                native_enum=False,
            ),
            nullable=False,
        ),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("stac_item", JSON, nullable=True),
        sa.Column("geom", Geometry("POLYGON"), nullable=True),
        sa.Column("minx", sa.Float(), nullable=True),
        sa.Column("miny", sa.Float(), nullable=True),
        sa.Column("maxx", sa.Float(), nullable=True),
        sa.Column("maxy", sa.Float(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["camera_preset_id"],
            ["camera_preset.id"],
            name=op.f("fk_scene_camera_preset_id_camera_preset"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scene")),
        sa.UniqueConstraint("sha256", name=op.f("uq_scene_sha256")),
    )
    with op.batch_alter_table("scene", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_scene_camera_preset_id_acquired_at"),
            ["camera_preset_id", "acquired_at"],
            unique=False,
        )

    op.create_table(
        "webhook_delivery",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "subscription_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("event_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "status",
            sa.Enum("pending", "delivered", "dead", name="deliverystatus", native_enum=False),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["event_id"], ["alert_event.id"], name=op.f("fk_webhook_delivery_event_id_alert_event")
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["webhook_subscription.id"],
            name=op.f("fk_webhook_delivery_subscription_id_webhook_subscription"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_delivery")),
        sa.UniqueConstraint(
            "subscription_id", "event_id", name=op.f("uq_webhook_delivery_subscription_id_event_id")
        ),
    )
    with op.batch_alter_table("webhook_delivery", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_webhook_delivery_status_next_attempt_at"),
            ["status", "next_attempt_at"],
            unique=False,
        )

    op.create_table(
        "detection",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("scene_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "reference_scene_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=True,
        ),
        sa.Column(
            "source",
            sa.Enum("camera", "remote_sensing", name="detectionsource", native_enum=False),
            nullable=False,
        ),
        sa.Column("detector_version", sa.String(length=64), nullable=False),
        sa.Column("parameters", JSON, nullable=False),
        sa.Column("object_index", sa.Integer(), nullable=False),
        sa.Column(
            "change_type",
            sa.Enum(
                "building",
                "hardening",
                "excavation",
                "piling",
                "pond",
                "material_stacking",
                "vegetation_loss",
                "machinery",
                "ploughing",
                "harvest",
                "paddy_flooding",
                "unknown",
                name="changetype",
                native_enum=False,
            ),
            nullable=False,
        ),
        sa.Column("benign", sa.Boolean(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("area_m2", sa.Float(), nullable=False),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("onset_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "screening",
            sa.Enum(
                "pending",
                "suspected_violation",
                "covered_by_approval",
                "outside_farmland",
                "benign",
                "suppressed",
                name="screening",
                native_enum=False,
            ),
            nullable=False,
        ),
        sa.Column("case_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("backfill", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("geom", Geometry("POLYGON"), nullable=False),
        sa.Column("minx", sa.Float(), nullable=True),
        sa.Column("miny", sa.Float(), nullable=True),
        sa.Column("maxx", sa.Float(), nullable=True),
        sa.Column("maxy", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["case.id"], name=op.f("fk_detection_case_id_case")),
        sa.ForeignKeyConstraint(
            ["reference_scene_id"], ["scene.id"], name=op.f("fk_detection_reference_scene_id_scene")
        ),
        sa.ForeignKeyConstraint(
            ["scene_id"], ["scene.id"], name=op.f("fk_detection_scene_id_scene")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_detection")),
        sa.UniqueConstraint(
            "scene_id",
            "detector_version",
            "object_index",
            name=op.f("uq_detection_scene_id_detector_version_object_index"),
        ),
    )
    with op.batch_alter_table("detection", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_detection_case_id"), ["case_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_detection_scene_id"), ["scene_id"], unique=False)

    op.create_table(
        "ingest_job",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("scene_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("task", sa.String(length=64), nullable=False),
        sa.Column(
            "status",
            sa.Enum("queued", "running", "done", "dead", name="jobstatus", native_enum=False),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("run_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_owner", sa.String(length=200), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("dead_reason", sa.Text(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["scene_id"], ["scene.id"], name=op.f("fk_ingest_job_scene_id_scene")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ingest_job")),
        sa.UniqueConstraint("scene_id", "task", name=op.f("uq_ingest_job_scene_id_task")),
    )
    with op.batch_alter_table("ingest_job", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ingest_job_scene_id"), ["scene_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_ingest_job_status_run_after"), ["status", "run_after"], unique=False
        )

    op.create_table(
        "evidence",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("case_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "field_photo",
                "chip_before",
                "chip_after",
                "document",
                name="evidencekind",
                native_enum=False,
            ),
            nullable=False,
        ),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("storage_uri", sa.String(length=1000), nullable=False),
        sa.Column("media_type", sa.String(length=100), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lon", sa.Float(), nullable=True),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column(
            "detection_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("uploaded_by", sa.String(length=200), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["case.id"], name=op.f("fk_evidence_case_id_case")),
        sa.ForeignKeyConstraint(
            ["detection_id"], ["detection.id"], name=op.f("fk_evidence_detection_id_detection")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evidence")),
    )
    with op.batch_alter_table("evidence", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_evidence_case_id"), ["case_id"], unique=False)

    op.create_table(
        "layer_hit",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "detection_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "layer_version_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "layer_feature_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("layer_kind", sa.String(length=64), nullable=False),
        sa.Column("overlap_m2", sa.Float(), nullable=False),
        sa.Column("overlap_mu", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["detection_id"], ["detection.id"], name=op.f("fk_layer_hit_detection_id_detection")
        ),
        sa.ForeignKeyConstraint(
            ["layer_feature_id"],
            ["layer_feature.id"],
            name=op.f("fk_layer_hit_layer_feature_id_layer_feature"),
        ),
        sa.ForeignKeyConstraint(
            ["layer_version_id"],
            ["layer_version.id"],
            name=op.f("fk_layer_hit_layer_version_id_layer_version"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_layer_hit")),
        sa.UniqueConstraint(
            "detection_id",
            "layer_feature_id",
            name=op.f("uq_layer_hit_detection_id_layer_feature_id"),
        ),
    )
    with op.batch_alter_table("layer_hit", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_layer_hit_detection_id"), ["detection_id"], unique=False
        )

    create_spatial_indexes()


def downgrade() -> None:
    drop_spatial_indexes()
    with op.batch_alter_table("layer_hit", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_layer_hit_detection_id"))

    op.drop_table("layer_hit")
    with op.batch_alter_table("evidence", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_evidence_case_id"))

    op.drop_table("evidence")
    with op.batch_alter_table("ingest_job", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ingest_job_status_run_after"))
        batch_op.drop_index(batch_op.f("ix_ingest_job_scene_id"))

    op.drop_table("ingest_job")
    with op.batch_alter_table("detection", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_detection_scene_id"))
        batch_op.drop_index(batch_op.f("ix_detection_case_id"))

    op.drop_table("detection")
    with op.batch_alter_table("webhook_delivery", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_delivery_status_next_attempt_at"))

    op.drop_table("webhook_delivery")
    with op.batch_alter_table("scene", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_scene_camera_preset_id_acquired_at"))

    op.drop_table("scene")
    with op.batch_alter_table("layer_feature", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_layer_feature_layer_version_id"))

    op.drop_table("layer_feature")
    with op.batch_alter_table("case_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_case_event_case_id"))

    op.drop_table("case_event")
    with op.batch_alter_table("camera_preset", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_camera_preset_camera_id"))

    op.drop_table("camera_preset")
    with op.batch_alter_table("alert_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alert_event_case_id"))

    op.drop_table("alert_event")
    with op.batch_alter_table("webhook_subscription", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_subscription_client_id"))

    op.drop_table("webhook_subscription")
    with op.batch_alter_table("layer_version", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_layer_version_layer_id"))

    op.drop_table("layer_version")
    op.drop_table("idempotency_key")
    op.drop_table("client_jurisdiction")
    with op.batch_alter_table("case", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_case_status_priority"))
        batch_op.drop_index(batch_op.f("ix_case_last_seen_at"))
        batch_op.drop_index(batch_op.f("ix_case_jurisdiction_id"))

    op.drop_table("case")
    with op.batch_alter_table("camera", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_camera_jurisdiction_id"))

    op.drop_table("camera")
    op.drop_table("layer")
    with op.batch_alter_table("jurisdiction", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jurisdiction_parent_id"))

    op.drop_table("jurisdiction")
    op.drop_table("api_client")
