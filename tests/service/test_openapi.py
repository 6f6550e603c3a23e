"""The OpenAPI document declares every error as RFC 9457 problem details, and the API key."""

from __future__ import annotations

from typing import Any

import pytest

from service.main import create_app
from service.settings import Settings


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    where = tmp_path_factory.mktemp("openapi")  # never touched: the document needs no database
    settings = Settings(database_url=f"sqlite:///{where / 'x.db'}", data_dir=where, _env_file=None)  # type: ignore[call-arg]
    return create_app(settings).openapi()


def operations(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{method.upper()} {path}", operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


def test_every_error_answer_is_declared_as_problem_details(document: dict[str, Any]) -> None:
    problem = {"$ref": "#/components/schemas/Problem"}
    for name, operation in operations(document):
        for status, response in operation["responses"].items():
            if status[0] in "45":
                assert response["content"] == {"application/problem+json": {"schema": problem}}, (
                    f"{name} {status}"
                )
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_operations_that_need_a_key_say_so_and_may_answer_401(document: dict[str, Any]) -> None:
    secured = [(n, op) for n, op in operations(document) if op.get("security")]
    assert {n for n, _ in secured} >= {"GET /v1/cases", "POST /v1/cases/{case_id}/transitions"}
    assert all("401" in op["responses"] for _, op in secured)
    open_names = {n for n, op in operations(document) if not op.get("security")}
    assert open_names >= {"GET /healthz", "GET /readyz"}
    assert set(document["components"]["securitySchemes"]) == {"bearer", "apiKey"}


def test_operations_with_a_body_may_answer_400(document: dict[str, Any]) -> None:
    with_body = [op for _, op in operations(document) if "requestBody" in op]
    assert with_body
    assert all("400" in op["responses"] for op in with_body)
