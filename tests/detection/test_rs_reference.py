"""The last clear look: a running per-pixel composite of the latest cloud-free observation."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shapely.geometry import box

from detection.raster_pair import detect_changes
from detection.rs_params import RasterDetectorParams
from detection.rs_reference import (
    NO_SOURCE,
    ClearReference,
    add_observation,
    fill_from_older,
    split_by_source,
)
from tests.detection.rs_scenes import CRS, ROLES, ROOF, TRANSFORM, field_scene, paint

PROPERTY_SETTINGS = settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
#: What a cloud looks like in the image: bright and flat.
CLOUD = np.array([7000.0, 7100.0, 7200.0, 7300.0], dtype=np.float32)


def clouded(image: np.ndarray, cloud: np.ndarray) -> np.ndarray:
    out = image.copy()
    out[cloud] = CLOUD
    return out


def composite(dates: list[tuple[np.ndarray, np.ndarray]], **kwargs) -> ClearReference:
    """The composite of (image, valid) dates, indexed 0, 1, ... in order."""
    reference = ClearReference.empty(*dates[0][0].shape)
    for index, (image, valid) in enumerate(dates):
        add_observation(reference, image, valid, index, **kwargs)
    return reference


def rectangle(shape: tuple[int, int], top: int, left: int, height: int, width: int) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[top : top + height, left : left + width] = True
    return mask


def test_a_pixel_clouded_on_the_last_date_takes_the_one_before():
    scene = field_scene(64, 64, seed=1)
    older, newer = scene, paint(scene, slice(0, 64), slice(0, 32), ROOF)
    cloud = rectangle((64, 64), 10, 10, 20, 30)
    reference = composite([(older, np.ones((64, 64), bool)), (clouded(newer, cloud), ~cloud)])
    np.testing.assert_array_equal(reference.source[cloud], 0)
    np.testing.assert_array_equal(reference.source[~cloud], 1)
    np.testing.assert_array_equal(reference.image[~cloud], newer[~cloud])
    # Same light on both dates: the older values are mapped (almost) onto themselves.
    np.testing.assert_allclose(reference.image[cloud], older[cloud], rtol=0.03)
    assert reference.valid.all()
    assert reference.sources() == [0, 1]


@PROPERTY_SETTINGS
@given(
    seed=st.integers(0, 10_000),
    clouds=st.lists(
        st.tuples(st.integers(0, 40), st.integers(0, 40), st.integers(1, 40), st.integers(1, 40)),
        min_size=2,
        max_size=4,
    ),
)
def test_every_pixel_comes_from_its_latest_clear_date(
    seed: int, clouds: list[tuple[int, int, int, int]]
) -> None:
    shape = (48, 48)
    scene = field_scene(*shape, seed=seed)
    masks = [rectangle(shape, *cloud) for cloud in clouds]
    reference = composite([(clouded(scene, mask), ~mask) for mask in masks])
    latest = np.full(shape, NO_SOURCE)
    for index, mask in enumerate(masks):
        latest[~mask] = index
    np.testing.assert_array_equal(reference.source, latest)
    np.testing.assert_array_equal(reference.valid, latest != NO_SOURCE)
    newest = ~masks[-1]
    np.testing.assert_array_equal(reference.image[newest], scene[newest])


@PROPERTY_SETTINGS
@given(
    seed=st.integers(0, 10_000),
    clouds=st.lists(
        st.tuples(st.integers(0, 40), st.integers(0, 40), st.integers(1, 40), st.integers(1, 40)),
        min_size=2,
        max_size=4,
    ),
    gain=st.floats(0.8, 1.25),
)
def test_filling_backwards_picks_what_adding_forwards_picks(
    seed: int, clouds: list[tuple[int, int, int, int]], gain: float
) -> None:
    shape = (48, 48)
    scene = field_scene(*shape, seed=seed)
    masks = [rectangle(shape, *cloud) for cloud in clouds]
    dates = [
        (clouded(np.round(scene * gain**index).astype(np.float32), mask), ~mask)
        for index, mask in enumerate(masks)
    ]
    forwards = composite(dates, buffer_px=1)
    backwards = ClearReference.empty(*scene.shape)
    for index in reversed(range(len(dates))):
        fill_from_older(backwards, *dates[index], index, buffer_px=1)
    np.testing.assert_array_equal(backwards.source, forwards.source)
    np.testing.assert_array_equal(backwards.valid, forwards.valid)
    seen = backwards.valid
    np.testing.assert_allclose(backwards.image[seen], forwards.image[seen], rtol=0.05)


def test_a_pixel_cloudy_on_every_date_stays_invalid():
    scene = field_scene(40, 40, seed=2)
    always = rectangle((40, 40), 5, 5, 10, 10)
    dates = [
        (clouded(scene, always | rectangle((40, 40), 0, 20, 20, 20)), ~always),
        (clouded(scene, always), ~always),
    ]
    reference = composite(dates)
    assert not reference.valid[always].any()
    np.testing.assert_array_equal(reference.source[always], NO_SOURCE)
    assert reference.valid[~always].all()


def test_nothing_is_taken_within_the_buffer_of_a_cloud():
    scene = field_scene(40, 40, seed=3)
    cloud = rectangle((40, 40), 15, 15, 6, 6)
    reference = composite(
        [(scene, np.ones((40, 40), bool)), (clouded(scene, cloud), ~cloud)], buffer_px=3
    )
    near = rectangle((40, 40), 12, 12, 12, 12)
    np.testing.assert_array_equal(reference.source[near], 0)
    np.testing.assert_array_equal(reference.source[~near], 1)


def test_windowed_and_whole_image_composites_are_identical():
    shape = (150, 90)
    scene = field_scene(*shape, seed=4)
    dates = [
        (clouded(scene * 1.2 + 40, mask), ~mask)
        for mask in (rectangle(shape, 10, 0, 80, 50), rectangle(shape, 70, 30, 70, 60))
    ]
    small = composite(dates, params=RasterDetectorParams(tile_px=64), buffer_px=2)
    whole = composite(dates, params=RasterDetectorParams(tile_px=4096), buffer_px=2)
    np.testing.assert_array_equal(small.image, whole.image)
    np.testing.assert_array_equal(small.source, whole.source)


def test_a_new_date_on_another_grid_is_refused():
    reference = ClearReference.empty(32, 32, 4)
    with pytest.raises(ValueError, match="resample"):
        add_observation(reference, field_scene(32, 33), None, 0)


def detect(before: np.ndarray, after: np.ndarray, before_valid: np.ndarray | None = None):
    return detect_changes(
        before, after, before_valid=before_valid, transform=TRANSFORM, crs=CRS, band_roles=ROLES
    )


@PROPERTY_SETTINGS
@given(
    seed=st.integers(0, 10_000),
    top=st.integers(0, 60),
    left=st.integers(0, 60),
    gain=st.floats(0.7, 1.4),
    offset=st.floats(0.0, 200.0),
)
def test_identical_scenes_under_other_clouds_and_light_report_nothing(
    seed: int, top: int, left: int, gain: float, offset: float
) -> None:
    scene = field_scene(96, 96, seed=seed)
    cloud = rectangle((96, 96), top, left, 36, 36)
    older = np.round(scene * gain + offset).astype(np.float32)
    reference = composite([(older, np.ones((96, 96), bool)), (clouded(scene, cloud), ~cloud)])
    result = detect(reference.image, scene.copy(), reference.valid)
    assert result.objects == ()
    assert not result.mask.any()


def test_a_change_that_appeared_under_a_cloud_is_found_on_the_next_clear_look():
    scene = field_scene(128, 128, seed=5)
    roof = (slice(50, 70), slice(50, 74))
    built = paint(scene, *roof, ROOF)
    cloud = rectangle((128, 128), 30, 30, 60, 64)
    clear = np.ones((128, 128), bool)
    dates = [(scene, clear), (clouded(built, cloud), ~cloud)]
    # The pair ending on the next date sees the roof on both dates where it can compare.
    pairwise = detect(dates[1][0], built, ~cloud)
    assert not pairwise.mask[roof].any()
    reference = composite(dates, buffer_px=2)
    found = detect(reference.image, built, reference.valid)
    assert found.mask[roof].mean() > 0.8
    assert len(found.objects) == 1


def test_parcels_are_cut_where_their_reference_changes_date():
    source = np.zeros((20, 20), dtype=np.int32)
    source[:, 10:] = 1
    source[15:, :] = NO_SOURCE
    # Pixel (row, col) covers x in [col, col + 1], y in [-row - 1, -row] (north up).
    transform = Affine(1.0, 0.0, 0.0, 0.0, -1.0, 0.0)
    across = box(4, -8, 16, -2)
    inside = box(1, -8, 8, -2)
    parts = split_by_source([across, inside], source, transform)
    assert len(parts) == 3
    assert sorted(round(p.area, 6) for p in parts[:2]) == [36.0, 36.0]
    assert parts[2].equals(inside)


def test_a_reference_from_one_date_leaves_the_parcels_whole():
    source = np.full((20, 20), 3, dtype=np.int32)
    parcel = box(2, 2, 12, 9)
    assert split_by_source([parcel], source, None) == [parcel]
