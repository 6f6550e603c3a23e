"""Camera and preset registration over HTTP: calibration accepted, or refused with the reason."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from shapely.geometry import Point, shape
from sqlalchemy.orm import Session

from detection.errors import CalibrationError
from models.camera import CameraPreset
from models.client import Role
from service.cameras.registry import (
    calibrate,
    preset_calibration,
    register_preset,
    stored_calibration,
)
from service.clients import create_client
from service.db import transaction
from service.main import create_app
from service.settings import Settings
from tests.conftest import migrate
from tests.service.cameras.views import (
    HEIGHT,
    TOWER,
    WIDTH,
    control_points,
    registered_preset,
)

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def sqlite_cameras_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('cameras') / 'cameras.db'}"
    migrate(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    fixture = "sqlite_cameras_url" if request.param == "sqlite" else "postgresql_url"
    url: str = request.getfixturevalue(fixture)
    settings = Settings(database_url=url, data_dir=tmp_path, _env_file=None)  # type: ignore[call-arg]
    with TestClient(create_app(settings)) as test_client:
        test_client.headers["Authorization"] = f"Bearer {key(test_client, Role.admin)}"
        yield test_client


def key(client: TestClient, role: Role) -> str:
    with transaction(client.app.state.session_factory) as session:  # type: ignore[attr-defined]
        return create_client(
            f"cam-{uuid.uuid4().hex[:8]}", session=session, role=role, jurisdiction_codes=[]
        ).key


@pytest.fixture
def camera(client: TestClient) -> str:
    code = f"T-{uuid.uuid4().hex[:8]}"
    body = {"code": code, "name": "Tower 7", "lon": TOWER[0], "lat": TOWER[1], "height_m": 50}
    response = client.post("/v1/cameras", json=body)
    assert response.status_code == 201, response.text
    return code


def preset_body(points: list[dict[str, object]]) -> dict[str, object]:
    return {"image_width": WIDTH, "image_height": HEIGHT, "control_points": points}


def test_a_camera_is_registered_once_and_listed(client: TestClient, camera: str) -> None:
    again = client.post("/v1/cameras", json={"code": camera, "lon": 120.03, "lat": 30.42})
    assert again.status_code == 200
    assert again.json()["lon"] == pytest.approx(120.03)  # moved, not duplicated
    listed = [c["code"] for c in client.get("/v1/cameras").json()]
    assert listed.count(camera) == 1


@pytest.mark.parametrize("code", ["û", "塔1", "a b", "a/b"])
def test_camera_codes_are_plain_ascii_names(client: TestClient, code: str) -> None:
    # They appear in snapshot URLs; the pattern must mean the same to the API and its document.
    response = client.post("/v1/cameras", json={"code": code, "lon": 120.03, "lat": 30.42})
    assert response.status_code == 422, response.text


def test_a_calibrated_preset_stores_its_ground_footprint(client: TestClient, camera: str) -> None:
    points = control_points()
    response = client.put(f"/v1/cameras/{camera}/presets/P1", json=preset_body(points))
    assert response.status_code == 201, response.text
    preset = response.json()
    assert preset["rms_error_m"] < 0.5
    footprint = shape(preset["footprint"])
    assert footprint.geom_type == "Polygon"
    # The ground at every control point is in view; the tower's own foot is not.
    assert all(footprint.buffer(1e-6).contains(Point(p["lon"], p["lat"])) for p in points)
    assert not footprint.contains(Point(*TOWER))
    again = client.put(f"/v1/cameras/{camera}/presets/P1", json=preset_body(points))
    assert again.status_code == 200
    shown = client.get(f"/v1/cameras/{camera}").json()
    assert [p["preset"] for p in shown["presets"]] == ["P1"]


@pytest.mark.parametrize(
    ("points", "problem"),
    [
        (control_points()[:3], "at least 4"),
        (control_points([(300, 800), (700, 800), (1100, 800), (1500, 800)]), "collinear"),
        (control_points(shift_m={4: 60.0}), "RMS error"),
        (control_points([(300, 700), (960, 700), (1620, 700), (960, 2000)]), "outside"),
    ],
    ids=["three-points", "collinear", "bad-point", "outside-image"],
)
def test_an_unusable_calibration_is_refused_with_the_reason(
    client: TestClient, camera: str, points: list[dict[str, object]], problem: str
) -> None:
    response = client.put(f"/v1/cameras/{camera}/presets/P1", json=preset_body(points))
    assert response.status_code == 422
    assert response.headers["content-type"].startswith(PROBLEM)
    assert problem in response.json()["detail"]
    assert client.get(f"/v1/cameras/{camera}").json()["presets"] == []  # nothing stored


def test_presets_of_unknown_cameras_are_not_found(client: TestClient) -> None:
    response = client.put("/v1/cameras/NOPE/presets/P1", json=preset_body(control_points()))
    assert response.status_code == 404
    assert "POST /v1/cameras" in response.json()["detail"]


def test_only_administrators_register_cameras(client: TestClient) -> None:
    body = {"code": "T-x", "lon": TOWER[0], "lat": TOWER[1]}
    gateway = {"Authorization": f"Bearer {key(client, Role.ingest)}"}
    assert client.post("/v1/cameras", json=body, headers=gateway).status_code == 403
    assert client.post("/v1/cameras", json=body, headers={"Authorization": ""}).status_code == 401


def test_recalibrating_a_preset_forgets_the_detector_state(db_session: Session) -> None:
    code = f"T-{uuid.uuid4().hex[:8]}"
    size = (WIDTH, HEIGHT)
    preset = registered_preset(db_session, code)
    preset.detector_state = b"learned background"
    db_session.flush()
    register_preset(
        session=db_session,
        camera_code=code,
        preset="P1",
        image_size=size,
        control_points=control_points(),
    )
    assert preset.detector_state == b"learned background"  # the same calibration: kept
    moved = control_points([(c + 40, r) for r in (700, 850, 1000) for c in (300, 960, 1620)])
    register_preset(
        session=db_session, camera_code=code, preset="P1", image_size=size, control_points=moved
    )
    stored = db_session.get(CameraPreset, preset.id)
    assert stored is not None and stored.detector_state is None


def test_the_stored_calibration_is_the_one_fitted_at_registration(db_session: Session) -> None:
    code = f"T-{uuid.uuid4().hex[:8]}"
    row = registered_preset(db_session, code)
    db_session.expire(row)  # read back as stored, JSON and all
    fitted = calibrate(
        camera_code=code, image_size=(WIDTH, HEIGHT), control_points=control_points()
    )
    stored = preset_calibration(row, camera_code=code)
    np.testing.assert_array_equal(stored.homography, fitted.homography)
    assert (stored.epsg, stored.rms_error_m, stored.image_size) == (
        fitted.epsg,
        fitted.rms_error_m,
        fitted.image_size,
    )


def test_a_stored_homography_that_is_not_a_matrix_is_refused() -> None:
    with pytest.raises(CalibrationError, match="not a finite 3×3 matrix"):
        stored_calibration(
            camera_code="T-1",
            image_size=(WIDTH, HEIGHT),
            control_points=control_points(),
            homography=[[1.0, 0.0], [0.0, 1.0]],
            rms_error_m=0.5,
        )
