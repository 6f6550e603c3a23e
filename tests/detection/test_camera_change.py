"""Change regions of a score field, and the row medians that tell fog from clear rows."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import ndimage
from skimage.filters import apply_hysteresis_threshold
from skimage.morphology import remove_small_objects

from detection.camera_change import row_medians, threshold_regions


def _score_field(seed: int) -> np.ndarray:
    # Smooth blobs of every size, some reaching above 1 and many stopping between 0.6 and 1.
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.normal(size=(90, 140)), 2.0)
    return (field / field.std() * 0.45 + 0.3).astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("min_area_px", [0, 1, 10, 60])
def test_regions_are_those_of_hysteresis_then_small_object_removal(
    seed: int, min_area_px: int
) -> None:
    score = _score_field(seed)
    expected = remove_small_objects(
        apply_hysteresis_threshold(score, 0.6, 1.0), max_size=min_area_px - 1
    )
    found = threshold_regions(score, low=0.6, high=1.0, min_area_px=min_area_px)
    assert found.dtype == bool
    assert np.array_equal(found, expected)


def test_a_region_that_never_exceeds_high_is_dropped_however_large() -> None:
    score = np.zeros((20, 30), dtype=np.float32)
    score[2:18, 2:12] = 0.9  # large, never above 1
    score[5:9, 20:25] = 0.8
    score[6, 22] = 1.5  # small region reaching above 1
    found = threshold_regions(score, low=0.6, high=1.0, min_area_px=10)
    assert not found[2:18, 2:12].any()
    assert found[5:9, 20:25].all() and found.sum() == 20


def test_touching_only_at_a_corner_is_two_regions() -> None:
    score = np.zeros((10, 10), dtype=np.float32)
    score[1:4, 1:4] = 1.2  # 9 pixels
    score[4:7, 4:7] = 1.2  # 9 pixels, diagonal neighbour of the first
    assert not threshold_regions(score, low=0.6, high=1.0, min_area_px=10).any()
    assert threshold_regions(score, low=0.6, high=1.0, min_area_px=9).sum() == 18


def test_nothing_above_high_gives_no_regions() -> None:
    score = np.full((12, 12), 0.95, dtype=np.float32)
    assert not threshold_regions(score, low=0.6, high=1.0, min_area_px=1).any()


@pytest.mark.parametrize("shape", [(16, 29), (33, 59), (1, 1), (5, 2)])
def test_row_medians_are_numpys_nanmedian(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(shape[0] * 100 + shape[1])
    for share_missing in (0.0, 0.3, 0.9, 1.0):
        values = (rng.random(shape) * 3).astype(np.float32)
        values[::2] = np.round(values[::2] * 4) / 4  # ties
        values[rng.random(shape) < share_missing] = np.nan
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows
            expected = np.nanmedian(values, axis=1)
        found = row_medians(values)
        assert found.dtype == expected.dtype
        assert np.array_equal(found, expected, equal_nan=True)


def test_row_medians_average_the_two_middle_values_of_an_even_count() -> None:
    values = np.array([[4.0, np.nan, 1.0, 2.0, 8.0], [np.nan, 3.0, np.nan, 5.0, 1.0]], np.float32)
    assert row_medians(values).tolist() == [3.0, 3.0]
