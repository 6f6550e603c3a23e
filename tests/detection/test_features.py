"""`features.gaussian`: SciPy's Gaussian filter, through OpenCV where it can be."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from detection.features import edge_strength, gaussian

RNG = np.random.default_rng(20261129)


@pytest.mark.parametrize("sigma", [1.0, 2.0, 4.0, 0.7])
@pytest.mark.parametrize("shape", [(64, 48), (17, 130), (40, 40)])
def test_float32_planes_match_scipy_to_float32_rounding(
    sigma: float, shape: tuple[int, int]
) -> None:
    image = (RNG.random(shape, dtype=np.float32) * 1000).astype(np.float32)
    expected = ndimage.gaussian_filter(image, sigma)
    got = gaussian(image, sigma)
    assert got.dtype == np.float32 and got.shape == shape
    # Borders included: both reflect the image about its edge (abc|cba).
    np.testing.assert_allclose(got, expected, rtol=2e-6, atol=1e-4)


def test_the_output_array_is_filled_when_given() -> None:
    image = RNG.random((32, 32), dtype=np.float32)
    out = np.empty_like(image)
    result = gaussian(image, 2.0, output=out)
    np.testing.assert_allclose(out, ndimage.gaussian_filter(image, 2.0), rtol=2e-6, atol=1e-6)
    assert result is out or np.array_equal(result, out)


@pytest.mark.parametrize(
    "image",
    [
        RNG.random((64, 64)),  # float64: SciPy's own path, bit for bit
        RNG.random((6, 64), dtype=np.float32),  # narrower than the kernel's radius at sigma 2
    ],
)
def test_what_opencv_is_not_given_is_scipys_result_exactly(image: np.ndarray) -> None:
    np.testing.assert_array_equal(gaussian(image, 2.0), ndimage.gaussian_filter(image, 2.0))


def test_the_trained_models_edge_strength_is_scipys_expression() -> None:
    gray = (RNG.random((150, 140), dtype=np.float32) * 2000).astype(np.float32)
    smooth = ndimage.gaussian_filter(gray, 1.0)
    expected = np.hypot(ndimage.sobel(smooth, axis=0), ndimage.sobel(smooth, axis=1)) / 8.0
    np.testing.assert_array_equal(edge_strength(gray), expected)
