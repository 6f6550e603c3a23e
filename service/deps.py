"""Request-scoped dependencies: the settings and one database transaction per request."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from service.db import SQLITE_IMMEDIATE
from service.settings import Settings

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def get_app_settings(request: Request) -> Settings:
    # Asynchronous because it only reads: a synchronous dependency costs a thread-pool hop.
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    """The request's transaction: committed once the endpoint returns, rolled back if it raises.

    A request that may write takes SQLite's write lock as its transaction begins, so that it
    waits for a busy database instead of failing when it upgrades from reading to writing.
    """
    factory = request.app.state.session_factory
    with factory() as session, session.begin():
        if request.method not in SAFE_METHODS:
            session.connection(execution_options=SQLITE_IMMEDIATE)
        yield session


SessionDep = Annotated[Session, Depends(get_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
