"""The OpenAPI document tells the truth about errors: RFC 9457 problem details everywhere.

FastAPI documents its own validation errors as `application/json` and knows nothing of the
exception handlers in `service.errors`. Once FastAPI has built the document, every operation
gets its 4xx/5xx answers as `application/problem+json` with one shared schema, 400 when it
takes a body (one that does not parse), and 401 when it needs an API key.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from service.errors import PROBLEM_JSON

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details; on a 422, `errors` lists each invalid field.",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["location", "message"],
                "properties": {
                    "location": {"type": "array", "items": {"type": ["string", "integer"]}},
                    "message": {"type": "string"},
                    "type": {"type": ["string", "null"]},
                },
            },
        },
    },
}
PROBLEM_CONTENT = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
BAD_BODY = {"description": "The body cannot be parsed (e.g. JSON that is not well-formed)."}
NO_KEY = {"description": "No API key, or not a valid one."}


def install_openapi(app: FastAPI) -> None:
    """Make `app.openapi()` (and so /openapi.json) return the completed document."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            complete_document(build())
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def complete_document(document: dict[str, Any]) -> None:
    """Declare problem details, 400 and 401 on every operation, in place."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    for item in document.get("paths", {}).values():
        for operation in item.values():
            declare_problems(operation)
    # FastAPI's own error models are no longer referenced by any operation.
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)


def declare_problems(operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    if "requestBody" in operation:
        responses.setdefault("400", dict(BAD_BODY))
    if operation.get("security"):  # set by FastAPI from the key dependency in service.auth
        responses.setdefault("401", dict(NO_KEY))
    for status, response in responses.items():
        if status[0] in "45":
            response["content"] = PROBLEM_CONTENT
