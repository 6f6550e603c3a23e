"""A small simulated world delivered as provider products, and a Dask cluster of processes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from models import AlertEvent, Case, Detection
from scripts.load_world import load_world
from service.backfill.inputs import read_area
from service.backfill.run import BackfillRequest, run_backfill
from service.db import create_db_engine, machine_session_factory, transaction
from service.settings import Settings
from simulator import WorldParams, generate_world
from simulator.products import delivered_tile
from tests.conftest import migrate


@dataclass(frozen=True)
class World:
    folder: Path
    products: Path
    area: Path
    meta: dict[str, Any]


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("backfill_world")
    params = WorldParams(seed=3, area_km2=1.0, epochs=4, cameras=0)
    generate_world(params, root / "world", workers=1)
    meta = json.loads((root / "world" / "world.json").read_text())
    for epoch in meta["epochs"]:
        delivered_tile(root / "world" / epoch["tile"], root / "products")
    lon0, lat0, lon1, lat1 = meta["bounds_lonlat"]
    ring = [[lon0, lat0], [lon1, lat0], [lon1, lat1], [lon0, lat1], [lon0, lat0]]
    area = root / "area.geojson"
    area.write_text(json.dumps({"type": "Polygon", "coordinates": [ring]}))
    return World(root / "world", root / "products", area, meta)


@pytest.fixture(scope="session")
def dask_cluster() -> Iterator[Any]:
    from dask.distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def uninterrupted(
    world: World, tmp_path_factory: pytest.TempPathFactory, dask_cluster: Any
) -> dict[str, Any]:
    """The outcome of the world's backfill run once, start to end: what a stopped or killed
    run must end with."""
    from dask.distributed import Client

    loaded = Loaded.fresh(world, tmp_path_factory.mktemp("uninterrupted"), "whole")
    with Client(dask_cluster) as dask_client:
        loaded.backfill(request_for(world), dask_client)
    outcome = loaded.outcome()
    loaded.engine.dispose()
    return outcome


@pytest.fixture
def client(dask_cluster: Any) -> Iterator[Any]:
    from dask.distributed import Client

    with Client(dask_cluster) as dask_client:
        yield dask_client


def request_for(world: World, source: Path | None = None, **extra: Any) -> BackfillRequest:
    return BackfillRequest(
        area=read_area(world.area),
        since=datetime(2025, 1, 1, tzinfo=UTC),
        until=datetime(2025, 12, 31, 23, 59, tzinfo=UTC),
        source=str(source or world.products),
        **extra,
    )


class Loaded:
    """A migrated database with the world's layers and jurisdictions, ready to backfill."""

    def __init__(self, url: str, data_dir: Path, world: World) -> None:
        self.settings = Settings(database_url=url, data_dir=data_dir)
        self.engine = create_db_engine(url)
        self.factory = machine_session_factory(self.engine)
        with transaction(self.factory) as session:
            load_world(world.folder, session=session, settings=self.settings)

    @classmethod
    def fresh(cls, world: World, folder: Path, name: str) -> Loaded:
        """A new SQLite database `name`.db in `folder`, migrated, the world loaded into it."""
        url = f"sqlite:///{folder / f'{name}.db'}"
        migrate(url)
        return cls(url, folder / "data", world)

    @property
    def cli_env(self) -> dict[str, str]:
        """The environment that points the command line at this database and data folder."""
        return {
            "TIANXUN_DATABASE_URL": self.settings.database_url,
            "TIANXUN_DATA_DIR": str(self.settings.data_dir),
        }

    def backfill(self, request: BackfillRequest, client: Any, **options: Any) -> dict:
        return run_backfill(
            request, factory=self.factory, settings=self.settings, client=client, **options
        )

    def outcome(self) -> dict[str, Any]:
        """Everything a user would compare between two runs (not ids or clock times)."""
        with Session(self.engine) as session:
            return outcome_of(session)


def outcome_of(session: Session) -> dict[str, Any]:
    detections = sorted(
        (
            d.scene_id,
            d.object_index,
            str(d.change_type),
            str(d.screening),
            round(d.area_m2, 1),
            d.backfill,
            d.case_id is not None,
        )
        for d in session.scalars(select(Detection))
    )
    cases = sorted(
        (
            c.code,
            str(c.status),
            tuple(c.change_types),
            round(c.area_m2, 1),
            c.onset_after,
            c.onset_before,
            c.onset_likeliest,
            c.backfill,
        )
        for c in session.scalars(select(Case))
    )
    alerts = sorted((a.event_type, a.backfill) for a in session.scalars(select(AlertEvent)))
    return {"detections": detections, "cases": cases, "alerts": alerts}
