"""The ingest endpoints over HTTP: what a camera gateway or a tile producer sees."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from models.client import ApiClient, Role
from service.auth import generate_key
from service.db import transaction
from service.main import create_app
from service.settings import Settings
from tests.conftest import migrate
from tests.service.ingest.conftest import add_camera, geotiff_bytes, jpeg_bytes

CAPTURED = "2026-11-28T08:30:00+08:00"
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def sqlite_http_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('http') / 'ingest.db'}"
    migrate(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def client(
    request: pytest.FixtureRequest, tmp_path: Path, settings: Settings
) -> Iterator[TestClient]:
    fixture = "sqlite_http_url" if request.param == "sqlite" else "postgresql_url"
    url: str = request.getfixturevalue(fixture)
    app = create_app(settings.model_copy(update={"database_url": url}))
    with TestClient(app) as test_client:
        test_client.headers["Authorization"] = f"Bearer {ingest_key(test_client)}"
        yield test_client


def ingest_key(client: TestClient, role: Role = Role.ingest) -> str:
    """A fresh API key of a camera gateway, or of a client with another role and no area."""
    new = generate_key()
    with transaction(client.app.state.session_factory) as session:  # type: ignore[attr-defined]
        session.add(
            ApiClient(
                name=f"gateway-{new.prefix}",
                role=role,
                key_prefix=new.prefix,
                key_hash=new.key_hash,
            )
        )
    return new.key


@pytest.fixture
def camera(client: TestClient) -> str:
    """The snapshot URL of a fresh camera preset."""
    with transaction(client.app.state.session_factory) as session:  # type: ignore[attr-defined]
        code, preset = add_camera(session)
    return f"/v1/cameras/{code}/presets/{preset}/snapshots"


def post_jpeg(client: TestClient, url: str, data: bytes, **headers: str):  # type: ignore[no-untyped-def]
    return client.post(
        url,
        params={"captured_at": CAPTURED},
        content=data,
        headers={"Content-Type": "image/jpeg", **headers},
    )


def assert_problem(response, status: int, fragment: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    assert fragment in response.json()["detail"]


def test_a_snapshot_is_accepted_and_its_scene_can_be_read(client: TestClient, camera: str) -> None:
    data = jpeg_bytes()
    response = post_jpeg(client, camera, data)
    assert response.status_code == 202, response.text
    scene = response.json()
    assert response.headers["location"] == f"/v1/scenes/{scene['id']}"
    assert scene["status"] == "received" and scene["size_bytes"] == len(data)
    assert scene["acquired_at"].startswith("2026-11-28T00:30:00")  # UTC
    shown = client.get(response.headers["location"]).json()
    assert shown == scene  # the answer, jobs and STAC item included, is the scene as stored
    assert shown["jobs"][0]["task"] == "validate" and shown["jobs"][0]["status"] == "queued"
    assert shown["stac_item"]["id"] == scene["sha256"]
    assert shown["stac_item"]["properties"]["datetime"].startswith("2026-11-28T00:30:00")


def test_a_duplicate_upload_returns_the_existing_scene(client: TestClient, camera: str) -> None:
    data = jpeg_bytes()
    first = post_jpeg(client, camera, data)
    again = post_jpeg(client, camera, data)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["id"] == first.json()["id"]


def test_idempotency_key_replays_refuses_reuse_and_never_duplicates(
    client: TestClient, camera: str
) -> None:
    key = str(uuid.uuid4())
    data = jpeg_bytes()
    first = post_jpeg(client, camera, data, **{"Idempotency-Key": key})
    replay = post_jpeg(client, camera, data, **{"Idempotency-Key": key})
    assert (first.status_code, replay.status_code) == (202, 202)
    assert replay.json() == first.json()
    assert replay.headers["idempotent-replayed"] == "true"
    other = post_jpeg(client, camera, jpeg_bytes(), **{"Idempotency-Key": key})
    assert_problem(other, 422, "already used for a different request")


def test_idempotency_keys_belong_to_the_client_that_sent_them(
    client: TestClient, camera: str
) -> None:
    key = str(uuid.uuid4())
    mine = post_jpeg(client, camera, jpeg_bytes(), **{"Idempotency-Key": key})
    other_gateway = {"Authorization": f"Bearer {ingest_key(client)}", "Idempotency-Key": key}
    theirs = post_jpeg(client, camera, jpeg_bytes(), **other_gateway)
    assert (mine.status_code, theirs.status_code) == (202, 202)  # not "used for another request"
    assert theirs.json()["id"] != mine.json()["id"]
    assert "idempotent-replayed" not in theirs.headers


def test_a_failed_request_does_not_burn_its_idempotency_key(
    client: TestClient, camera: str
) -> None:
    key = str(uuid.uuid4())
    data = jpeg_bytes()
    unknown = camera.replace("/cameras/", "/cameras/x")
    assert post_jpeg(client, unknown, data, **{"Idempotency-Key": key}).status_code == 404
    assert post_jpeg(client, unknown, data, **{"Idempotency-Key": key}).status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (b"\x89PNG\r\n\x1a\n" + b"0" * 100, 415, "does not look like a JPEG"),
        (b"--xyz\r\nContent-Disposition: form-data; name=f\r\n\r\n", 415, "not multipart"),
        (b"\xff\xd8\xff" + b"0" * 300_000, 413, "exceeds the limit"),
        (b"", 422, "empty"),
    ],
)
def test_bad_bodies_get_a_specific_problem(
    client: TestClient, camera: str, body: bytes, status: int, fragment: str
) -> None:
    assert_problem(post_jpeg(client, camera, body), status, fragment)


def test_a_streamed_body_over_the_limit_is_cut_off(client: TestClient, camera: str) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"\xff\xd8\xff"
        for _ in range(100):
            yield b"0" * 10_000  # no Content-Length: the limit is counted while streaming

    response = client.post(
        camera,
        params={"captured_at": CAPTURED},
        content=chunks(),
        headers={"Content-Type": "image/jpeg"},
    )
    assert_problem(response, 413, "exceeds the limit of 200000 bytes")


@pytest.mark.parametrize(
    ("captured_at", "fragment"),
    [
        ((datetime.now(UTC) + timedelta(hours=2)).isoformat(), "in the future"),
        ("2026-11-28T08:30:00", "has no timezone"),
        ("yesterday", "captured_at"),
    ],
)
def test_bad_capture_times_are_422(
    client: TestClient, camera: str, captured_at: str, fragment: str
) -> None:
    response = client.post(
        camera,
        params={"captured_at": captured_at},
        content=jpeg_bytes(),
        headers={"Content-Type": "image/jpeg"},
    )
    assert_problem(response, 422, fragment)


def test_unknown_camera_and_scene_are_404(client: TestClient) -> None:
    response = post_jpeg(client, "/v1/cameras/ghost/presets/1/snapshots", jpeg_bytes())
    assert_problem(response, 404, "camera 'ghost' is not registered")
    assert_problem(client.get("/v1/scenes/999999999"), 404, "scene 999999999 does not exist")
    assert client.get("/v1/scenes/99999999999999999999999").status_code == 422


def test_a_tile_upload_needs_its_acquisition_time(client: TestClient, tmp_path: Path) -> None:
    data = geotiff_bytes(tmp_path)
    missing = client.post("/v1/scenes", content=data, headers={"Content-Type": "image/tiff"})
    assert_problem(missing, 422, "acquired_at is required")
    response = client.post(
        "/v1/scenes",
        params={"acquired_at": "2026-11-27T02:30:00Z", "sensor": "GF-2 PMS"},
        content=data,
        headers={"Content-Type": "image/tiff"},
    )
    assert response.status_code == 202, response.text
    assert response.json()["kind"] == "rs_tile" and response.json()["sensor"] == "GF-2 PMS"


def test_a_tile_by_path_must_be_under_an_allow_listed_root(
    client: TestClient, tmp_path: Path
) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    inside = incoming / "tile.tif"
    inside.write_bytes(geotiff_bytes(tmp_path))
    body = {"path": str(inside), "acquired_at": "2026-11-27T02:30:00Z"}
    assert client.post("/v1/scenes", json=body).status_code == 202
    outside = {**body, "path": str(tmp_path / "incoming" / ".." / "elsewhere.tif")}
    assert_problem(client.post("/v1/scenes", json=outside), 403, "outside the allow-listed")
    assert_problem(client.post("/v1/scenes", json={"path": "/x"}), 422, "acquired_at")


def test_metrics_report_the_queue_from_the_database(client: TestClient, camera: str) -> None:
    post_jpeg(client, camera, jpeg_bytes())
    text = client.get("/metrics").text
    assert "tianxun_queue_scrape_ok 1.0" in text
    queued = next(
        line for line in text.splitlines() if line.startswith('tianxun_queue_jobs{status="queued"}')
    )
    assert float(queued.split()[-1]) >= 1
    assert "tianxun_queue_oldest_ready_age_seconds" in text


@pytest.mark.parametrize(
    ("url", "params", "status"),
    [
        ("/v1/cameras/%00/presets/1/snapshots", {"captured_at": CAPTURED}, 404),
        (
            "/v1/cameras/{camera}/presets/1/snapshots",
            {"captured_at": "0001-01-01T00:00:00+14:00"},
            422,
        ),
        ("/v1/cameras/{camera}/presets/1/snapshots", {"captured_at": "1970-01-01T00:00:00Z"}, 422),
        ("/v1/scenes", {"acquired_at": "2026-11-28T00:00:00Z", "sensor": "a\x00b"}, 422),
    ],
)
def test_odd_inputs_are_4xx_on_every_backend(
    client: TestClient, camera: str, url: str, params: dict[str, str], status: int
) -> None:
    code = camera.split("/")[3]
    response = client.post(
        url.format(camera=code),
        params=params,
        content=jpeg_bytes() if "cameras" in url else b"II*\x00" + uuid.uuid4().bytes,
    )
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM


def test_uploads_need_an_ingest_key(client: TestClient, camera: str) -> None:
    anonymous = client.post(
        camera,
        params={"captured_at": CAPTURED},
        content=jpeg_bytes(),
        headers={"Content-Type": "image/jpeg", "Authorization": ""},
    )
    analyst = post_jpeg(
        client, camera, jpeg_bytes(), Authorization=f"Bearer {ingest_key(client, Role.inspector)}"
    )
    assert_problem(anonymous, 401, "")
    assert_problem(analyst, 403, "")
