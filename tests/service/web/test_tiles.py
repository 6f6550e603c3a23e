"""The imagery basemap: XYZ PNG tiles warped from the stored scenes, newest on top."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image

from service.web.tiles import TILE_SIZE
from tests.service.web.conftest import MapApp
from tests.service.web.world import scene_bounds_lonlat

pytestmark = pytest.mark.db
ZOOM = 17  # about 1.2 m per pixel here: the 512 m scenes span a few tiles


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int, float, float]:
    """The slippy-map tile holding (lon, lat), and the point's pixel column and row in it."""
    n = 2**z
    fx = (lon + 180) / 360 * n
    fy = (1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n
    x, y = int(fx), int(fy)
    return x, y, (fx - x) * TILE_SIZE, (fy - y) * TILE_SIZE


def quicklook(reflectance: float) -> int:
    """The expected 8-bit value of a reflectance (gain 3, gamma 2.2, as the README previews)."""
    return round(min(reflectance * 3, 1) ** (1 / 2.2) * 255)


def get_tile(app: MapApp, z: int, x: int, y: int, who: str = "admin", **params: object):
    return app.http.get(f"/v1/tiles/{z}/{x}/{y}.png", headers=app.auth(who), params=params)


def pixels(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert image.size == (TILE_SIZE, TILE_SIZE)
    return np.asarray(image.convert("RGBA"))


def centre_tile(z: int = ZOOM) -> tuple[int, int]:
    west, south, east, north = scene_bounds_lonlat()
    x, y, _, _ = tile_of((west + east) / 2, (south + north) / 2, z)
    return x, y


def test_a_tile_inside_the_imagery_shows_the_newest_scene_in_true_colour(map_app: MapApp) -> None:
    # The newer scene is green (reflectance 0.05, 0.20, 0.05) over the older red one.
    rgba = pixels(get_tile(map_app, ZOOM, *centre_tile()))
    assert (rgba[..., 3] == 255).all()
    expected = [quicklook(0.05), quicklook(0.20), quicklook(0.05)]
    assert np.abs(rgba[..., :3].astype(int) - expected).max() <= 2


def test_one_scene_can_be_asked_for_by_id(map_app: MapApp) -> None:
    before = map_app.world.scene_ids["before"]
    rgba = pixels(get_tile(map_app, ZOOM, *centre_tile(), scene=before))
    expected = [quicklook(0.20), quicklook(0.05), quicklook(0.05)]
    assert np.abs(rgba[..., :3].astype(int) - expected).max() <= 2


def test_the_mosaic_fills_the_newest_scenes_nodata_from_the_older_scene(map_app: MapApp) -> None:
    # The newer scene has no data in its left quarter (64 of 256 columns, 128 m).
    west, south, east, north = scene_bounds_lonlat()
    x, y, column, _ = tile_of(west + (east - west) * 0.1, (south + north) / 2, ZOOM)
    rgba = pixels(get_tile(map_app, ZOOM, x, y))
    pixel = rgba[TILE_SIZE // 2, int(column)]
    assert pixel[3] == 255
    assert abs(int(pixel[0]) - quicklook(0.20)) <= 2  # red: the older scene shows through


def test_the_edge_of_the_imagery_is_transparent_beyond_it(map_app: MapApp) -> None:
    _west, south, east, north = scene_bounds_lonlat()
    x, y, column, _ = tile_of(east, (south + north) / 2, ZOOM)
    alpha = pixels(get_tile(map_app, ZOOM, x, y))[TILE_SIZE // 2, :, 3]
    edge = round(column)
    assert (alpha[: edge - 2] == 255).all()
    assert (alpha[edge + 2 :] == 0).all()


def test_a_tile_without_imagery_is_an_empty_transparent_png(map_app: MapApp) -> None:
    x, y, _, _ = tile_of(121.5, 31.5, ZOOM)
    rgba = pixels(get_tile(map_app, ZOOM, x, y))
    assert (rgba[..., 3] == 0).all()


def test_tiles_carry_an_etag_and_a_repeat_request_gets_304(map_app: MapApp) -> None:
    first = get_tile(map_app, ZOOM, *centre_tile())
    etag = first.headers["etag"]
    assert first.headers["cache-control"].startswith("private")
    again = map_app.http.get(
        f"/v1/tiles/{ZOOM}/{'/'.join(map(str, centre_tile()))}.png",
        headers=map_app.auth("admin") | {"If-None-Match": etag},
    )
    assert again.status_code == 304
    assert again.content == b""
    other = get_tile(map_app, ZOOM, *centre_tile(), scene=map_app.world.scene_ids["before"])
    assert other.headers["etag"] != etag  # another scene, another tile


def test_a_zoomed_out_tile_still_shows_the_imagery(map_app: MapApp) -> None:
    rgba = pixels(get_tile(map_app, 12, *centre_tile(12)))
    covered = rgba[..., 3] == 255
    assert 0 < covered.sum() < TILE_SIZE * TILE_SIZE / 4  # a 512 m patch in a ~9.8 km tile


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("/v1/tiles/3/8/0.png", "x and y run from 0 to 7"),
        ("/v1/tiles/25/0/0.png", "z"),
        ("/v1/tiles/3/-1/0.png", "x"),
    ],
)
def test_tiles_that_do_not_exist_are_a_422_that_says_why(
    map_app: MapApp, path: str, words: str
) -> None:
    response = map_app.http.get(path, headers=map_app.auth("admin"))
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert words in response.json()["detail"]


def test_an_unknown_scene_is_a_404_that_names_it(map_app: MapApp) -> None:
    response = get_tile(map_app, ZOOM, *centre_tile(), scene=987654321)
    assert response.status_code == 404
    assert "987654321" in response.json()["detail"]


def test_tiles_need_an_api_key(map_app: MapApp) -> None:
    response = map_app.http.get(f"/v1/tiles/{ZOOM}/{'/'.join(map(str, centre_tile()))}.png")
    assert response.status_code == 401
