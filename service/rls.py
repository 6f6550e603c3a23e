"""Row-level security on PostgreSQL: jurisdiction scoping that fails closed if a filter is missed.

Every query of the case API already filters by the caller's jurisdictions. These policies are
the second wall: with `FORCE ROW LEVEL SECURITY`, a row is visible only when its jurisdiction
is listed in the transaction's `app.jurisdictions` setting (or the setting is `*`). A session
that sets nothing sees nothing. Superusers and roles with BYPASSRLS ignore policies, so the
service must connect as an ordinary role for this to hold.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from service.auth import Principal

SETTING = "app.jurisdictions"
EVERYTHING = "*"
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


def scope_value(principal: Principal | None) -> str:
    """The setting for a caller: `*` for administrators and machine jobs (None), else ids."""
    if principal is None or principal.sees_everything:
        return EVERYTHING
    return ",".join(str(i) for i in sorted(principal.jurisdiction_ids))


def apply_scope(session: Session, principal: Principal | None) -> None:
    """`SET LOCAL app.jurisdictions` for the session's transaction; nothing on SQLite.

    `set_config(..., true)` is SET LOCAL with a bound parameter: the value ends with the
    transaction, so a pooled connection never carries one caller's scope into another's.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    session.execute(
        text("SELECT set_config(:name, :value, true)"),
        {"name": SETTING, "value": scope_value(principal)},
    )
