"""`filters.gaussian` and `filters.box_mean`: SciPy's filters, through OpenCV where they can be."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from detection.features import edge_strength
from detection.filters import box_mean, gaussian

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


@pytest.mark.parametrize("mode", ["reflect", "nearest"])
@pytest.mark.parametrize("size", [3, 5, 9])
@pytest.mark.parametrize("shape", [(64, 48), (17, 130), (30, 41, 3)])
def test_box_means_match_scipy_to_float32_rounding(
    mode: str, size: int, shape: tuple[int, ...]
) -> None:
    image = RNG.random(shape, dtype=np.float32)
    sizes = (size, size) + (1,) * (len(shape) - 2)
    expected = ndimage.uniform_filter(image, size=sizes, mode=mode)
    got = box_mean(image, size, mode=mode)
    assert got.dtype == np.float32 and got.shape == shape
    # Borders included: "reflect" is abc|cba, "nearest" repeats the edge pixel.
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("image", "size"),
    [
        (RNG.random((40, 40)), 5),  # float64
        (RNG.random((40, 40), dtype=np.float32), 4),  # even: SciPy centres it its own way
        (RNG.random((3, 40), dtype=np.float32), 9),  # narrower than the box's half width
        (RNG.random((20, 20, 6), dtype=np.float32), 3),  # more bands than OpenCV's channels
    ],
)
def test_what_opencv_is_not_given_is_scipys_box_mean_exactly(image: np.ndarray, size: int) -> None:
    sizes = (size, size) + (1,) * (image.ndim - 2)
    expected = ndimage.uniform_filter(image, size=sizes, mode="reflect")
    np.testing.assert_array_equal(box_mean(image, size), expected)
