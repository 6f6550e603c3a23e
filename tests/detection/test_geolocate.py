"""Camera geolocation: fitting, refusing bad calibrations, projecting, footprints and areas."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from shapely.geometry import LineString, Polygon

from detection.errors import CalibrationError
from detection.geolocate import (
    GeolocateParams,
    calibration_from_mapping,
    ground_area_m2,
    ground_footprint,
    image_geometry_to_lonlat,
    image_to_lonlat,
    lonlat_to_image,
    parcels_in_image,
    watched_ground,
    watched_image_region,
)
from tests.detection.test_camera_scene import Scene


@pytest.fixture(scope="module")
def scene() -> Scene:
    return Scene()


def test_exact_control_points_fit_with_near_zero_rms(scene: Scene) -> None:
    calibration = calibration_from_mapping(scene.calibration_mapping())
    assert calibration.rms_error_m < 0.01
    assert calibration.epsg == 32651  # UTM 51N for 120.1° E


def test_projecting_ground_points_recovers_their_pixels(scene: Scene) -> None:
    calibration = calibration_from_mapping(scene.calibration_mapping())
    pixels = np.array([[100.0, 400.0], [960.0, 700.0], [1800.0, 1050.0]])
    lonlat = scene.lonlat(scene.ground_of_pixels(pixels))
    np.testing.assert_allclose(lonlat_to_image(calibration, lonlat), pixels, atol=0.05)
    np.testing.assert_allclose(image_to_lonlat(calibration, pixels), lonlat, atol=1e-8)


def test_three_control_points_are_refused(scene: Scene) -> None:
    data = scene.calibration_mapping()
    data["control_points"] = data["control_points"][:3]
    with pytest.raises(CalibrationError, match="at least 4"):
        calibration_from_mapping(data)


def test_collinear_control_points_are_refused(scene: Scene) -> None:
    data = scene.calibration_mapping()
    # Points 0, 1 and 2 lie on one image row; 3 more along one ground line make it degenerate.
    data["control_points"] = data["control_points"][:3] * 2
    with pytest.raises(CalibrationError, match="collinear"):
        calibration_from_mapping(data)


def test_four_points_with_three_on_a_line_are_refused(scene: Scene) -> None:
    data = scene.calibration_mapping()
    points = data["control_points"]
    data["control_points"] = [points[0], points[1], points[2], points[4]]
    with pytest.raises(CalibrationError, match="one line"):
        calibration_from_mapping(data)


def test_a_calibration_above_the_rms_limit_is_refused(scene: Scene) -> None:
    data = scene.calibration_mapping()
    shifted = copy.deepcopy(data)
    shifted["control_points"][4]["lat"] += 0.0003  # about 33 m north
    with pytest.raises(CalibrationError, match="RMS error"):
        calibration_from_mapping(shifted, params=GeolocateParams(max_rms_m=5.0))
    loose = calibration_from_mapping(shifted, params=GeolocateParams(max_rms_m=50.0))
    assert 5.0 < loose.rms_error_m < 50.0


def test_swapped_lon_lat_is_refused_with_a_hint(scene: Scene) -> None:
    data = scene.calibration_mapping()
    for point in data["control_points"]:
        point["lon"], point["lat"] = point["lat"], point["lon"]
    with pytest.raises(CalibrationError):
        calibration_from_mapping(data)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("camera_id", "", "camera_id"),
        ("image_size", [1920], "image_size"),
        ("control_points", "none", "control_points"),
        ("farmland", {"type": "Point", "coordinates": [120.1, 30.2]}, "Polygon"),
        ("parcels", {"type": "Polygon", "coordinates": []}, "a list of GeoJSON"),
        ("parcels", [{"type": "Point", "coordinates": [120.1, 30.2]}], r'"parcels"\[0\]'),
    ],
)
def test_malformed_calibration_fields_are_named(
    scene: Scene, field: str, value: object, message: str
) -> None:
    data = scene.calibration_mapping()
    data[field] = value
    with pytest.raises(CalibrationError, match=message):
        calibration_from_mapping(data)


def _ground_polygon(scene: Scene, corners: list[tuple[float, float]]) -> dict[str, object]:
    """GeoJSON of a polygon given by its corners in metres from the tower foot."""
    ring = scene.lonlat(np.array(corners, dtype=np.float64))
    return {"type": "Polygon", "coordinates": [[*map(list, ring), list(ring[0])]]}


def test_parcels_are_read_in_order_and_drawn_where_the_preset_sees_them(scene: Scene) -> None:
    # Two 25 m × 40 m parcels: one 200 m north of the tower, one behind it.
    ahead = [(-10.0, 190.0), (15.0, 190.0), (15.0, 230.0), (-10.0, 230.0)]
    behind = [(0.0, -90.0), (25.0, -90.0), (25.0, -50.0), (0.0, -50.0)]
    data = scene.calibration_mapping()
    data["parcels"] = [_ground_polygon(scene, ahead), _ground_polygon(scene, behind)]

    calibration = calibration_from_mapping(data)

    assert len(calibration.parcels) == 2
    assert ground_area_m2(calibration, calibration.parcels[0]) == pytest.approx(1000.0, rel=0.01)
    seen, unseen = parcels_in_image(calibration)
    expected = Polygon(scene.pixels_of_ground(np.array(ahead)))
    assert seen.symmetric_difference(expected).area < 0.01 * expected.area
    assert unseen.is_empty
    assert calibration_from_mapping(scene.calibration_mapping()).parcels == ()


def test_footprint_covers_the_ground_in_view_up_to_the_range(scene: Scene) -> None:
    calibration = calibration_from_mapping(scene.calibration_mapping(farmland=False))
    params = GeolocateParams(max_range_m=1000.0, max_pixel_area_m2=math.inf)
    footprint = ground_footprint(calibration, params=params)
    near = scene.lonlat(np.array([[0.0, 100.0]]))[0]
    beyond = scene.lonlat(np.array([[0.0, 1500.0]]))[0]
    behind = scene.lonlat(np.array([[0.0, -50.0]]))[0]
    assert footprint.contains(Polygon.from_bounds(*near, *(near + 1e-5)))
    assert not footprint.intersects(Polygon.from_bounds(*beyond, *(beyond + 1e-5)))
    assert not footprint.intersects(Polygon.from_bounds(*behind, *(behind + 1e-5)))
    assert 1e5 < ground_area_m2(calibration, footprint) < np.pi * 1000.0**2


def _pixel_area_m2(scene: Scene, north_m: float) -> float:
    """Ground covered by the full-resolution pixel that shows (0, north_m)."""
    col, row = scene.pixels_of_ground(np.array([[0.0, north_m]]))[0]
    corners = np.array([[col, row], [col + 1, row], [col + 1, row + 1], [col, row + 1]])
    return Polygon(scene.ground_of_pixels(corners)).area


@pytest.mark.parametrize("max_pixel_area_m2", [0.3, 0.625, 2.0])
def test_footprint_ends_where_a_pixel_covers_more_ground_than_the_limit(
    scene: Scene, max_pixel_area_m2: float
) -> None:
    calibration = calibration_from_mapping(scene.calibration_mapping(farmland=False))
    params = GeolocateParams(max_pixel_area_m2=max_pixel_area_m2)
    footprint = ground_footprint(calibration, params=params)
    # Straight ahead, the farthest ground in the footprint is where a pixel reaches the limit.
    ahead = LineString(scene.lonlat(np.array([[0.0, 60.0], [0.0, 5000.0]])))
    reach = np.array(ahead.intersection(footprint).coords)
    far_north = max(scene.ground_of_pixels(lonlat_to_image(calibration, reach))[:, 1])
    assert _pixel_area_m2(scene, far_north) == pytest.approx(max_pixel_area_m2, rel=0.02)
    assert _pixel_area_m2(scene, 0.9 * far_north) < max_pixel_area_m2
    unlimited = ground_footprint(calibration, params=GeolocateParams(max_pixel_area_m2=math.inf))
    assert footprint.area < unlimited.area
    assert unlimited.buffer(1e-9).contains(footprint)


def test_a_view_whose_every_pixel_covers_too_much_ground_is_refused(scene: Scene) -> None:
    calibration = calibration_from_mapping(scene.calibration_mapping(farmland=False))
    with pytest.raises(CalibrationError, match=r"covers more than 0\.001 m²"):
        ground_footprint(calibration, params=GeolocateParams(max_pixel_area_m2=0.001))


def test_watched_ground_is_the_farmland_in_view(scene: Scene) -> None:
    calibration = calibration_from_mapping(scene.calibration_mapping())
    watched = watched_ground(calibration)
    # The farmland is 800 m × 630 m; the camera sees a wedge of it.
    assert 0 < ground_area_m2(calibration, watched) < 800 * 630
    region = watched_image_region(calibration)
    assert region.bounds[3] <= 1080 and region.bounds[1] > 200  # below the horizon


def test_a_pixel_rectangle_maps_to_its_ground_area(scene: Scene) -> None:
    calibration = calibration_from_mapping(scene.calibration_mapping())
    corners = np.array([[-10.0, 190.0], [10.0, 190.0], [10.0, 210.0], [-10.0, 210.0]])
    outline = Polygon(scene.pixels_of_ground(corners))
    ground = image_geometry_to_lonlat(calibration, outline)
    assert ground_area_m2(calibration, ground) == pytest.approx(400.0, rel=0.01)
