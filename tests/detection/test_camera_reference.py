"""The per-pixel median of a preset's ring of frames, while the ring fills and once full."""

from __future__ import annotations

import numpy as np
import pytest

from detection.camera_reference import median_of_frames


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5, 6])
def test_the_median_of_frames_is_numpys_cast_to_uint8(depth: int) -> None:
    rng = np.random.default_rng(depth)
    stack = rng.integers(0, 256, size=(depth, 40, 50, 3), dtype=np.uint8)
    stack[:, :4] = 255  # sums that overflow eight bits
    stack[:, 4:8] = rng.integers(0, 2, size=(depth, 4, 50, 3), dtype=np.uint8)  # many ties
    expected = np.median(stack, axis=0).astype(np.uint8)
    found = median_of_frames(stack)
    assert found.dtype == np.uint8
    assert np.array_equal(found, expected)


def test_the_median_is_a_new_array_not_a_view_of_the_ring() -> None:
    stack = np.zeros((5, 4, 4, 3), dtype=np.uint8)
    median = median_of_frames(stack)
    median[:] = 9
    assert not stack.any()
