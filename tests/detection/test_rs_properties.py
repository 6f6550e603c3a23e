"""Properties of the raster detector: no change from nothing, from light, or from tiling."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detection.raster_pair import detect_changes
from detection.rs_params import RasterDetectorParams
from tests.detection.rs_scenes import CRS, ROLES, ROOF, TRANSFORM, field_scene, paint

PROPERTY_SETTINGS = settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def detect(before: np.ndarray, after: np.ndarray, params: RasterDetectorParams | None = None):
    return detect_changes(
        before, after, transform=TRANSFORM, crs=CRS, band_roles=ROLES, params=params
    )


@PROPERTY_SETTINGS
@given(seed=st.integers(0, 10_000), rows=st.integers(32, 160), cols=st.integers(32, 160))
def test_identical_inputs_report_nothing(seed: int, rows: int, cols: int) -> None:
    image = field_scene(rows, cols, seed=seed)
    result = detect(image, image.copy())
    assert result.objects == ()
    assert not result.mask.any()


@PROPERTY_SETTINGS
@given(
    seed=st.integers(0, 10_000),
    gain=st.floats(0.6, 1.6),
    offset=st.floats(-100.0, 300.0),  # no sample is pushed below zero
)
def test_a_global_gain_and_offset_of_the_after_image_is_not_change(
    seed: int, gain: float, offset: float
) -> None:
    before = field_scene(96, 96, seed=seed)
    # As a sensor delivers it: scaled, offset, rounded to whole DN, clipped at zero.
    after = np.clip(np.round(before * gain + offset), 0, 65535).astype(np.float32)
    result = detect(before, after)
    assert result.objects == ()
    assert not result.mask.any()


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    tile=st.sampled_from([64, 96, 97, 128]),
    top=st.integers(0, 180),
    left=st.integers(0, 180),
)
def test_tiled_and_whole_image_results_are_identical(
    seed: int, tile: int, top: int, left: int
) -> None:
    before = field_scene(240, 250, seed=seed)
    after = paint(before, slice(top, top + 40), slice(left, left + 30), ROOF)
    after = paint(after, slice(10, 14), slice(200, 204), ROOF)
    whole = detect(before, after, RasterDetectorParams(tile_px=4096))
    tiled = detect(before, after, RasterDetectorParams(tile_px=tile))
    assert whole.mask.any()
    np.testing.assert_array_equal(tiled.score, whole.score)
    np.testing.assert_array_equal(tiled.mask, whole.mask)
    assert sorted(round(o.area_m2, 6) for o in tiled.objects) == sorted(
        round(o.area_m2, 6) for o in whole.objects
    )
    assert sorted(o.change_type for o in tiled.objects) == sorted(
        o.change_type for o in whole.objects
    )
