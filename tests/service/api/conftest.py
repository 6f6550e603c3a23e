"""A small world for the case API: a city with two districts, clients of every role, cases.

City ─┬─ district A ── township A1      case "in" lies in A1
      └─ district B                     case "out" lies in B

The monitor and the analyst hold district A (so A1 through it), inspector_a holds A1,
inspector_b holds district B, the admin holds nothing and sees everything.

On PostgreSQL the service connects as an ordinary role, as in production, so row-level
security applies to every request; the world is set up through a session that sees everything.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from shapely.geometry import MultiPolygon, box
from shapely.geometry.base import BaseGeometry
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from models import (
    AlertEvent,
    ApiClient,
    Case,
    CaseEvent,
    ClientJurisdiction,
    Evidence,
    Jurisdiction,
)
from models.case import CaseStatus
from models.client import Role
from models.jurisdiction import JurisdictionLevel
from service.cases.events import append_event
from service.clients import create_client
from service.db import machine_session_factory, transaction
from service.main import create_app
from service.settings import Settings
from tests.conftest import migrate, ordinary_role

AREAS = {
    "city": (JurisdictionLevel.city, None, box(120.0, 30.0, 120.4, 30.4)),
    "A": (JurisdictionLevel.district, "city", box(120.0, 30.0, 120.2, 30.4)),
    "A1": (JurisdictionLevel.township, "A", box(120.0, 30.0, 120.1, 30.2)),
    "B": (JurisdictionLevel.district, "city", box(120.2, 30.0, 120.4, 30.4)),
}
CLIENTS = {
    "admin": (Role.admin, []),
    "monitor": (Role.monitor, ["A"]),
    "inspector_a": (Role.inspector, ["A1"]),
    "inspector_a2": (Role.inspector, ["A1"]),
    "inspector_b": (Role.inspector, ["B"]),
    "analyst": (Role.analyst, ["A"]),
    "ingest": (Role.ingest, []),
}
PLACES = {"in": box(120.05, 30.05, 120.051, 30.051), "out": box(120.3, 30.3, 120.301, 30.301)}
JURISDICTION_OF_PLACE = {"in": "A1", "out": "B"}
SEEN = datetime(2024, 6, 1, 3, 0, tzinfo=UTC)
_serial = itertools.count(1)


@dataclass
class World:
    http: TestClient
    url: str
    settings: Settings
    keys: dict[str, str]
    names: dict[str, str]
    codes: dict[str, str]
    ids: dict[str, int]
    case_ids: list[int] = field(default_factory=list)

    @cached_property
    def factory(self) -> sessionmaker[Session]:
        """Sessions that see every jurisdiction, to set up and inspect the world."""
        return machine_session_factory(self.http.app.state.engine)  # type: ignore[attr-defined]

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}

    def add_case(self, place: str = "in", **fields: object) -> int:
        """A committed case at `place` ("in" or "out") with its opening event."""
        with transaction(self.factory) as session:
            case_id = add_case(session, self.ids[JURISDICTION_OF_PLACE[place]], place, **fields)
        self.case_ids.append(case_id)
        return case_id


def add_case(session: Session, jurisdiction_id: int | None, place: str, **fields: object) -> int:
    geom: BaseGeometry = fields.pop("geom", PLACES[place])  # type: ignore[assignment]
    values: dict[str, object] = {
        "code": f"T-{uuid.uuid4().hex[:12]}-{next(_serial)}",
        "status": CaseStatus.new,
        "version": 1,
        "geom": MultiPolygon([geom]) if geom.geom_type == "Polygon" else geom,
        "area_m2": 10_000.0,
        "change_types": ["building"],
        "sources": ["remote_sensing"],
        "first_seen_at": SEEN,
        "last_seen_at": SEEN,
        "jurisdiction_id": jurisdiction_id,
        "priority": 50,
    } | fields
    case = Case(**values)
    session.add(case)
    session.flush()
    append_event(
        case, session=session, action="opened", actor="machine-review", role="system",
        to_status=str(case.status), at=values["first_seen_at"],  # type: ignore[arg-type]
    )  # fmt: skip
    return case.id


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def api_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A migrated database for one test module: a fresh SQLite file, or the PostgreSQL one
    reached through an ordinary role that row-level security applies to."""
    if request.param == "postgresql":
        with ordinary_role(request.getfixturevalue("postgresql_url")) as url:
            yield url
        return
    url = f"sqlite:///{tmp_path_factory.mktemp('api') / 'cases.db'}"
    migrate(url)
    yield url


def make_settings(url: str, data_dir: Path) -> Settings:
    return Settings(database_url=url, data_dir=data_dir, _env_file=None)  # type: ignore[call-arg]


@pytest.fixture(scope="module")
def world(api_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    settings = make_settings(api_url, tmp_path_factory.mktemp("data"))
    with TestClient(create_app(settings)) as http:
        factory = machine_session_factory(http.app.state.engine)  # type: ignore[attr-defined]
        with transaction(factory) as session:
            ids, codes = _add_areas(session)
            keys, names = _add_clients(session, codes)
        state = World(http, api_url, settings, keys, names, codes, ids)
        state.add_case("in")
        state.add_case("out")
        yield state
        if api_url.startswith("postgresql"):
            _clean_up(factory, state)


def _add_areas(session: Session) -> tuple[dict[str, int], dict[str, str]]:
    ids: dict[str, int] = {}
    codes: dict[str, str] = {}
    suffix = uuid.uuid4().hex[:8]
    for label, (level, parent, geom) in AREAS.items():
        area = Jurisdiction(
            code=f"{label}-{suffix}", name=label, level=level,
            parent_id=ids[parent] if parent else None, geom=MultiPolygon([geom]), area_m2=1.0,
        )  # fmt: skip
        session.add(area)
        session.flush()
        ids[label], codes[label] = area.id, area.code
    return ids, codes


def _add_clients(session: Session, codes: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    suffix = uuid.uuid4().hex[:8]
    keys, names = {}, {}
    for label, (role, areas) in CLIENTS.items():
        issued = create_client(
            f"{label}-{suffix}", session=session, role=role,
            jurisdiction_codes=[codes[a] for a in areas],
        )  # fmt: skip
        keys[label], names[label] = issued.key, issued.name
    return keys, names


def _clean_up(factory: sessionmaker[Session], state: World) -> None:
    """Remove this module's rows from the shared PostgreSQL database."""
    with transaction(factory) as session:
        cases = state.case_ids
        session.execute(delete(AlertEvent).where(AlertEvent.case_id.in_(cases)))
        session.execute(delete(CaseEvent).where(CaseEvent.case_id.in_(cases)))
        session.execute(delete(Evidence).where(Evidence.case_id.in_(cases)))
        session.execute(delete(Case).where(Case.id.in_(cases)))
        clients = select(ApiClient.id).where(ApiClient.name.in_(list(state.names.values())))
        client_ids = list(session.scalars(clients))
        session.execute(
            delete(ClientJurisdiction).where(ClientJurisdiction.client_id.in_(client_ids))
        )
        session.execute(delete(ApiClient).where(ApiClient.id.in_(client_ids)))
        for label in reversed(list(AREAS)):
            session.execute(delete(Jurisdiction).where(Jurisdiction.id == state.ids[label]))
