"""A Dask worker plugin that kills its worker mid-unit, for the killed-worker test.

Its own module, importing only the standard library and distributed: workers import it to
install the plugin, and need nothing of the test suite for that.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

from distributed import WorkerPlugin


class KillOnUnitStart(WorkerPlugin):
    """A Dask worker plugin that kills its own process (SIGKILL, as the kernel's OOM killer
    would) the moment it starts computing the `nth` backfill unit to start anywhere in the
    cluster; once per cluster, whatever the load.

    The kill is decided inside the worker when a unit begins, not from the test process at
    some time after a unit was written: under load the remaining units may all be finished
    by then (so the kill tests nothing), or the worker's event loop may be too slow to answer
    a `client.run` within the connect timeout. The folder shared by the worker processes
    records which units started and who was killed.
    """

    name = "kill-on-unit-start"

    def __init__(self, folder: Path, nth: int = 2) -> None:
        self.folder = str(folder)
        self.nth = nth

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        if finish != "executing" or "-unit-" not in str(key):
            return
        started = Path(self.folder) / "started"
        started.mkdir(parents=True, exist_ok=True)
        (started / str(key)).touch()  # a unit computed again after the kill counts once
        if len(list(started.iterdir())) < self.nth:
            return
        try:
            marker = os.open(Path(self.folder) / "killed", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(marker, json.dumps({"pid": os.getpid(), "key": str(key)}).encode())
        os.close(marker)
        os.kill(os.getpid(), signal.SIGKILL)
