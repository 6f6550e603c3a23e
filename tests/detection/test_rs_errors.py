"""Bad input to the raster detector ends in a specific DetectionError that says what to do."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine

from detection.errors import InvalidRasterError, RegistrationError
from detection.raster_pair import detect_changes
from tests.detection.rs_scenes import CRS, TRANSFORM, field_scene

IMAGE = field_scene(64, 64)


def test_different_band_counts_are_refused() -> None:
    with pytest.raises(InvalidRasterError, match="4 bands and after has 3"):
        detect_changes(IMAGE, IMAGE[:, :, :3])


def test_a_pair_that_does_not_overlap_is_refused() -> None:
    far_away = TRANSFORM @ Affine.translation(10_000, 0)
    with pytest.raises(RegistrationError, match="do not overlap"):
        detect_changes(
            IMAGE, IMAGE, transform=TRANSFORM, crs=CRS, after_transform=far_away, after_crs=CRS
        )


def test_a_crs_on_one_date_only_is_refused() -> None:
    with pytest.raises(InvalidRasterError, match="after image has no CRS"):
        detect_changes(
            IMAGE,
            IMAGE[:60],
            transform=TRANSFORM,
            crs=CRS,
            after_transform=TRANSFORM,
            after_crs=None,
        )


@pytest.mark.parametrize(
    ("transform", "message"),
    [
        (Affine(2.0, 0.5, 500_000.0, 0.3, -2.0, 3_340_000.0), "rotated"),
        (Affine(0.0, 0.0, 500_000.0, 0.0, 0.0, 3_340_000.0), "zero or degenerate"),
    ],
)
def test_rotated_or_zero_geotransforms_are_refused(transform: Affine, message: str) -> None:
    with pytest.raises(InvalidRasterError, match=message):
        detect_changes(IMAGE, IMAGE, transform=transform, crs=CRS)


def test_all_nodata_is_refused() -> None:
    nothing = np.zeros(IMAGE.shape[:2], dtype=bool)
    with pytest.raises(InvalidRasterError, match="no pixel has data at both dates"):
        detect_changes(IMAGE, IMAGE, before_valid=nothing)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_and_inf_in_valid_pixels_are_refused(bad: float) -> None:
    after = IMAGE.copy()
    after[10, 10, 2] = bad
    with pytest.raises(InvalidRasterError, match="NaN or infinite"):
        detect_changes(IMAGE, after)


def test_nan_marked_as_nodata_is_accepted() -> None:
    after = IMAGE.copy()
    after[10, 10, 2] = np.nan
    valid = np.ones(IMAGE.shape[:2], dtype=bool)
    valid[10, 10] = False
    assert detect_changes(IMAGE, after, after_valid=valid).objects == ()


@pytest.mark.parametrize("dtype", ["float64", "int32"])
def test_float64_and_int32_arrays_are_refused(dtype: str) -> None:
    with pytest.raises(InvalidRasterError, match=f"{dtype}; accepted are"):
        detect_changes(IMAGE.astype(dtype), IMAGE.astype(dtype))


def test_a_one_pixel_image_is_refused() -> None:
    with pytest.raises(InvalidRasterError, match="only 1×1 pixels"):
        detect_changes(IMAGE[:1, :1], IMAGE[:1, :1])


def test_ungeoreferenced_images_of_different_sizes_are_refused() -> None:
    with pytest.raises(RegistrationError, match="cannot be aligned"):
        detect_changes(IMAGE, IMAGE[:60])
