"""`tianxun layers import` and `tianxun jurisdictions import`: thin wrappers over the importers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, NoReturn, TypeVar

import typer
from sqlalchemy.orm import Session

from models.jurisdiction import JurisdictionLevel
from models.layer import LayerKind
from service.db import create_db_engine, machine_session_factory, migration_state, transaction
from service.errors import TianxunError
from service.jurisdictions.importer import DEFAULT_PARENT_FIELD, import_jurisdictions
from service.layers.importer import import_layer
from service.settings import Settings

T = TypeVar("T")

layers_app = typer.Typer(no_args_is_help=True, help='The legal layers ("3+X") of the one map.')
jurisdictions_app = typer.Typer(no_args_is_help=True, help="Administrative areas of the one map.")

FILE_HELP = "GeoJSON, GeoPackage or Shapefile (.shp) of polygons, in any CRS the file declares."
VALID_FROM_HELP = "When this version takes effect: ISO date or time, UTC if no offset; default now."
SOURCE_LAYER_HELP = "Layer to read, for a GeoPackage holding several layers with geometry."
PARENT_HELP = "Field with the parent area's code; a file without the default field has no parents."


def register(app: typer.Typer) -> None:
    app.add_typer(layers_app, name="layers")
    app.add_typer(jurisdictions_app, name="jurisdictions")


@layers_app.command("import")
def layers_import(
    file: Annotated[Path, typer.Argument(help=FILE_HELP)],
    kind: Annotated[LayerKind, typer.Option(help="Which layer this file is.")],
    version: Annotated[str, typer.Option(help="Version label of this edition, e.g. 2023.")],
    valid_from: Annotated[str | None, typer.Option(help=VALID_FROM_HELP)] = None,
    name: Annotated[str | None, typer.Option(help="Display name of the layer.")] = None,
    source_layer: Annotated[str | None, typer.Option(help=SOURCE_LAYER_HELP)] = None,
) -> None:
    """Import a layer file as a new version; the previous version ends where this one starts."""
    settings = Settings()
    start = _parse_time(valid_from) if valid_from else None
    result = run_in_transaction(
        settings,
        lambda session: import_layer(
            file,
            session=session,
            settings=settings,
            kind=kind,
            version=version,
            valid_from=start,
            name=name,
            source_layer=source_layer,
        ),
    )
    typer.echo(result.summary())


@jurisdictions_app.command("import")
def jurisdictions_import(
    file: Annotated[Path, typer.Argument(help=FILE_HELP)],
    level: Annotated[JurisdictionLevel, typer.Option(help="Administrative level of every area.")],
    code_field: Annotated[str, typer.Option(help="Field holding the area's code.")] = "code",
    name_field: Annotated[str, typer.Option(help="Field holding the area's name.")] = "name",
    parent_field: Annotated[str, typer.Option(help=PARENT_HELP)] = DEFAULT_PARENT_FIELD,
    source_layer: Annotated[str | None, typer.Option(help=SOURCE_LAYER_HELP)] = None,
) -> None:
    """Create or update administrative areas by code, linked to already imported parents."""
    settings = Settings()
    result = run_in_transaction(
        settings,
        lambda session: import_jurisdictions(
            file,
            session=session,
            settings=settings,
            level=level,
            code_field=code_field,
            name_field=name_field,
            parent_field=parent_field or None,
            source_layer=source_layer,
        ),
    )
    typer.echo(result.summary())


def _parse_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as error:
        raise typer.BadParameter(
            f"{text!r} is not an ISO date or time; use e.g. 2023-01-01", param_hint="--valid-from"
        ) from error
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def run_in_transaction(settings: Settings, work: Callable[[Session], T]) -> T:
    """Run `work` in one transaction; a refused import prints why and exits non-zero."""
    engine = create_db_engine(
        settings.database_url, busy_timeout_ms=settings.sqlite_busy_timeout_ms
    )
    try:
        current, head = migration_state(engine)
        if current != head:
            _fail(
                f"the database is at revision {current}, not {head}; run `tianxun db upgrade` first"
            )
        with transaction(machine_session_factory(engine)) as session:
            return work(session)
    except TianxunError as error:
        _fail(str(error))
    finally:
        engine.dispose()


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=1)
