"""Two claimers never get the same job: processes on SQLite, threads on PostgreSQL."""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from models.base import utcnow
from models.scene import Scene, SceneKind
from service.db import create_db_engine, create_session_factory, transaction
from service.queue import claim, claim_session_factory, enqueue
from tests.conftest import migrate

JOBS = 60


def add_jobs(factory: sessionmaker[Session], task: str) -> set[int]:
    ids = set()
    with transaction(factory) as session:
        for _ in range(JOBS // 3):
            digest = uuid.uuid4().hex * 2
            scene = Scene(
                kind=SceneKind.rs_tile,
                sha256=digest,
                size_bytes=1,
                storage_uri=f"objects/{digest[:2]}/{digest[2:4]}/{digest}",
                media_type="image/tiff",
                acquired_at=utcnow(),
                bands=[],
            )
            session.add(scene)
            session.flush()
            for step in range(3):
                ids.add(enqueue(session=session, scene_id=scene.id, task=f"{task}{step}").id)
    return ids


def claim_all(url: str, task: str, owner: str, start: Any) -> list[int]:
    """Claim until the queue is empty; each claim in its own short transaction."""
    engine = create_db_engine(url)
    claims = claim_session_factory(engine)
    claimed = []
    start.wait()  # all claimers begin together, so they really compete
    try:
        while True:
            with transaction(claims) as session:
                job = claim(
                    session=session,
                    owner=owner,
                    lease_seconds=300,
                    tasks=[f"{task}{step}" for step in range(3)],
                )
            if job is None:
                return claimed
            claimed.append(job.id)
            time.sleep(0.005)  # stands for running the job, outside the claim transaction
    finally:
        engine.dispose()


def assert_disjoint_and_complete(results: list[list[int]], expected: set[int]) -> None:
    flat = [job for result in results for job in result]
    assert len(flat) == len(set(flat)), "a job was claimed twice"
    assert set(flat) == expected
    assert sum(1 for result in results if result) >= 2  # both really competed


def test_processes_on_sqlite_never_claim_the_same_job(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'race.db'}"
    migrate(url)
    engine = create_db_engine(url)
    expected = add_jobs(create_session_factory(engine), "race")
    engine.dispose()
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(2) as pool:
        start = manager.Barrier(2)
        results = pool.starmap(claim_all, [(url, "race", f"p{i}", start) for i in range(2)])
    assert_disjoint_and_complete(results, expected)


def test_threads_on_postgresql_never_claim_the_same_job(postgresql_url: str) -> None:
    engine = create_db_engine(postgresql_url)
    task = f"race-{uuid.uuid4().hex[:8]}-"
    expected = add_jobs(create_session_factory(engine), task)
    engine.dispose()
    start = threading.Barrier(4)
    with ThreadPoolExecutor(4) as pool:
        results = list(
            pool.map(lambda i: claim_all(postgresql_url, task, f"t{i}", start), range(4))
        )
    assert_disjoint_and_complete(results, expected)
