"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from service.db import migration_state
from service.errors import NotReadyError

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is up")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="The database is reachable and migrated to head")
def readyz(request: Request) -> dict[str, str | None]:
    engine = request.app.state.engine
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        current, head = migration_state(engine)
    except SQLAlchemyError as error:
        raise NotReadyError(f"database unreachable: {type(error).__name__}") from error
    if current != head:
        raise NotReadyError(
            f"database is at migration {current!r}, code expects {head!r}: run `tianxun db upgrade`"
        )
    return {"status": "ready", "migration": current}
