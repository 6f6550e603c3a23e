"""The application factory: `uvicorn --factory service.main:create_app`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI

from service import health, metrics
from service.alerts import router as alerts
from service.auth import PrincipalCache
from service.cameras import router as cameras
from service.cases import evidence_router as evidence
from service.cases import router as cases
from service.cases import transitions_pg
from service.db import create_db_engine, create_session_factory
from service.errors import register_error_handlers
from service.ingest import router as ingest
from service.logging import RequestIdMiddleware, configure_logging
from service.openapi import install_openapi
from service.settings import Settings
from service.web import router as web

if TYPE_CHECKING:  # older FastAPI releases (0.121, say) have no such module and ignore the argument
    from fastapi.telemetry import TelemetryConfig

#: Driver connections each API process keeps for case transitions on PostgreSQL, beside the
#: engine's pool: one per transition in flight (they wait on the database, not on a thread).
TRANSITION_CONNECTIONS = 20


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging(level=settings.log_level, json=settings.log_json)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_db_engine(
            settings.database_url,
            busy_timeout_ms=settings.sqlite_busy_timeout_ms,
            pre_ping=False,  # a dropped connection costs one 503, not a round trip per request
        )
        app.state.engine = engine
        app.state.session_factory = create_session_factory(engine)
        app.state.transition_pool = None
        if engine.dialect.name == "postgresql":
            app.state.transition_pool = transitions_pg.connection_pool(
                settings.database_url, max_size=TRANSITION_CONNECTIONS
            )
            await app.state.transition_pool.open()
        try:
            yield
        finally:
            if app.state.transition_pool is not None:
                await app.state.transition_pool.close()
            engine.dispose()

    app = FastAPI(
        title="Tianxun",
        summary="Farmland-protection change detection: one map of suspected occupation cases",
        version="0.1.0",
        lifespan=lifespan,
        telemetry=_telemetry(settings),
    )
    app.state.settings = settings
    app.state.principal_cache = PrincipalCache(settings.auth_cache_seconds)
    app.add_middleware(RequestIdMiddleware)
    register_error_handlers(app)
    app.include_router(health.router)
    app.include_router(ingest.router)
    app.include_router(cameras.router)
    app.include_router(alerts.router)  # before cases: /v1/cases/{id}.cap
    app.include_router(cases.router)
    app.include_router(evidence.router)
    app.include_router(metrics.router)
    app.include_router(web.router)
    install_openapi(app)
    return app


def _telemetry(settings: Settings) -> TelemetryConfig:
    """FastAPI's native OpenTelemetry, on only when the settings ask for it."""
    enabled = settings.opentelemetry
    return {"tracing": enabled, "metrics": enabled, "logs": enabled}
