"""Field photos through the API: stored and served without metadata, placed, scoped, hardened."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import pytest
from httpx import Response
from PIL import Image

from models import Evidence
from service.db import transaction
from service.ingest.store import object_path
from tests.service.api.conftest import World
from tests.service.api.test_transitions import assert_problem
from tests.service.cases.photo_files import (
    LAT,
    LON,
    SECRETS,
    field_photo,
    segments,
    with_declared_size,
)

JPEG = {"Content-Type": "image/jpeg"}


def upload(world: World, who: str, case_id: int, body: bytes, **params: Any) -> Response:
    return world.http.post(
        f"/v1/cases/{case_id}/evidence",
        content=body,
        params=params,
        headers={**world.auth(who), **JPEG},
    )


def assert_clean(jpeg: bytes) -> None:
    """Nothing but the pixels: no EXIF (so no GPS IFD, no maker note), XMP, ICC or comment."""
    assert [m for m in segments(jpeg) if 0xE1 <= m <= 0xEF or m == 0xFE] == []
    for marker in (b"Exif\x00", b"http://ns.adobe.com/xap", b"ICC_PROFILE", *SECRETS):
        assert marker not in jpeg
    image = Image.open(io.BytesIO(jpeg))
    assert dict(image.getexif()) == {} and "comment" not in image.info


def test_a_photo_is_placed_from_its_exif_and_kept_without_any_metadata(world: World) -> None:
    case_id = world.add_case("in")
    original = field_photo()
    assert all(secret in original for secret in SECRETS)  # the test photo carries them

    response = upload(world, "inspector_a", case_id, original, caption="shed on the north edge")

    assert response.status_code == 201, response.text
    read = response.json()
    assert read["kind"] == "field_photo" and read["note"] == "shed on the north edge"
    assert read["lon"] == pytest.approx(LON) and read["lat"] == pytest.approx(LAT)
    assert datetime.fromisoformat(read["taken_at"]) == datetime(2024, 6, 2, 2, 30, tzinfo=UTC)
    location = response.headers["location"]
    assert location == f"/v1/cases/{case_id}/evidence/{read['id']}"
    with transaction(world.factory) as session:
        row = session.get(Evidence, read["id"])
        assert row is not None
        stored = object_path(world.settings.data_dir, row.storage_uri).read_bytes()
    assert_clean(stored)

    served = world.http.get(location, headers=world.auth("inspector_a"))
    assert served.status_code == 200 and served.headers["content-type"] == "image/jpeg"
    assert served.content == stored
    assert "private" in served.headers["cache-control"]
    upright = Image.open(io.BytesIO(served.content)).convert("RGB")
    assert upright.size == (32, 64)  # orientation 6 applied: a portrait photo
    top, bottom = upright.getpixel((16, 8)), upright.getpixel((16, 56))
    assert isinstance(top, tuple) and isinstance(bottom, tuple)
    assert top[0] > 200 > top[2] and bottom[2] > 200 > bottom[0]  # red on top, as it was held

    detail = world.http.get(f"/v1/cases/{case_id}", headers=world.auth("inspector_a")).json()
    assert [e["id"] for e in detail["evidence"]] == [read["id"]]
    event = detail["history"][-1]
    assert event["action"] == "evidence_attached" and event["actor"] == world.names["inspector_a"]
    assert event["payload"]["sha256"] == read["sha256"]
    assert event["payload"]["position_source"] == event["payload"]["time_source"] == "exif"


def test_the_same_photo_twice_is_attached_once(world: World) -> None:
    case_id = world.add_case("in")
    photo = field_photo(seed=1)
    first = upload(world, "inspector_a", case_id, photo)
    again = upload(world, "inspector_a", case_id, photo)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    detail = world.http.get(f"/v1/cases/{case_id}", headers=world.auth("admin")).json()
    assert len(detail["evidence"]) == 1


def test_position_and_time_may_come_from_the_query(world: World) -> None:
    case_id = world.add_case("in")
    bare = field_photo(gps=False, taken=None, seed=2)
    response = upload(
        world, "monitor", case_id, bare, lon=120.051, lat=30.052,
        taken_at="2024-06-03T09:00:00+08:00",
    )  # fmt: skip
    assert response.status_code == 201, response.text
    read = response.json()
    assert (read["lon"], read["lat"]) == (120.051, 30.052)
    assert datetime.fromisoformat(read["taken_at"]) == datetime(2024, 6, 3, 1, 0, tzinfo=UTC)
    history = world.http.get(f"/v1/cases/{case_id}", headers=world.auth("monitor")).json()
    payload = history["history"][-1]["payload"]
    assert payload["position_source"] == payload["time_source"] == "client"


def test_a_camera_time_without_offset_is_read_in_the_configured_zone(world: World) -> None:
    case_id = world.add_case("in")
    response = upload(world, "inspector_a", case_id, field_photo(offset=None, seed=3))
    assert response.status_code == 201, response.text
    taken = datetime.fromisoformat(response.json()["taken_at"])
    assert taken == datetime(2024, 6, 2, 2, 30, tzinfo=UTC)  # 10:30 in Asia/Shanghai


@pytest.mark.parametrize(
    ("photo", "params", "fragment"),
    [
        (field_photo(gps=False, seed=4), {}, "no GPS position"),
        (field_photo(taken=None, seed=5), {}, "no capture time"),
        (field_photo(gps=False, seed=6), {"lon": 120.05}, "lon and lat together"),
        (field_photo(seed=7), {"taken_at": "2999-01-01T00:00:00Z"}, "in the future"),
        (field_photo(seed=8), {"lat": 95, "lon": 120}, "lat"),
    ],
)
def test_a_photo_without_place_or_time_is_refused(
    world: World, photo: bytes, params: dict[str, Any], fragment: str
) -> None:
    case_id = world.add_case("in")
    response = upload(world, "inspector_a", case_id, photo, **params)
    assert_problem(response, 422, fragment)
    detail = world.http.get(f"/v1/cases/{case_id}", headers=world.auth("admin")).json()
    assert detail["evidence"] == []


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (_png(), 415, "JPEG"),
        (b"", 422, "empty"),
        (field_photo(seed=9)[:400], 422, "header cannot be read"),
        (field_photo(size=(256, 128), seed=9)[:-200], 422, "truncated or corrupt"),
        (with_declared_size(field_photo(seed=10), 60_000, 60_000), 413, "absurd size"),
        (with_declared_size(field_photo(seed=11), 9_000, 8_000), 413, "9000×8000 pixels"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 64, 422, "cannot be read"),
    ],
)
def test_bad_uploads_get_a_specific_problem(
    world: World, body: bytes, status: int, fragment: str
) -> None:
    case_id = world.add_case("in")
    assert_problem(upload(world, "inspector_a", case_id, body), status, fragment)


def test_an_upload_over_the_size_limit_is_refused_while_streaming(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    case_id = world.add_case("in")
    monkeypatch.setattr(world.settings, "max_evidence_bytes", 1_000)
    photo = field_photo(seed=12)
    assert len(photo) > 1_000

    def chunks() -> Any:
        yield photo  # no Content-Length: only the streamed count can stop it

    response = world.http.post(
        f"/v1/cases/{case_id}/evidence",
        content=chunks(),
        headers={**world.auth("inspector_a"), **JPEG},
    )
    assert_problem(response, 413, "limit of 1000 bytes")


def test_another_jurisdiction_neither_uploads_nor_sees_the_photo(world: World) -> None:
    case_id = world.add_case("in")
    refused = upload(world, "inspector_b", case_id, field_photo(seed=13))
    assert_problem(refused, 404, "not found among the cases you can see")
    shown = upload(world, "inspector_a", case_id, field_photo(seed=14))
    location = shown.headers["location"]
    assert world.http.get(location, headers=world.auth("inspector_b")).status_code == 404
    assert world.http.get(location, headers=world.auth("analyst")).status_code == 200
    other_case = world.add_case("in")  # the evidence id under another case's path
    wrong = location.replace(f"/cases/{case_id}/", f"/cases/{other_case}/")
    assert_problem(world.http.get(wrong, headers=world.auth("admin")), 404, "has no evidence")


def test_analysts_and_ingest_clients_may_not_upload(world: World) -> None:
    case_id = world.add_case("in")
    for who in ("analyst", "ingest"):
        assert upload(world, who, case_id, field_photo(seed=15)).status_code == 403
