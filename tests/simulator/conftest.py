"""A tiny generated world shared by the simulator tests (a few seconds to build)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulator import generate_world
from tests.simulator.worlds import TINY


@pytest.fixture(scope="session")
def tiny_world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim") / "world"
    generate_world(TINY, out, workers=1)
    return out


@pytest.fixture(scope="session")
def tiny_world_json(tiny_world_dir: Path) -> dict:
    return json.loads((tiny_world_dir / "world.json").read_text())
