"""`tianxun worker`: run ingest queue workers (and webhook delivery) until SIGTERM or SIGINT."""

from __future__ import annotations

from typing import Annotated

import typer

from service.settings import Settings
from service.worker import run_until_signalled


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)


def worker(
    concurrency: Annotated[
        int, typer.Option(min=1, max=64, help="Jobs run at once (threads in this process).")
    ] = 1,
    webhooks: Annotated[
        bool,
        typer.Option(
            "--webhooks/--no-webhooks",
            help="Also deliver alert events to webhook subscribers (as `tianxun webhooks "
            "deliver` does), so that no separate process is needed.",
        ),
    ] = True,
) -> None:
    """Claim and run ingest jobs; several workers may share one PostgreSQL database."""
    run_until_signalled(Settings(), concurrency=concurrency, deliver_webhooks=webhooks)
