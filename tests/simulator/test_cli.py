"""`tianxun simulate` writes a world and reports what it wrote."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from scripts.cli import app


def test_simulate_command_writes_a_world(tmp_path: Path) -> None:
    out = tmp_path / "world"
    args = ["simulate", "--out", str(out), "--seed", "2", "--area-km2", "0.25", "--epochs", "2"]
    args += ["--cameras", "1", "--snapshots", "1", "--workers", "1"]

    result = CliRunner().invoke(app, args)

    assert result.exit_code == 0, result.output
    assert "2 tiles" in result.output
    world = json.loads((out / "world.json").read_text())
    assert world["seed"] == 2 and len(world["epochs"]) == 2
    assert (out / world["epochs"][1]["tile"]).exists()


def test_simulate_refuses_bad_values_with_a_message(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["simulate", "--out", str(tmp_path / "w"), "--epochs", "1"])

    assert result.exit_code == 2
    assert "epochs must be between" in result.output


def test_simulate_refuses_epochs_dated_in_the_future(tmp_path: Path) -> None:
    args = ["simulate", "--out", str(tmp_path / "w"), "--year", "2100", "--years", "2"]

    result = CliRunner().invoke(app, args)

    assert result.exit_code == 2
    assert "not in the past" in result.output and "earlier --year" in result.output
    assert not (tmp_path / "w").exists()
