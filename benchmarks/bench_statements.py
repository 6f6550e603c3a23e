"""CPU of one small statement on PostgreSQL through each layer the API could send it through.

Run from the repository root, against a database `bench_api` has loaded:

    .venv/bin/python -m benchmarks.bench_statements --count 5000

The statement is the case transition's kind of write (an UPDATE of one case by id), sent
`--count` times inside one transaction that is rolled back: through the ORM session, a Core
connection, `exec_driver_sql`, a psycopg cursor and a psycopg pipeline. The figure is this
process's CPU per statement (`time.process_time`), which the database's own work does not
enter; then the CPU of a whole empty session transaction (begin, one SELECT, commit).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated

import typer
from sqlalchemy import bindparam, text, update

from benchmarks.bench_api import DEFAULT_POSTGRES_URL
from models import Case
from models.base import table_of
from service.db import create_db_engine, create_session_factory

app = typer.Typer(add_completion=False)
CASES = table_of(Case)
# Sets a column to itself: a real write of one row by primary key, changing nothing.
UPDATE = update(CASES).where(CASES.c.id == bindparam("i")).values(priority=CASES.c.priority)
DRIVER_SQL = 'UPDATE "case" SET priority = priority WHERE id = %(i)s'


def cpu_us_each(count: int, send: Callable[[int], object]) -> float:
    started = time.process_time()
    for i in range(1, count + 1):
        send(i)
    return (time.process_time() - started) * 1e6 / count


@app.command()
def main(
    count: Annotated[int, typer.Option(min=100, help="Statements per layer.")] = 5000,
    postgres_url: Annotated[str, typer.Option(help="A database bench_api loaded.")] = (
        DEFAULT_POSTGRES_URL
    ),
) -> None:
    """Print the CPU per statement of each layer, in µs."""
    engine = create_db_engine(postgres_url, pre_ping=False)
    factory = create_session_factory(engine)
    results: dict[str, float] = {}
    with factory() as session, session.begin():
        connection = session.connection()
        driver = connection.connection.driver_connection
        assert driver is not None
        cursor = driver.cursor()

        def pipelined(i: int) -> None:
            cursor.execute(DRIVER_SQL, {"i": i})

        results["ORM session.execute (Core UPDATE)"] = cpu_us_each(
            count, lambda i: session.execute(UPDATE, {"i": i})
        )
        results["Core connection.execute"] = cpu_us_each(
            count, lambda i: connection.execute(UPDATE, {"i": i})
        )
        results["connection.exec_driver_sql"] = cpu_us_each(
            count, lambda i: connection.exec_driver_sql(DRIVER_SQL, {"i": i})
        )
        results["psycopg cursor.execute"] = cpu_us_each(
            count, lambda i: cursor.execute(DRIVER_SQL, {"i": i})
        )
        with driver.pipeline():
            results["psycopg cursor.execute, pipelined"] = cpu_us_each(count, pipelined)
        session.rollback()

    def empty_transaction(_: int) -> None:
        with factory() as session, session.begin():
            session.execute(text("SELECT 1"))

    results["session transaction: begin, SELECT 1, commit"] = cpu_us_each(
        count // 5, empty_transaction
    )
    engine.dispose()
    print("| layer | CPU µs each |\n|---|---|")
    for layer, us in results.items():
        print(f"| {layer} | {us:.0f} |")


if __name__ == "__main__":
    app()
