"""Bad snapshots of a calibrated preset, over HTTP and through a worker.

Each bad snapshot ends as a failed scene whose reason `GET /v1/scenes/{id}` shows. The
worker finishes every job and goes on, and the good snapshots around the bad ones are
analysed. (Bodies the API itself refuses with a 4xx problem, such as a PNG or a capture time
in the future, are in test_http.py.)
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from models.scene import IngestJob, JobStatus
from service.cameras.registry import register_camera, register_preset
from service.db import transaction
from service.main import create_app
from service.settings import Settings
from service.worker import Worker
from tests.conftest import migrate
from tests.service.cameras.views import TOWER, control_points
from tests.service.ingest.test_http import ingest_key

SCALE = 3  # a 640×360 camera: the test tower's 1920×1080 view, reduced
SIZE = (640, 360)
T0 = datetime(2025, 5, 1, 1, 30, tzinfo=UTC)
URL = "/v1/cameras/T-1/presets/P1/snapshots"


def encode(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90, **options)
    return buffer.getvalue()


def field(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    blocks = rng.integers(60, 200, (18, 32, 3))
    return Image.fromarray(np.kron(blocks, np.ones((20, 20, 1))).astype(np.uint8))


def with_declared_size(data: bytes, width: int, height: int) -> bytes:
    start = data.index(b"\xff\xc0")  # the SOF0 header, as a hostile encoder might write it
    return data[: start + 5] + struct.pack(">HH", height, width) + data[start + 9 :]


BAD_EXIF = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff\x01\x02"
# (name, the bytes from a good frame, what the scene's failure reason must say)
BAD: list[tuple[str, Callable[[Image.Image], bytes], str]] = [
    ("truncated", lambda f: encode(f)[:-600], "truncated"),
    ("declares 50000×50000", lambda f: with_declared_size(encode(f), 50000, 50000), "50000"),
    ("grayscale", lambda f: encode(f.convert("L")), "single 'L' channel"),
    ("CMYK", lambda f: encode(f.convert("CMYK")), "CMYK"),
    ("wrong size", lambda f: encode(f.resize((320, 180))), "calibrated for 640×360"),
    ("malformed EXIF", lambda f: encode(f, exif=BAD_EXIF), "EXIF"),
]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    url = f"sqlite:///{tmp_path / 'bad.db'}"
    migrate(url)
    settings = Settings(database_url=url, data_dir=tmp_path / "data", _env_file=None)  # type: ignore[call-arg]
    app = create_app(settings)
    with TestClient(app) as test_client:
        with transaction(app.state.session_factory) as session:
            register_camera(session=session, code="T-1", lon=TOWER[0], lat=TOWER[1])
            points = [
                {**p, "pixel": [p["pixel"][0] / SCALE, p["pixel"][1] / SCALE]}  # type: ignore[index]
                for p in control_points()
            ]
            register_preset(
                session=session,
                camera_code="T-1",
                preset="P1",
                image_size=SIZE,
                control_points=points,
            )
        test_client.headers["Authorization"] = f"Bearer {ingest_key(test_client)}"
        yield test_client


def upload(client: TestClient, data: bytes, at: datetime) -> int:
    response = client.post(
        URL,
        params={"captured_at": at.isoformat()},
        content=data,
        headers={"Content-Type": "image/jpeg"},
    )
    assert response.status_code == 202, response.text
    return int(response.json()["id"])


def run_every_job(settings: Settings) -> list[str]:
    """Claim and run jobs in this process until none is left; their outcomes in order."""
    worker = Worker(settings)
    outcomes = []
    try:
        while (job := worker.claim_next(f"{worker.name}:0")) is not None:
            outcomes.append(worker.run_job(job).status)
    finally:
        worker.engine.dispose()
    return outcomes


def test_bad_snapshots_fail_their_scenes_with_the_reason_and_the_rest_is_analysed(
    client: TestClient,
) -> None:
    first = upload(client, encode(field(0)), T0)
    bad = {
        name: (upload(client, make(field(index + 1)), T0 + timedelta(minutes=index + 1)), says)
        for index, (name, make, says) in enumerate(BAD)
    }
    last = upload(client, encode(field(99)), T0 + timedelta(minutes=30))
    settings = client.app.state.settings  # type: ignore[attr-defined]
    outcomes = run_every_job(settings)
    late = upload(client, encode(field(100)), T0 + timedelta(minutes=20))  # after `last` ran
    outcomes += run_every_job(settings)

    assert outcomes and set(outcomes) == {"done"}
    with client.app.state.session_factory() as session:  # type: ignore[attr-defined]
        assert session.query(IngestJob).filter(IngestJob.status != JobStatus.done).count() == 0
    for scene_id in (first, last):
        shown = client.get(f"/v1/scenes/{scene_id}").json()
        assert shown["status"] == "analysed", shown
    for name, (scene_id, says) in bad.items():
        shown = client.get(f"/v1/scenes/{scene_id}").json()
        assert shown["status"] == "failed", name
        assert says in shown["failure_reason"], (name, shown["failure_reason"])
    shown = client.get(f"/v1/scenes/{late}").json()
    assert shown["status"] == "failed"
    assert "must arrive in capture order" in shown["failure_reason"]
