"""The house's import rules: detection is pure; nothing imports scripts or tests."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = {"service", "detection", "models", "scripts", "tests", "simulator"}
FORBIDDEN = {
    "detection": OURS - {"detection"} | {"fastapi", "sqlalchemy", "starlette", "alembic"},
    "models": {"service", "scripts", "tests", "fastapi", "detection"},
    "service": {"scripts", "tests"},
    "scripts": {"tests"},
    "simulator": {"service", "models", "scripts", "tests"},
}


def imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_what_it_may(package: str) -> None:
    offences = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for name in sorted(imported_top_levels(path) & FORBIDDEN[package])
    ]
    assert offences == []


def test_detection_reads_no_environment() -> None:
    readers = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "detection").rglob("*.py")
        if "os.environ" in path.read_text() or "getenv" in path.read_text()
    ]
    assert readers == []


def test_the_rule_checker_sees_imports(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import service.db\nfrom sqlalchemy import select\nfrom . import sibling\n")
    assert imported_top_levels(sample) == {"service", "sqlalchemy"}
