"""Alembic environment: the same migrations run on SQLite and on PostgreSQL + PostGIS."""

from __future__ import annotations

from logging.config import fileConfig
from typing import Any

import geoalchemy2  # noqa: F401  (teaches reflection the PostGIS `geometry` type)
from alembic import context
from sqlalchemy import Connection

from models import Base
from models.geo import Geometry
from service.db import create_db_engine
from service.settings import Settings

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

# Objects that exist in the database but not in the metadata, on purpose: SQLite's R*Tree
# tables (and their shadow tables), PostGIS's own catalogue, and the GiST indexes the
# migrations create by hand.
_UNMODELLED_TABLES = ("spatial_ref_sys", "geography_columns", "geometry_columns")


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    if name is None:
        return True
    if type_ == "table":
        return "_rtree" not in name and name not in _UNMODELLED_TABLES
    if type_ == "index":
        return not name.endswith("_geom_gist")
    return True


def compare_type(
    context: Any, inspected: Any, metadata: Any, inspected_type: Any, metadata_type: Any
) -> bool | None:
    if isinstance(metadata_type, Geometry):
        return False  # reflected as PostGIS geometry or BLOB; both are what the type makes
    return None


def run_with(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        include_name=include_name,
        compare_type=compare_type,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_with(connection)
        return
    url = config.get_main_option("sqlalchemy.url") or Settings().database_url
    engine = create_db_engine(url)
    try:
        with engine.connect() as connection:
            run_with(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported: run against a database")
run_migrations_online()
