"""The `tianxun` command: thin wrappers over the functions the service uses."""

from __future__ import annotations

import typer

from alembic import command
from service.db import alembic_config
from service.settings import Settings

app = typer.Typer(no_args_is_help=True, help="Tianxun farmland-protection change detection.")
db_app = typer.Typer(no_args_is_help=True, help="The one-map database.")
app.add_typer(db_app, name="db")


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="TCP port."),
    workers: int = typer.Option(1, help="uvicorn worker processes."),
) -> None:
    """Run the HTTP API."""
    import uvicorn

    uvicorn.run("service.main:create_app", factory=True, host=host, port=port, workers=workers)


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Create or migrate the schema (the only way the schema is made)."""
    command.upgrade(alembic_config(Settings().database_url), revision)


@db_app.command("check")
def db_check() -> None:
    """Fail if the models and the migrations disagree."""
    command.check(alembic_config(Settings().database_url))


# Sub-commands from other modules register below, one line each.


if __name__ == "__main__":
    app()
