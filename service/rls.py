"""Row-level security on PostgreSQL: jurisdiction scoping that fails closed if a filter is missed.

Every query of the case API already filters by the caller's jurisdictions. These policies are
the second wall: with `FORCE ROW LEVEL SECURITY`, a row is visible only when its jurisdiction
is listed in the transaction's `app.jurisdictions` setting (or the setting is `*`). A session
that sets nothing sees nothing. Superusers and roles with BYPASSRLS ignore policies, so the
service must connect as an ordinary role for this to hold.

The scope travels with the session (`session.info`), not with a connection: every transaction
the session begins sets it again (`set_scope_on_begin`, installed by
`service.db.create_session_factory`), so a commit in the middle of a job cannot drop it and a
pooled connection never carries one caller's scope into another's. Requests scope their
session to the caller (`apply_scope`); workers, feeds and commands use a factory made with
`EVERYTHING`; anything else gets `NOTHING`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session, SessionTransaction

if TYPE_CHECKING:
    from service.auth import Principal

SETTING = "app.jurisdictions"
EVERYTHING = "*"  # machine jobs and administrators
NOTHING = ""  # the default: a forgotten scope shows no rows
# Tables carrying `jurisdiction_id` directly, and tables that reach it through their case.
DIRECT_TABLES = ("case", "alert_event")
THROUGH_CASE_TABLES = ("case_event", "evidence")

_SETTING_VALUE = f"current_setting('{SETTING}', true)"
# NULLIF keeps '*' and '' away from the bigint cast, which PostgreSQL may evaluate first.
_VISIBLE = (
    f"({_SETTING_VALUE} = '{EVERYTHING}' OR {{column}} = ANY (string_to_array("
    f"NULLIF(NULLIF({_SETTING_VALUE}, ''), '{EVERYTHING}'), ',')::bigint[]))"
)


def policy_statements() -> list[str]:
    """DDL that turns the policies on; a migration runs these with `op.execute` in order."""
    statements: list[str] = []
    for table in DIRECT_TABLES:
        visible = _VISIBLE.format(column=f'"{table}".jurisdiction_id')
        statements += _enable(table, visible)
    for table in THROUGH_CASE_TABLES:
        # Policies apply inside subqueries too, so the case policy decides these rows.
        visible = f'EXISTS (SELECT 1 FROM "case" WHERE "case".id = "{table}".case_id)'
        statements += _enable(table, visible)
    return statements


def drop_policy_statements() -> list[str]:
    """DDL that undoes `policy_statements` (a migration's downgrade)."""
    statements: list[str] = []
    for table in (*DIRECT_TABLES, *THROUGH_CASE_TABLES):
        statements += [
            f'DROP POLICY IF EXISTS jurisdiction_scope ON "{table}"',
            f'ALTER TABLE "{table}" NO FORCE ROW LEVEL SECURITY',
            f'ALTER TABLE "{table}" DISABLE ROW LEVEL SECURITY',
        ]
    return statements


def _enable(table: str, visible: str) -> list[str]:
    return [
        f'ALTER TABLE "{table}" ENABLE ROW LEVEL SECURITY',
        f'ALTER TABLE "{table}" FORCE ROW LEVEL SECURITY',
        f'CREATE POLICY jurisdiction_scope ON "{table}" USING ({visible}) WITH CHECK ({visible})',
    ]


def scope_value(principal: Principal) -> str:
    """The setting for a caller: `*` for administrators, else their jurisdiction ids."""
    if principal.sees_everything:
        return EVERYTHING
    return ",".join(str(i) for i in sorted(principal.jurisdiction_ids))


def apply_scope(session: Session, principal: Principal) -> None:
    """Let `session` see what `principal` may see, from now until the session closes."""
    set_scope(session, scope_value(principal))


def apply_machine_scope(session: Session) -> None:
    """Let `session` see every row: for jobs that act for no caller (feeds, delivery)."""
    set_scope(session, EVERYTHING)


def set_scope(session: Session, value: str) -> None:
    """Attach `value` to the session; applied now if a transaction is open, and at each begin.

    Nothing runs on SQLite, which has no row-level security.
    """
    session.info[SETTING] = value
    if session.in_transaction() and session.get_bind().dialect.name == "postgresql":
        # An open transaction does not begin again, so it takes the new value here.
        _set_config(session.connection(), value)


def set_scope_on_begin(
    session: Session, _transaction: SessionTransaction, connection: Connection
) -> None:
    """`after_begin` listener: the session's scope (NOTHING if none) for its new transaction."""
    if connection.dialect.name == "postgresql":
        _set_config(connection, session.info.get(SETTING, NOTHING))


# set_config(..., true) is SET LOCAL with a bound parameter: the value ends with the
# transaction. Built once: every request's transaction runs it.
_SET_CONFIG = text("SELECT set_config(:name, :value, true)")


def _set_config(connection: Connection, value: str) -> None:
    connection.execute(_SET_CONFIG, {"name": SETTING, "value": value})
