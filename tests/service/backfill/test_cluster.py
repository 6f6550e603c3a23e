"""A backfill runs on an existing Dask cluster given by address, on the command line or in
$DASK_SCHEDULER_ADDRESS, with no code change; without one it starts a LocalCluster."""

from __future__ import annotations

from typing import Any

import pytest

from service.backfill.cluster import SCHEDULER_ENV, dask_client


def _workers(client: Any) -> int:
    return len(client.scheduler_info()["workers"])


@pytest.mark.slow
@pytest.mark.parametrize("given", ["argument", "environment"])
def test_an_existing_scheduler_is_used_by_address(
    dask_cluster: Any, monkeypatch: pytest.MonkeyPatch, given: str
) -> None:
    address = dask_cluster.scheduler_address
    if given == "environment":
        monkeypatch.setenv(SCHEDULER_ENV, address)

    with dask_client(address if given == "argument" else None, workers=1) as client:
        assert client.scheduler.address == address
        assert _workers(client) == len(dask_cluster.workers)  # its workers, none started here

    assert len(dask_cluster.workers) == 2  # closing the client left the cluster running


@pytest.mark.slow
def test_without_an_address_a_local_cluster_of_the_given_size_runs(
    dask_cluster: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SCHEDULER_ENV, raising=False)

    with dask_client(None, workers=1) as client:
        assert client.scheduler.address != dask_cluster.scheduler_address
        assert _workers(client) == 1
