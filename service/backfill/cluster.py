"""The Dask client of a backfill: an existing cluster by address, or a LocalCluster here."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"


@contextmanager
def dask_client(scheduler: str | None = None, *, workers: int = 2) -> Iterator[Any]:
    """A client of `scheduler` (or of $DASK_SCHEDULER_ADDRESS), else of a LocalCluster with
    `workers` single-threaded processes; the detector holds the GIL in places, so processes
    rather than threads scale it. Closed (and a local cluster stopped) on exit."""
    from dask.distributed import Client, LocalCluster

    address = scheduler or os.environ.get(SCHEDULER_ENV)
    if address:
        with Client(address) as client:
            yield client
        return
    with (
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client
