"""The map world behind a TestClient, on a fresh SQLite file and on PostgreSQL when configured."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from models import (
    ApiClient,
    Camera,
    CameraPreset,
    Case,
    CaseEvent,
    ClientJurisdiction,
    Jurisdiction,
    LayerFeature,
    LayerVersion,
    Scene,
)
from service.db import transaction
from service.main import create_app
from service.settings import Settings
from tests.conftest import migrate
from tests.service.web.world import MapWorld, build_world


@dataclass
class MapApp:
    http: TestClient
    world: MapWorld
    settings: Settings

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.world.keys[who]}"}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def map_db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "postgresql":
        url: str = request.getfixturevalue("postgresql_url")
        return url
    url = f"sqlite:///{tmp_path_factory.mktemp('map') / 'map.db'}"
    migrate(url)
    return url


@pytest.fixture(scope="module")
def map_app(map_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MapApp]:
    data_dir = tmp_path_factory.mktemp("data")
    settings = Settings(database_url=map_db_url, data_dir=data_dir, _env_file=None)  # type: ignore[call-arg]
    with TestClient(create_app(settings)) as http:
        factory = http.app.state.session_factory  # type: ignore[attr-defined]
        with transaction(factory) as session:
            world = build_world(session, data_dir)
        yield MapApp(http, world, settings)
        if map_db_url.startswith("postgresql"):
            clean_up(factory, world)


def clean_up(factory: sessionmaker[Session], world: MapWorld) -> None:
    """Remove the world's rows from a shared database."""
    with transaction(factory) as session:
        cases = list(world.case_ids.values())
        session.execute(delete(CaseEvent).where(CaseEvent.case_id.in_(cases)))
        session.execute(delete(Case).where(Case.id.in_(cases)))
        session.execute(delete(Scene).where(Scene.id.in_(world.scene_ids.values())))
        cameras = world.other_ids["cameras"]
        session.execute(delete(CameraPreset).where(CameraPreset.camera_id.in_(cameras)))
        session.execute(delete(Camera).where(Camera.id.in_(cameras)))
        session.execute(
            delete(LayerFeature).where(LayerFeature.id.in_(world.other_ids["layer_features"]))
        )
        session.execute(
            delete(LayerVersion).where(LayerVersion.id.in_(world.other_ids["layer_versions"]))
        )
        prefixes = [key.split("_")[1] for key in world.keys.values()]
        clients = list(
            session.scalars(select(ApiClient.id).where(ApiClient.key_prefix.in_(prefixes)))
        )
        session.execute(delete(ClientJurisdiction).where(ClientJurisdiction.client_id.in_(clients)))
        session.execute(delete(ApiClient).where(ApiClient.id.in_(clients)))
        areas = list(world.jurisdiction_ids.values())
        session.execute(delete(Jurisdiction).where(Jurisdiction.id.in_(areas)))


@pytest.fixture
def data_dir(map_app: MapApp) -> Path:
    return map_app.settings.data_dir
