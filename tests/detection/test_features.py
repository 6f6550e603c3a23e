"""`features.gaussian`: SciPy's Gaussian filter, through OpenCV where it can be."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from detection import features
from detection.features import edge_strength, gaussian, sobel_magnitude

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


# --- Sobel through OpenCV ---------------------------------------------------------------


def sobel(image: np.ndarray, axis: int) -> np.ndarray:
    """One derivative as `features._sobel_strips` computes it, rounded to float32 as
    `sobel_magnitude` rounds it: each must be SciPy's, not only their magnitude."""
    out = np.empty(image.shape, dtype=np.float32)
    for rows, (derivative,) in features._sobel_strips(image, (axis,)):
        out[rows] = derivative
    return out


def _smooth_plane(shape: tuple[int, int], scale: float) -> np.ndarray:
    """A grey plane like the score's: smoothed texture plus noise, float32."""
    texture = ndimage.gaussian_filter(RNG.normal(size=shape), 2.0) * 3 * scale
    noise = RNG.normal(0.0, 0.05 * scale, size=shape)
    return ndimage.gaussian_filter((texture + noise + 2 * scale).astype(np.float32), 1.0)


@pytest.mark.parametrize("axis", [0, 1, -1, -2])
@pytest.mark.parametrize(
    "shape",
    [(300, 200), (129, 64), (257, 33), (128, 5), (2, 50), (50, 2), (3, 3)],
)
@pytest.mark.parametrize("scale", [1.0, 1500.0, 1e-3])
def test_sobel_equals_scipy_bit_for_bit(axis: int, shape: tuple[int, int], scale: float) -> None:
    image = _smooth_plane(shape, scale)
    expected = ndimage.sobel(image, axis=axis)
    got = sobel(image, axis)
    assert got.dtype == np.float32 and got.shape == shape
    # Borders and strip seams included: the trained model's inputs (`edge_strength` with
    # SciPy) and the score's must not drift apart by a rounding.
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("strip_rows", [1, 2, 7, 1000])
def test_sobel_does_not_depend_on_its_strip_height(
    monkeypatch: pytest.MonkeyPatch, strip_rows: int
) -> None:
    image = _smooth_plane((61, 47), 800.0)
    monkeypatch.setattr(features, "SOBEL_STRIP_ROWS", strip_rows)
    for axis in (0, 1):
        np.testing.assert_array_equal(sobel(image, axis), ndimage.sobel(image, axis=axis))


def test_sobel_of_a_strided_view_is_that_of_its_copy() -> None:
    image = _smooth_plane((90, 70), 100.0)
    view = image[::2, 1::3]
    for axis in (0, 1):
        np.testing.assert_array_equal(sobel(view, axis), ndimage.sobel(view.copy(), axis=axis))


@pytest.mark.parametrize(
    "image",
    [
        RNG.random((40, 30)),  # float64: SciPy's own path
        RNG.random((1, 30), dtype=np.float32),  # a single row
    ],
)
def test_what_opencv_is_not_given_is_scipys_sobel_magnitude_exactly(image: np.ndarray) -> None:
    expected = np.hypot(ndimage.sobel(image, axis=0), ndimage.sobel(image, axis=1))
    np.testing.assert_array_equal(sobel_magnitude(image), expected)


@pytest.mark.parametrize("shape", [(300, 200), (129, 64), (2, 50), (50, 2)])
@pytest.mark.parametrize("scale", [1.0, 1500.0, 1e-3, 1e30])
def test_sobel_magnitude_equals_numpys_hypot_of_scipys_sobel(
    shape: tuple[int, int], scale: float
) -> None:
    image = _smooth_plane(shape, scale)
    expected = np.hypot(ndimage.sobel(image, axis=0), ndimage.sobel(image, axis=1))
    got = sobel_magnitude(image)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)


def test_sobel_magnitude_of_infinities_is_numpys() -> None:
    image = _smooth_plane((40, 30), 10.0)
    image[5, 7] = np.inf
    image[20, 3] = -np.inf
    with np.errstate(invalid="ignore"):
        expected = np.hypot(ndimage.sobel(image, axis=0), ndimage.sobel(image, axis=1))
        got = sobel_magnitude(image)
    np.testing.assert_array_equal(got, expected)


def test_the_scores_edge_strength_equals_the_trained_models() -> None:
    gray = (RNG.random((150, 140), dtype=np.float32) * 2000).astype(np.float32)
    fast = edge_strength(gray, ndimage.gaussian_filter, sobel_magnitude)
    np.testing.assert_array_equal(fast, edge_strength(gray))
    # The model's default is SciPy's own expression, untouched.
    smooth = ndimage.gaussian_filter(gray, 1.0)
    expected = np.hypot(ndimage.sobel(smooth, axis=0), ndimage.sobel(smooth, axis=1)) / 8.0
    np.testing.assert_array_equal(edge_strength(gray), expected)
