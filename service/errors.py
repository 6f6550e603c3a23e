"""Domain errors and their one mapping to HTTP, rendered as RFC 9457 problem details."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from detection.errors import DetectionError

PROBLEM_JSON = "application/problem+json"


class TianxunError(Exception):
    """Base class of the service's domain errors; the message is shown to the caller."""


class InvalidInputError(TianxunError):
    """Input that is well-formed HTTP but makes no sense for the domain."""


class NotFoundError(TianxunError):
    pass


class ConflictError(TianxunError):
    pass


class InvalidTransitionError(ConflictError):
    pass


class PreconditionFailedError(TianxunError):
    """`If-Match` names a version that is no longer current."""


class PreconditionRequiredError(TianxunError):
    """A change was sent without `If-Match`."""


class AuthenticationError(TianxunError):
    pass


class PermissionDeniedError(TianxunError):
    pass


class PayloadTooLargeError(TianxunError):
    pass


class UnsupportedMediaTypeError(TianxunError):
    pass


class NotReadyError(TianxunError):
    """The service cannot serve yet (database unreachable or not migrated)."""


# Most specific first: the first matching class decides the status.
STATUS_BY_ERROR: tuple[tuple[type[Exception], int], ...] = (
    (InvalidTransitionError, 409),
    (ConflictError, 409),
    (NotFoundError, 404),
    (PreconditionFailedError, 412),
    (PreconditionRequiredError, 428),
    (AuthenticationError, 401),
    (PermissionDeniedError, 403),
    (PayloadTooLargeError, 413),
    (UnsupportedMediaTypeError, 415),
    (NotReadyError, 503),
    (InvalidInputError, 422),
    (DetectionError, 422),
)


def status_for(error: Exception) -> int:
    for error_class, status in STATUS_BY_ERROR:
        if isinstance(error, error_class):
            return status
    return 500


def problem(status: int, detail: str, *, title: str | None = None, **extra: Any) -> JSONResponse:
    body = {
        "type": "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        **extra,
    }
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def register_error_handlers(app: FastAPI) -> None:
    async def on_domain_error(request: Request, error: Exception) -> JSONResponse:
        return problem(status_for(error), str(error), title=type(error).__name__)

    async def on_validation_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        errors = [
            {"location": list(e.get("loc", ())), "message": e.get("msg", ""), "type": e.get("type")}
            for e in error.errors()
        ]
        summary = "; ".join(f"{'.'.join(map(str, e['location']))}: {e['message']}" for e in errors)
        return problem(422, summary or "request is not valid", errors=errors)

    async def on_http_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)
        return problem(error.status_code, str(error.detail))

    async def on_database_unavailable(request: Request, error: Exception) -> JSONResponse:
        # Busy (SQLite's lock) or unreachable (PostgreSQL restarting): nothing was stored, and
        # the same request can simply be sent again.
        response = problem(503, "the database is busy or unreachable: retry in a moment")
        response.headers["Retry-After"] = "1"
        return response

    async def on_unstorable_value(request: Request, error: Exception) -> JSONResponse:
        # The database refused a value the request carried (SQLSTATE class 22: a NUL
        # character in text, a number beyond BIGINT): the request, not the service, is at fault.
        assert isinstance(error, DataError)
        reason = str(error.orig).splitlines()[0] if error.orig else "a value is out of range"
        return problem(
            422,
            f"a value in the request cannot be used: {reason}; remove control characters "
            "and keep numbers within range",
        )

    app.add_exception_handler(TianxunError, on_domain_error)
    app.add_exception_handler(OperationalError, on_database_unavailable)
    app.add_exception_handler(DataError, on_unstorable_value)
    app.add_exception_handler(DetectionError, on_domain_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
