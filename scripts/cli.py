"""The `tianxun` command: thin wrappers over the functions the service uses."""

from __future__ import annotations

import typer
from alembic import command

from scripts.backfill import register as register_backfill
from scripts.camera_detect import register as register_camera_detect
from scripts.camera_eval import register as register_camera_eval
from scripts.clients import register as register_clients
from scripts.demo import register as register_demo
from scripts.detect import register as register_detect
from scripts.evaluate import register as register_evaluate
from scripts.ingest import register as register_ingest
from scripts.layers import register as register_layers
from scripts.load_world import register as register_world
from scripts.simulate import register as register_simulate
from scripts.worker import register as register_worker
from service.alerts.delivery import register as register_webhooks
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

    uvicorn.run(
        "service.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        # Each worker imports the scientific stack before it answers; the 5 s default
        # health check kills slow starters on a loaded machine.
        timeout_worker_healthcheck=60,
    )


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Create or migrate the schema (the only way the schema is made)."""
    command.upgrade(alembic_config(Settings().database_url), revision)


@db_app.command("check")
def db_check() -> None:
    """Fail if the models and the migrations disagree."""
    command.check(alembic_config(Settings().database_url))


# Sub-commands from other modules register below, one line each.
register_camera_detect(app)
register_clients(app)
register_layers(app)
register_ingest(app)
register_worker(app)
register_evaluate(app)
register_camera_eval(app)
register_simulate(app)
register_detect(app)
register_webhooks(app)
register_world(app)
register_demo(app)
register_backfill(app)


if __name__ == "__main__":
    app()
