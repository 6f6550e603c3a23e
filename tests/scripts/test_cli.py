"""The `tianxun` entry point: sub-commands built from their modules only when asked for."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pytest
from typer.testing import CliRunner

from scripts.cli import LAZY_COMMANDS, _registered, app


def test_each_lazy_command_is_what_its_modules_register_and_none_is_left_out() -> None:
    for name, modules in LAZY_COMMANDS.items():
        assert name in _registered(modules), f"{modules} register no {name!r}"
    registered = {name for modules in set(LAZY_COMMANDS.values()) for name in _registered(modules)}
    assert registered == set(LAZY_COMMANDS)


@pytest.mark.parametrize(
    ("command", "own", "foreign"),
    [
        (
            "detect",
            "scripts.detect",
            ("scripts.worker", "scripts.backfill", "scripts.simulate", "distributed", "sklearn"),
        ),
        # A worker reads no vector files: GDAL's vector reader and pandas stay out.
        ("worker", "scripts.worker", ("scripts.detect", "distributed", "pyogrio", "pandas")),
    ],
)
def test_a_command_imports_only_its_own_modules(
    command: str, own: str, foreign: tuple[str, ...]
) -> None:
    # A fresh interpreter: this test process has imported everything already.
    script = textwrap.dedent(
        f"""
        import sys
        from typer.testing import CliRunner
        from scripts.cli import app
        result = CliRunner().invoke(app, [{command!r}, "--help"])
        assert result.exit_code == 0, result.output
        assert {own!r} in sys.modules
        print(sorted(m for m in {foreign!r} if m in sys.modules))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


def test_help_lists_every_command_and_a_typo_is_answered_with_the_lazy_ones() -> None:
    listed = CliRunner().invoke(app, ["--help"], terminal_width=100)
    assert listed.exit_code == 0
    # Each command opens a row of the commands panel: "│ name   help…".
    rows = set(re.findall(r"^│ ([a-z][a-z-]*) ", listed.output, flags=re.MULTILINE))
    assert rows == {*LAZY_COMMANDS, "serve", "db"}

    typo = CliRunner().invoke(app, ["detec"])
    assert typo.exit_code == 2
    assert "Did you mean 'detect'" in typo.output
