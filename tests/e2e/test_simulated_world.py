"""End to end on a simulated world: its snapshots and tiles ingested over HTTP, analysed by two
`tianxun worker` processes, screened and turned into cases; ingesting it all again changes
nothing. The detection rate is measured and kept in the test report (see `record_property`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import shapely
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from models.alert import AlertEvent
from models.case import Case, CaseEvent, Evidence, EvidenceKind
from models.client import Role
from models.detection import Detection, Screening
from models.layer import FarmlandObservation, Layer, LayerFeature, LayerKind, LayerVersion
from models.scene import IngestJob, JobStatus, Scene, SceneKind, SceneStatus
from scripts.load_world import load_world
from service.clients import create_client
from service.db import create_db_engine, create_session_factory, transaction
from service.main import create_app
from service.settings import Settings
from service.spatial import area_m2
from simulator import WorldParams, generate_world
from simulator.products import uploads
from tests.e2e.truth import score_world

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TIANXUN = Path(sys.executable).parent / "tianxun"
# Six snapshots per preset and epoch (two a day for three days) give the camera detector the
# persistence it needs; tower cameras shoot far more often than that in practice.
WORLD = WorldParams(seed=3, area_km2=1.0, epochs=4, cameras=2, snapshots_per_epoch=6)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    generate_world(WORLD, out, workers=1)
    return out


@pytest.fixture
def world_url(fresh_db_url: str) -> str:
    """A fresh migrated database that only this test uses."""
    return fresh_db_url


@pytest.fixture
def settings(world_url: str, tmp_path: Path) -> Settings:
    url = world_url
    return Settings(
        database_url=url,
        data_dir=tmp_path / "data",
        retry_base_seconds=0.5,
        retry_max_seconds=2,
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture
def factory(settings: Settings) -> Iterator[sessionmaker[Session]]:
    engine = create_db_engine(settings.database_url)
    yield create_session_factory(engine)
    engine.dispose()


@pytest.fixture
def workers(settings: Settings, tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TIANXUN_DATABASE_URL": settings.database_url,
        "TIANXUN_DATA_DIR": str(settings.data_dir),
        "TIANXUN_WORKER_POLL_SECONDS": "0.1",
        "TIANXUN_RETRY_BASE_SECONDS": "0.5",
        "TIANXUN_RETRY_MAX_SECONDS": "2",
    }
    started = []
    for index in range(2):
        log = open(tmp_path / f"worker-{index}.log", "wb")  # noqa: SIM115
        started.append(
            subprocess.Popen(
                [str(TIANXUN), "worker"], cwd=tmp_path, env=env, stdout=log, stderr=log
            )
        )
    yield started
    for process in started:
        process.terminate()
        process.wait(timeout=60)


def wait_for(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    # The workers are other processes writing rows: there is no event to await, so poll.
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


def queue_idle(factory: sessionmaker[Session]) -> bool:
    with factory() as session:
        busy = session.scalar(
            select(func.count()).where(IngestJob.status.in_([JobStatus.queued, JobStatus.running]))
        )
    return busy == 0


def ingest_all(client: TestClient, world: Path, products: Path) -> list[int]:
    statuses = []
    for upload in uploads(world, products):
        response = client.post(
            upload.url,
            params=upload.query,
            content=upload.path.read_bytes(),
            headers={"Content-Type": upload.media_type},
        )
        assert response.status_code in (200, 202), response.text
        statuses.append(response.status_code)
    return statuses


def counts(factory: sessionmaker[Session]) -> dict[str, int]:
    tables = {
        "scenes": Scene,
        "jobs": IngestJob,
        "detections": Detection,
        "cases": Case,
        "case_events": CaseEvent,
        "evidence": Evidence,
        "alerts": AlertEvent,
        "observations": FarmlandObservation,
    }
    with factory() as session:
        return {
            name: session.scalar(select(func.count()).select_from(t)) or 0
            for name, t in tables.items()
        }


def test_simulated_world_end_to_end(
    world: Path,
    settings: Settings,
    factory: sessionmaker[Session],
    workers: list[subprocess.Popen[bytes]],
    record_property: Callable[[str, object], None],
    tmp_path: Path,
) -> None:
    with transaction(factory) as session:
        load_world(world, session=session, settings=settings)
        key = create_client(
            f"e2e-{uuid.uuid4().hex[:6]}", session=session, role=Role.admin, jurisdiction_codes=[]
        ).key
    started = time.monotonic()
    with TestClient(create_app(settings)) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        first = ingest_all(client, world, tmp_path / "products")
        wait_for(lambda: queue_idle(factory), timeout=240, what="the first ingest to be analysed")
        elapsed = time.monotonic() - started
        before = counts(factory)
        again = ingest_all(client, world, tmp_path / "products")
        wait_for(lambda: queue_idle(factory), timeout=60, what="the second ingest")
        after = counts(factory)

    assert set(first) == {202} and set(again) == {200}  # the second time, every scene exists
    assert after == before  # nothing new: no detection, case, event, alert or evidence twice

    with factory() as session:
        dead = session.scalars(select(IngestJob).where(IngestJob.status == JobStatus.dead)).all()
        assert not dead, [(job.task, job.dead_reason) for job in dead]
        unfinished = session.scalars(
            select(Scene).where(Scene.status.not_in([SceneStatus.analysed, SceneStatus.failed]))
        ).all()
        assert not unfinished, [(s.id, s.status) for s in unfinished]
        failed = session.scalars(select(Scene).where(Scene.status == SceneStatus.failed)).all()
        score = score_world(world, session=session)
        # The measured detection rate goes to the report, not into a threshold.
        record_property("world_score", json.dumps(score.summary()))
        record_property("counts", json.dumps(before))
        record_property("first_ingest_seconds", round(elapsed, 1))
        record_property("failed_scenes", json.dumps([s.failure_reason for s in failed]))
        assert all(scene.failure_reason for scene in failed)
        _assert_properties(session, settings)


def _assert_properties(session: Session, settings: Settings) -> None:
    # Farm work the detectors recognise as such never becomes a case.
    benign_in_cases = session.scalar(
        select(func.count()).where(Detection.benign.is_(True), Detection.case_id.is_not(None))
    )
    assert benign_in_cases == 0
    # Change lying on approved construction land is recorded as approved, never as a case.
    approved = _mostly_on_approved_land(session, settings)
    assert approved, "the world has look-alikes on approved land: some must be detected"
    for detection in approved:
        assert detection.screening == Screening.covered_by_approval
        assert detection.case_id is None
    # Both sensors record which parcels they saw (an empty map is not "no violation" where
    # nothing looked).
    sources = session.scalars(select(FarmlandObservation.source).distinct()).all()
    assert sorted(sources) == ["camera", "remote_sensing"]
    # A cloudy look counts only where it was clear: parcels under the last tile's clouds keep
    # an earlier "last observed" time.
    last_tile = max(
        session.scalars(select(Scene).where(Scene.kind == SceneKind.rs_tile)),
        key=lambda scene: scene.acquired_at,
    )
    seen_from_space = session.scalars(
        select(FarmlandObservation.last_observed_at).where(
            FarmlandObservation.source == "remote_sensing"
        )
    ).all()
    latest = sum(1 for at in seen_from_space if at == last_tile.acquired_at)
    assert 0 < latest < len(seen_from_space)
    # A case carries where, how big, what, when, and before/after chips as evidence.
    for case in session.scalars(select(Case)):
        assert case.area_m2 > 0 and case.change_types and case.first_seen_at <= case.last_seen_at
        assert case.jurisdiction_id is not None
        kinds = set(session.scalars(select(Evidence.kind).where(Evidence.case_id == case.id)))
        assert kinds == {EvidenceKind.chip_before, EvidenceKind.chip_after}


def _mostly_on_approved_land(session: Session, settings: Settings) -> list[Detection]:
    approved = session.scalars(
        select(LayerFeature.geom)
        .join(LayerVersion, LayerVersion.id == LayerFeature.layer_version_id)
        .join(Layer, Layer.id == LayerVersion.layer_id)
        .where(Layer.kind == LayerKind.approved_construction)
    ).all()
    land = shapely.union_all(approved)
    found = []
    for detection in session.scalars(select(Detection).where(Detection.benign.is_(False))):
        share = area_m2(detection.geom.intersection(land), settings.area_crs) / area_m2(
            detection.geom, settings.area_crs
        )
        if share >= settings.min_overlap_fraction_for_approval:
            found.append(detection)
    return found
