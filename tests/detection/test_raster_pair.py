"""The raster-pair detector on synthetic scenes with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from shapely.geometry import box

from detection.align import estimate_shift
from detection.raster_pair import detect_changes
from detection.rs_params import M2_PER_MU, RasterDetectorParams
from tests.detection.rs_scenes import CRS, PIXEL_M, ROLES, ROOF, TRANSFORM, field_scene, paint

ROOF_ROWS, ROOF_COLS = slice(60, 75), slice(40, 60)  # 15 × 20 px = 1200 m²
ROOF_AREA_M2 = 15 * 20 * PIXEL_M**2


def detect(before: np.ndarray, after: np.ndarray, **options: object):
    return detect_changes(before, after, transform=TRANSFORM, crs=CRS, band_roles=ROLES, **options)  # type: ignore[arg-type]


def test_a_new_building_is_found_with_its_area_type_and_place() -> None:
    before = field_scene()
    after = paint(before, ROOF_ROWS, ROOF_COLS, ROOF)
    result = detect(before, after)
    assert len(result.objects) == 1
    found = result.objects[0]
    assert found.area_m2 == pytest.approx(ROOF_AREA_M2, rel=0.15)
    assert found.area_mu == pytest.approx(found.area_m2 / M2_PER_MU)
    assert found.change_type in {"building", "hardening"}
    assert not found.benign
    assert 0.5 <= found.confidence <= 1.0
    x, y = found.geometry.centroid.coords[0]
    col, row = ~TRANSFORM @ (x, y)
    assert row == pytest.approx(67.5, abs=2) and col == pytest.approx(50, abs=2)
    assert found.indices_after["ndvi"] < found.indices_before["ndvi"]


def test_change_outside_farmland_is_dropped_and_inside_is_kept() -> None:
    before = field_scene()
    after = paint(before, ROOF_ROWS, ROOF_COLS, ROOF)
    after = paint(after, ROOF_ROWS, slice(180, 200), ROOF)
    left_half = box(*(TRANSFORM @ (0, 256)), *(TRANSFORM @ (128, 0)))
    result = detect(before, after, farmland=[left_half])
    assert len(result.objects) == 1
    assert result.objects[0].geometry.within(left_half)
    assert not result.mask[:, 128:].any()


def test_cloud_and_nodata_are_never_change() -> None:
    before = field_scene()
    after = paint(before, ROOF_ROWS, ROOF_COLS, ROOF)
    cloudy = np.ones(before.shape[:2], dtype=bool)
    cloudy[50:90, 30:70] = False
    result = detect(before, after, after_valid=cloudy)
    assert result.objects == ()
    assert not result.mask.any()


def test_changes_smaller_than_the_minimum_mapping_unit_are_not_reported() -> None:
    before = field_scene()
    after = paint(before, slice(100, 103), slice(100, 103), ROOF)  # 9 px = 36 m²
    assert detect(before, after).objects == ()
    small_unit = detect(before, after, params=RasterDetectorParams(min_mapping_unit_m2=20))
    assert len(small_unit.objects) == 1


def test_a_known_shift_is_recovered() -> None:
    before = field_scene(seed=3)[:, :, 1]
    shifted = np.roll(before, (2, -1), axis=(0, 1))
    dy, dx = estimate_shift(before, shifted, max_shift_px=5, min_shift_px=0.3)
    assert (dy, dx) == pytest.approx((-2.0, 1.0), abs=0.1)


def test_a_misregistered_after_image_gives_no_change() -> None:
    before = field_scene(seed=4)
    after = np.roll(before, (1, 2), axis=(0, 1))
    result = detect(before, after)
    assert result.shift_px == pytest.approx((-1.0, -2.0), abs=0.1)
    assert result.objects == ()


def test_an_after_image_on_another_grid_is_reprojected_onto_the_before_grid() -> None:
    before = field_scene()
    after = paint(before, ROOF_ROWS, ROOF_COLS, ROOF)
    # The after image as delivered: 2 columns cropped off its left edge.
    cropped_transform = TRANSFORM @ TRANSFORM.translation(2, 0)
    result = detect(before, after[:, 2:], after_transform=cropped_transform, after_crs=CRS)
    assert result.mask.shape == before.shape[:2]
    assert len(result.objects) == 1
    assert result.objects[0].area_m2 == pytest.approx(ROOF_AREA_M2, rel=0.15)
    assert not result.mask[:, :2].any()


def test_ploughing_is_reported_as_benign() -> None:
    before = field_scene()
    soil = np.array([500.0, 600.0, 700.0, 900.0], dtype=np.float32)
    after = paint(before, slice(20, 120), slice(20, 120), soil)
    result = detect(before, after)
    assert result.objects
    assert {o.change_type for o in result.objects} == {"ploughing"}
    assert all(o.benign for o in result.objects)


def test_ungeoreferenced_images_are_measured_with_the_given_pixel_size() -> None:
    before = field_scene()
    after = paint(before, ROOF_ROWS, ROOF_COLS, ROOF)
    params = RasterDetectorParams(pixel_size_m=0.5)
    result = detect_changes(before[:, :, :3], after[:, :, :3], params=params)
    assert len(result.objects) == 1
    assert result.objects[0].area_m2 == pytest.approx(15 * 20 * 0.25, rel=0.15)


def test_change_over_a_whole_parcel_is_farm_work_and_a_patch_in_a_parcel_is_not() -> None:
    before = field_scene()
    soil = np.array([500.0, 600.0, 700.0, 900.0], dtype=np.float32)
    after = paint(before, slice(0, 128), slice(0, 128), soil)  # parcel A ploughed
    after = paint(after, slice(180, 195), slice(180, 200), ROOF)  # a roof in parcel B
    parcel_a = box(*(TRANSFORM @ (0, 128)), *(TRANSFORM @ (128, 0)))
    parcel_b = box(*(TRANSFORM @ (128, 256)), *(TRANSFORM @ (256, 128)))
    result = detect(before, after, farmland=[parcel_a, parcel_b])
    in_a = [o for o in result.objects if o.geometry.within(parcel_a)]
    in_b = [o for o in result.objects if o.geometry.within(parcel_b)]
    assert in_a and all(o.benign and o.parcel_fraction >= 0.3 for o in in_a)
    assert [o.change_type for o in in_b] == ["building"]
    assert not in_b[0].benign and in_b[0].parcel_fraction < 0.1


STUBBLE = np.array([800.0, 1000.0, 1300.0, 2200.0], dtype=np.float32)
PARCEL_A = box(*(TRANSFORM @ (0, 128)), *(TRANSFORM @ (128, 0)))
PARCEL_B = box(*(TRANSFORM @ (128, 256)), *(TRANSFORM @ (256, 128)))


def test_a_shed_put_up_during_harvest_stands_out_from_its_harvested_parcel() -> None:
    before = field_scene(seed=5)
    after = paint(before, slice(0, 128), slice(0, 128), STUBBLE)  # parcel A harvested
    shed = (slice(40, 52), slice(50, 66))  # 12 × 16 px = 768 m² inside A
    after[shed] = paint(before, *shed, ROOF)[shed]
    result = detect(before, after, farmland=[PARCEL_A, PARCEL_B])
    suspects = [o for o in result.objects if not o.benign]
    assert [o.change_type for o in suspects] == ["building"]
    assert suspects[0].area_m2 == pytest.approx(12 * 16 * PIXEL_M**2, rel=0.2)
    farm_work = [o for o in result.objects if o.benign]
    assert sum(o.area_m2 for o in farm_work) > 0.8 * PARCEL_A.area


def test_a_building_standing_on_both_dates_is_not_change_when_its_parcel_is_harvested() -> None:
    field = field_scene(seed=6)
    shed = (slice(40, 52), slice(50, 66))
    before = field.copy()
    before[shed] = paint(field, *shed, ROOF)[shed]
    after = paint(field, slice(0, 128), slice(0, 128), STUBBLE)
    after[shed] = before[shed]
    result = detect(before, after, farmland=[PARCEL_A, PARCEL_B])
    assert result.objects
    assert all(o.benign for o in result.objects)


def test_a_bright_cloud_fringe_the_cloud_mask_missed_is_not_change() -> None:
    before = field_scene(seed=7)
    haze = np.array([1500.0, 1500.0, 1500.0, 1500.0], dtype=np.float32)
    after = before.copy()
    after[60:200, 100:106] += haze  # the thin edge of a cloud, just outside its mask
    clear = np.ones(before.shape[:2], dtype=bool)
    clear[60:200, 106:200] = False  # the cloud as masked
    assert not detect(before, after, after_valid=clear).mask.any()
    unbuffered = RasterDetectorParams(invalid_buffer_m=0.0)
    assert detect(before, after, after_valid=clear, params=unbuffered).mask[60:200, 100:106].any()


def test_tiles_on_several_threads_give_the_single_thread_result() -> None:
    before = field_scene(seed=9)
    after = paint(before, slice(0, 128), slice(0, 128), STUBBLE)
    after = paint(after, slice(60, 75), slice(100, 120), ROOF)  # across 64-px tile edges
    after = paint(after, slice(150, 170), slice(150, 175), ROOF)
    clear = np.ones(before.shape[:2], dtype=bool)
    clear[180:230, 20:90] = False
    options = {"farmland": [PARCEL_A, PARCEL_B], "after_valid": clear}
    params = RasterDetectorParams(tile_px=64)
    alone = detect(before, after, params=params, **options)
    threaded = detect(before, after, params=params, threads=3, **options)
    assert len(alone.objects) >= 2
    np.testing.assert_array_equal(threaded.score, alone.score)
    np.testing.assert_array_equal(threaded.mask, alone.mask)
    assert [(o.geometry.wkb, o.change_type, o.confidence) for o in threaded.objects] == [
        (o.geometry.wkb, o.change_type, o.confidence) for o in alone.objects
    ]


def test_parcel_judgement_and_cloud_buffer_do_not_depend_on_tiling() -> None:
    before = field_scene(seed=8)
    after = paint(before, slice(0, 128), slice(0, 128), STUBBLE)
    shed = (slice(60, 75), slice(100, 120))  # across the edge of 64-px tiles
    after[shed] = paint(before, *shed, ROOF)[shed]
    after = paint(after, slice(150, 170), slice(150, 175), ROOF)
    clear = np.ones(before.shape[:2], dtype=bool)
    clear[180:230, 20:90] = False
    options = {"farmland": [PARCEL_A, PARCEL_B], "after_valid": clear}
    whole = detect(before, after, params=RasterDetectorParams(tile_px=4096), **options)
    tiled = detect(before, after, params=RasterDetectorParams(tile_px=64), **options)
    assert any(not o.benign for o in whole.objects)
    np.testing.assert_array_equal(tiled.mask, whole.mask)
    assert sorted((o.change_type, o.benign, o.pixels) for o in tiled.objects) == sorted(
        (o.change_type, o.benign, o.pixels) for o in whole.objects
    )
