"""The page's overlays and case imagery: only what the caller's jurisdictions allow."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from service.web.chips import CHIP_SIZE, OUTLINE
from tests.service.web.conftest import MapApp
from tests.service.web.world import OLD_WEST_ORIGIN, scene_bounds_lonlat

pytestmark = pytest.mark.db


def geojson(app: MapApp, path: str, who: str) -> dict:
    response = app.http.get(path, headers=app.auth(who))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/geo+json"
    return response.json()


def codes(collection: dict, key: str = "code") -> set[str]:
    return {f["properties"][key] for f in collection["features"]}


def test_cameras_and_viewsheds_are_limited_to_the_callers_jurisdictions(map_app: MapApp) -> None:
    mine = geojson(map_app, "/v1/map/cameras.geojson", "inspector_a")
    parts = sorted(f["properties"]["part"] for f in mine["features"])
    assert parts == ["tower", "viewshed"]
    assert all(code.startswith("cam-A-") for code in codes(mine))
    theirs = geojson(map_app, "/v1/map/cameras.geojson", "inspector_b")
    assert {f["properties"]["health"] for f in theirs["features"]} == {"no_signal"}
    everyone = geojson(map_app, "/v1/map/cameras.geojson", "admin")
    assert len(codes(everyone) & (codes(mine) | codes(theirs))) == 2


def test_jurisdictions_overlay_shows_only_the_callers_own(map_app: MapApp) -> None:
    mine = geojson(map_app, "/v1/map/jurisdictions.geojson", "inspector_a")
    assert [f["properties"]["name"] for f in mine["features"]] == ["District A"]


def test_legal_layer_features_are_cut_to_the_callers_area(map_app: MapApp) -> None:
    layers = map_app.http.get("/v1/map/layers", headers=map_app.auth("inspector_a")).json()
    assert "permanent_basic_farmland" in {layer["kind"] for layer in layers}
    path = "/v1/map/layers/permanent_basic_farmland.geojson"
    assert codes(geojson(map_app, path, "inspector_a"), "source_ref") == {"in-a"}
    assert codes(geojson(map_app, path, "inspector_b"), "source_ref") == {"in-b"}
    assert {"in-a", "in-b"} <= codes(geojson(map_app, path, "admin"), "source_ref")


def test_a_layer_without_a_current_version_is_a_404_that_says_how_to_import(
    map_app: MapApp,
) -> None:
    response = map_app.http.get("/v1/map/layers/purple_line.geojson", headers=map_app.auth("admin"))
    assert response.status_code == 404
    assert "tianxun layers import" in response.json()["detail"]


@pytest.mark.parametrize(("days", "stale"), [(30, ["old_west"]), (150, ["old_west"]), (365, [])])
def test_ground_not_observed_lately_is_shaded_with_its_last_date(
    map_app: MapApp, days: int, stale: list[str]
) -> None:
    # Scenes 5, 90 and 200 days old; the 90-day one lies under the 5-day one, so only the
    # 200-day-old ground west of them has not been seen for 30 (or 150) days.
    found = geojson(map_app, f"/v1/map/unobserved.geojson?days={days}", "inspector_a")
    assert [f["properties"]["scene_id"] for f in found["features"]] == [
        map_app.world.scene_ids[label] for label in stale
    ]
    for feature in found["features"]:
        assert feature["properties"]["last_observed_at"] < "9999"


def test_the_signed_in_role_and_its_moves_are_described(map_app: MapApp) -> None:
    me = map_app.http.get("/v1/map/me", headers=map_app.auth("inspector_a")).json()
    assert me["role"] == "inspector"
    assert me["moves"]["dispatched"] == ["verifying"]
    assert me["moves"]["new"] == ["dismissed"]  # dispatching belongs to the centre
    west, _, east, _ = me["extent"]
    assert (west, east) == pytest.approx((120.00, 120.03))


def test_the_page_learns_where_the_imagery_basemap_has_tiles(map_app: MapApp) -> None:
    me = map_app.http.get("/v1/map/me", headers=map_app.auth("inspector_a")).json()
    west, south, east, north = me["imagery_extent"]
    _, new_south, new_east, new_north = scene_bounds_lonlat()
    old_west, old_south, _, old_north = scene_bounds_lonlat(OLD_WEST_ORIGIN)
    # Around both scene squares (the old one just west of the other), with no tile to spare.
    assert west <= old_west + 1e-6 and east >= new_east - 1e-6
    assert south <= min(new_south, old_south) + 1e-6 and north >= max(new_north, old_north) - 1e-6
    if map_app.settings.database_url.startswith("sqlite"):  # PostgreSQL is shared with others
        expected = (old_west, min(new_south, old_south), new_east, max(new_north, old_north))
        assert (west, south, east, north) == pytest.approx(expected, abs=1e-6)


def test_a_case_gets_a_before_and_after_scene_pair(map_app: MapApp) -> None:
    case_id = map_app.world.case_ids["a1"]
    pair = map_app.http.get(
        f"/v1/map/cases/{case_id}/imagery", headers=map_app.auth("inspector_a")
    ).json()
    assert pair["before"]["scene_id"] == map_app.world.scene_ids["before"]
    assert pair["after"]["scene_id"] == map_app.world.scene_ids["after"]


def test_a_chip_shows_the_scene_around_the_case_with_its_outline(map_app: MapApp) -> None:
    case_id = map_app.world.case_ids["a2"]
    scene = map_app.world.scene_ids["after"]
    response = map_app.http.get(
        f"/v1/map/cases/{case_id}/chip.png",
        params={"scene": scene},
        headers=map_app.auth("inspector_a"),
    )
    assert response.status_code == 200
    rgba = np.asarray(Image.open(io.BytesIO(response.content)).convert("RGBA"))
    assert rgba.shape == (CHIP_SIZE, CHIP_SIZE, 4)
    outline = (rgba == OUTLINE).all(axis=-1)
    assert outline[CHIP_SIZE // 4 : 3 * CHIP_SIZE // 4, CHIP_SIZE // 4 : 3 * CHIP_SIZE // 4].any()
    centre = rgba[CHIP_SIZE // 2, CHIP_SIZE // 2]
    assert centre[1] > centre[0]  # the newer scene is green


def test_case_imagery_of_another_jurisdiction_is_not_found(map_app: MapApp) -> None:
    case_id = map_app.world.case_ids["a1"]
    for path in (f"/v1/map/cases/{case_id}/imagery", f"/v1/map/cases/{case_id}/chip.png"):
        response = map_app.http.get(
            path,
            params={"scene": map_app.world.scene_ids["after"]},
            headers=map_app.auth("inspector_b"),
        )
        assert response.status_code == 404, path


def test_a_chip_of_a_scene_that_misses_the_case_is_a_422(map_app: MapApp) -> None:
    case_id = map_app.world.case_ids["b1"]  # outside the imagery
    response = map_app.http.get(
        f"/v1/map/cases/{case_id}/chip.png",
        params={"scene": map_app.world.scene_ids["after"]},
        headers=map_app.auth("admin"),
    )
    assert response.status_code == 422
    assert "does not cover" in response.json()["detail"]


def test_the_map_case_layer_is_lean_and_scoped(map_app: MapApp) -> None:
    mine = geojson(map_app, "/v1/map/cases.geojson", "inspector_a")
    world = map_app.world
    assert sorted(f["id"] for f in mine["features"]) == sorted(
        world.case_ids[k] for k in ("a1", "a2", "a3")
    )
    feature = next(f for f in mine["features"] if f["id"] == world.case_ids["a3"])
    assert feature["properties"] == {
        "id": world.case_ids["a3"],
        "code": feature["properties"]["code"],
        "status": "new",
        "priority": 40,
    }
    assert feature["geometry"]["type"] == "MultiPolygon"
    west, south, east, north = feature["bbox"]
    assert 0.0003 < east - west < 0.0005 and 0.0003 < north - south < 0.0005  # ~40 m
    theirs = geojson(map_app, "/v1/map/cases.geojson", "inspector_b")
    assert [f["id"] for f in theirs["features"]] == [world.case_ids["b1"]]


def test_the_map_case_points_are_bbox_centres_with_status_and_priority(map_app: MapApp) -> None:
    world = map_app.world
    outlines = geojson(map_app, "/v1/map/cases.geojson", "inspector_a")
    points = geojson(map_app, "/v1/map/case-points.geojson", "inspector_a")
    assert [f["id"] for f in points["features"]] == [f["id"] for f in outlines["features"]]
    for point, outline in zip(points["features"], outlines["features"], strict=True):
        west, south, east, north = outline["bbox"]
        assert point["geometry"]["type"] == "Point"
        assert point["geometry"]["coordinates"] == pytest.approx(
            [(west + east) / 2, (south + north) / 2], abs=1e-7
        )
        assert point["properties"] == {
            "id": outline["id"],
            "status": outline["properties"]["status"],
            "priority": outline["properties"]["priority"],
        }
    theirs = geojson(map_app, "/v1/map/case-points.geojson", "inspector_b")
    assert [f["id"] for f in theirs["features"]] == [world.case_ids["b1"]]


def test_the_map_case_layer_narrows_to_a_bbox(map_app: MapApp) -> None:
    everyone = geojson(map_app, "/v1/map/cases.geojson?bbox=120.04,30.17,120.06,30.19", "admin")
    assert map_app.world.case_ids["b1"] in {f["id"] for f in everyone["features"]}
    assert map_app.world.case_ids["a1"] not in {f["id"] for f in everyone["features"]}


def test_an_empty_bbox_is_refused_rather_than_read_as_everywhere(map_app: MapApp) -> None:
    for path in ("/v1/map/cases.geojson", "/v1/map/layers/permanent_basic_farmland.geojson"):
        response = map_app.http.get(f"{path}?bbox=", headers=map_app.auth("admin"))
        assert response.status_code == 422, path
        assert "four numbers" in response.json()["detail"]
