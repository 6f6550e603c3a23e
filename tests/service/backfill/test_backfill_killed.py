"""A backfill process killed outright (SIGKILL, its Dask workers with it) halfway through,
then started again with the same arguments, ends with the uninterrupted run's results."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from models import BackfillUnit
from models.backfill import BackfillUnitStatus
from tests.service.backfill.conftest import Loaded, World

WAIT_S = 300.0  # for the first unit, or the whole rerun, on a loaded machine
PROGRESS = r"\d+/\d+ units, [\d.]+ tiles/s, [\d.]+ Mpx/s, ETA \d+ s"


def _command(world: World) -> list[str]:
    """The arguments of `request_for(world)`, as an analyst gives them."""
    return [
        sys.executable,
        "-m",
        "scripts.backfill",
        "--area",
        str(world.area),
        "--since",
        "2025-01-01",
        "--until",
        "2025-12-31",
        "--source",
        str(world.products),
        "--workers",
        "1",
    ]


def _statuses(loaded: Loaded) -> list[BackfillUnitStatus]:
    with Session(loaded.engine) as session:
        return list(session.scalars(select(BackfillUnit.status)))


def _kill_after_first_unit(process: subprocess.Popen[bytes], loaded: Loaded) -> None:
    """SIGKILL the backfill's whole process group once one unit is written and others wait."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline and process.poll() is None:
        statuses = _statuses(loaded)
        if BackfillUnitStatus.done in statuses and BackfillUnitStatus.pending in statuses:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return
        time.sleep(0.05)
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    raise AssertionError("the backfill wrote no unit before the deadline, or finished first")


@pytest.mark.slow
def test_a_backfill_killed_halfway_and_run_again_ends_with_the_uninterrupted_result(
    world: World, tmp_path: Path, uninterrupted: dict
) -> None:
    loaded = Loaded.fresh(world, tmp_path, "killed")
    env = {**os.environ, **loaded.cli_env}
    started = subprocess.Popen(
        _command(world),
        env=env,
        start_new_session=True,  # its own process group: the kill takes its Dask workers too
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    _kill_after_first_unit(started, loaded)
    left = _statuses(loaded)
    assert left.count(BackfillUnitStatus.pending) >= 1  # killed with work left, not after it

    again = subprocess.run(_command(world), env=env, capture_output=True, timeout=WAIT_S)
    assert again.returncode == 0, again.stderr.decode()[-2000:]
    lines = again.stdout.decode().splitlines()
    assert f"{len(left)} work units, {left.count(BackfillUnitStatus.pending)} to do" in lines[0]
    # Not on a terminal: plain progress lines, the last when all is done, then the summary.
    progress = [line for line in lines if re.fullmatch(PROGRESS, line)]
    assert progress and progress[-1].startswith(f"{left.count(BackfillUnitStatus.pending)}/")
    assert any(
        re.match(r"run \d+ done: \d+ units done, 0 failed, 0 pending; cases ", x) for x in lines
    )
    assert set(_statuses(loaded)) == {BackfillUnitStatus.done}
    assert len(_statuses(loaded)) == len(left)  # the run continued: no second plan
    assert loaded.outcome() == uninterrupted
    loaded.engine.dispose()
