"""`tianxun clients ...` (API keys), `tianxun audit verify` (the case history hash chain) and
`tianxun cases escalate-overdue` (deadlines per state)."""

from __future__ import annotations

from typing import Annotated

import typer
from sqlalchemy import select

from models import Case
from models.client import Role
from service.cases.events import verify_chain
from service.cases.transitions import escalate_overdue
from service.clients import IssuedKey, create_client, deactivate_client, rotate_key
from service.db import create_db_engine, machine_session_factory, transaction
from service.errors import TianxunError
from service.settings import Settings

clients_app = typer.Typer(no_args_is_help=True, help="API clients and their keys.")
audit_app = typer.Typer(no_args_is_help=True, help="Check the append-only case history.")
cases_app = typer.Typer(no_args_is_help=True, help="Case housekeeping jobs.")
KEY_NOTE = "Store this key now: it is shown once and only its hash is kept."


def register(app: typer.Typer) -> None:
    app.add_typer(clients_app, name="clients")
    app.add_typer(audit_app, name="audit")
    app.add_typer(cases_app, name="cases")


def _factory():  # type: ignore[no-untyped-def]
    settings = Settings()
    return machine_session_factory(
        create_db_engine(settings.database_url, busy_timeout_ms=settings.sqlite_busy_timeout_ms)
    )


def _show_key(issued: IssuedKey) -> None:
    typer.echo(f"client {issued.name} (role {issued.role}, key prefix {issued.prefix})")
    typer.echo(issued.key)
    typer.echo(KEY_NOTE, err=True)


@clients_app.command("create")
def clients_create(
    name: Annotated[str, typer.Argument(help="Unique client name, e.g. xihu-inspector-7.")],
    role: Annotated[Role, typer.Option(help="What the client may do.")],
    jurisdiction: Annotated[
        list[str] | None,
        typer.Option(help="Jurisdiction code (repeat); sub-areas are included."),
    ] = None,
) -> None:
    """Create a client and print its API key once."""
    try:
        with transaction(_factory()) as session:
            issued = create_client(
                name, session=session, role=role, jurisdiction_codes=jurisdiction or []
            )
    except TianxunError as error:
        raise typer.BadParameter(str(error)) from error
    _show_key(issued)


@clients_app.command("rotate")
def clients_rotate(name: Annotated[str, typer.Argument(help="The client's name.")]) -> None:
    """Issue a new key; the old one stops working at once."""
    try:
        with transaction(_factory()) as session:
            issued = rotate_key(name, session=session)
    except TianxunError as error:
        raise typer.BadParameter(str(error)) from error
    _show_key(issued)


@clients_app.command("deactivate")
def clients_deactivate(name: Annotated[str, typer.Argument(help="The client's name.")]) -> None:
    """Stop a client's key from working (rotate to bring it back)."""
    try:
        with transaction(_factory()) as session:
            deactivate_client(name, session=session)
    except TianxunError as error:
        raise typer.BadParameter(str(error)) from error
    typer.echo(f"client {name} deactivated")


@audit_app.command("verify")
def audit_verify(
    case: Annotated[int | None, typer.Option("--case", help="Check only this case id.")] = None,
) -> None:
    """Re-hash every case's history; exit 1 and name each case whose events were edited or
    removed."""
    broken = 0
    with transaction(_factory()) as session:
        ids = (
            [case] if case is not None else list(session.scalars(select(Case.id).order_by(Case.id)))
        )
        for case_id in ids:
            report = verify_chain(session, case_id)
            if not report.ok:
                broken += 1
                typer.echo(
                    f"case {case_id}: BROKEN at event seq {report.broken_seq}: {report.reason}"
                )
    typer.echo(f"checked {len(ids)} case histories: {broken} broken")
    if broken:
        raise typer.Exit(1)


@cases_app.command("escalate-overdue")
def cases_escalate_overdue() -> None:
    """Escalate open cases past their state's deadline (run it every few minutes)."""
    with transaction(_factory()) as session:
        escalated = escalate_overdue(session=session)
    typer.echo(f"escalated {len(escalated)} overdue case(s): {', '.join(map(str, escalated))}")
