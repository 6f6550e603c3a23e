"""The `tianxun` command: thin wrappers over the functions the service uses."""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any

import typer
from alembic import command
from typer.core import TyperGroup

from service.db import alembic_config
from service.settings import Settings

#: Sub-commands defined in other modules, by the modules whose `register(app)` adds them.
#: Each is imported only when one of its commands runs or help lists them: every module
#: brings its own part of the scientific stack. All of them cost a process ~500 MB resident
#: and ~3.8 s of CPU before any work, `tianxun detect` alone ~315 MB and ~1.9 s (its memory
#: target at 20000² is 2 GB; benchmarks/RESULTS.md).
LAZY_COMMANDS: dict[str, tuple[str, ...]] = {
    "audit": ("scripts.clients",),
    "backfill": ("scripts.backfill",),
    "camera-detect": ("scripts.camera_detect",),
    "cases": ("scripts.clients",),
    "clients": ("scripts.clients",),
    "demo": ("scripts.demo",),
    "detect": ("scripts.detect",),
    "detector": ("scripts.detect",),
    # `tianxun evaluate cameras` joins the evaluate group from its own module.
    "evaluate": ("scripts.evaluate", "scripts.camera_eval"),
    "ingest": ("scripts.ingest",),
    "jurisdictions": ("scripts.layers",),
    "layers": ("scripts.layers",),
    "simulate": ("scripts.simulate",),
    "trace": ("scripts.backfill",),
    "webhooks": ("service.alerts.delivery",),
    "worker": ("scripts.worker",),
    "world": ("scripts.load_world",),
}


class LazyCommands(TyperGroup):
    """The top-level group: commands of `LAZY_COMMANDS` are built when first asked for."""

    # The context and command types are Typer's own (its vendored Click in recent releases).
    def list_commands(self, ctx: Any) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in self.commands and cmd_name in LAZY_COMMANDS:
            for name, built in _registered(LAZY_COMMANDS[cmd_name]).items():
                self.commands.setdefault(name, built)
        return super().get_command(ctx, cmd_name)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and self.get_command(ctx, args[0]) is None:
            # An unknown name: build every command, so that Typer's "Did you mean" sees them.
            for name in LAZY_COMMANDS:
                self.get_command(ctx, name)
        return super().resolve_command(ctx, args)


@cache
def _registered(modules: tuple[str, ...]) -> dict[str, Any]:
    """The commands `modules` register, built once a process: Typer builds a new group on
    every call of `app`, and a module's `register` may add to a group it shares."""
    holder = typer.Typer()
    holder.callback()(lambda: None)  # a group even when the modules add one command
    for module in modules:
        importlib.import_module(module).register(holder)
    return dict(typer.main.get_group(holder).commands)


app = typer.Typer(
    cls=LazyCommands, no_args_is_help=True, help="Tianxun farmland-protection change detection."
)
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


if __name__ == "__main__":
    app()
