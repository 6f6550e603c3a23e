"""Shortcuts of the tiled detector that must leave every value as it was: the score computed
in place, windows read only where the change is, polygons traced over part of a tile."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from scipy import ndimage
from shapely import to_wkb

from detection import features, objects
from detection.io.planar import PlanarArray
from detection.radiometry import Normalisation
from detection.raster_pair import detect_changes
from detection.rs_params import RasterDetectorParams
from detection.rs_tiles import BufferedValid, RasterLike, Source, as_float16, as_float32
from tests.detection.rs_scenes import CRS, ROOF, TRANSFORM, field_scene, paint

RNG = np.random.default_rng(20261129)
NORMALISATION = Normalisation(
    gain=np.array([1.0731, 0.9542, 1.0113, 0.9987]),
    offset=np.array([-12.25, 3.5, 0.125, -7.75]),
    noise=np.array([7.6, 16.4, 13.3, 58.9]),
    invariant_fraction=0.3,
)


def dates(rows: int = 150, cols: int = 170) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols, 4) float32 dates with a roof and a flooded patch."""
    before = field_scene(rows, cols, seed=5)
    after = paint(before, slice(30, 70), slice(40, 95), ROOF)
    after[100:120, 10:50] = 80.0
    return before, after


def old_plane_change_score(
    before: np.ndarray,
    after: np.ndarray,
    valid: np.ndarray,
    *,
    noise: np.ndarray,
    scales_px: tuple[float, ...],
    texture_weight: float,
) -> np.ndarray:
    """The score as the detector computed it before working in place, with SciPy's Sobel."""
    difference = np.empty_like(before, dtype=np.float32)
    for band, scale in enumerate(noise.astype(np.float32)):
        np.subtract(after[band], before[band], out=difference[band])
        difference[band] /= scale
    invalid = None if valid.all() else ~valid
    if invalid is not None:
        difference[:, invalid] = 0.0
    magnitudes = features._plane_magnitudes(difference, scales_px, features.gaussian)
    score = magnitudes[0].copy()
    for magnitude in magnitudes[1:]:
        score += magnitude
    score /= len(magnitudes)
    if texture_weight:
        scale = float(np.mean(noise))
        gray_before = features.band_mean(before)
        gray_after = np.where(valid, features.band_mean(after), gray_before)

        def edges(gray: np.ndarray) -> np.ndarray:
            smooth = features.gaussian(gray, 1.0)
            return np.hypot(ndimage.sobel(smooth, axis=0), ndimage.sobel(smooth, axis=1)) / 8.0

        change = np.abs(edges(gray_after) - edges(gray_before))
        texture = features.gaussian((change / scale).astype(np.float32), 2.0)
        score += texture_weight * texture
    np.square(difference, out=difference)
    np.minimum(score, np.sqrt(features.band_mean(difference)), out=score)
    if invalid is not None:
        score[invalid] = 0.0
    return score


@pytest.mark.parametrize("holes", [False, True])
@pytest.mark.parametrize("texture_weight", [0.5, 0.0, 1.3])
@pytest.mark.parametrize("scales_px", [(1.0, 2.0, 4.0), (1.5,), (2.0, 3.0)])
def test_score_in_place_equals_the_score_before_bit_for_bit(
    holes: bool, texture_weight: float, scales_px: tuple[float, ...]
) -> None:
    before, after = (features.as_planes(image) for image in dates())
    valid = np.ones(before.shape[1:], dtype=bool)
    if holes:
        valid[:25, -30:] = False
        valid[90:95, :] = False
    noise = NORMALISATION.noise
    expected = old_plane_change_score(
        before, after, valid, noise=noise, scales_px=scales_px, texture_weight=texture_weight
    )
    copies = before.copy(), after.copy()
    got = features.plane_change_score(
        before, after, valid, noise=noise, scales_px=scales_px, texture_weight=texture_weight
    )
    np.testing.assert_array_equal(got, expected)
    # Its inputs are left as they were.
    np.testing.assert_array_equal(before, copies[0])
    np.testing.assert_array_equal(after, copies[1])


def test_mean_magnitude_is_the_mean_of_the_magnitudes() -> None:
    planes = features.as_planes(dates()[1]) / np.float32(20.0)
    magnitudes = features._plane_magnitudes(planes, (1.0, 2.0, 4.0), features.gaussian)
    expected = magnitudes[0].copy()
    expected += magnitudes[1]
    expected += magnitudes[2]
    expected /= 3
    got = features._mean_magnitude(planes, (1.0, 2.0, 4.0), features.gaussian)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("planar", [False, True])
@pytest.mark.parametrize(
    "box",
    [
        (slice(30, 70), slice(40, 95)),
        (slice(0, 5), slice(160, 170)),
        (slice(149, 150), slice(0, 170)),
    ],
)
def test_a_box_reads_what_the_whole_window_holds_there(
    planar: bool, box: tuple[slice, slice]
) -> None:
    first, second = dates()
    valid = np.ones(first.shape[:2], dtype=bool)
    valid[60:64, 50:90] = False
    valid[0:3, 165:] = False
    images: tuple[RasterLike, RasterLike] = (first, second)
    if planar:
        images = (stored_planes(first), stored_planes(second))
    source = Source(*images, BufferedValid(valid, 6), valid, NORMALISATION, (0.0, 0.0))
    outer = (slice(0, 150), slice(0, 170))
    whole = source.read(outer)
    part = source.read(box)
    for got, expected in zip(part, whole, strict=True):
        np.testing.assert_array_equal(got, expected[box])


def stored_planes(image: np.ndarray, dtype: type = np.uint16) -> PlanarArray:
    return PlanarArray(np.ascontiguousarray(np.moveaxis(image, 2, 0)).round().astype(dtype))


@pytest.mark.parametrize("dtype", [np.uint16, np.int16, np.uint8])
@pytest.mark.parametrize("masks", ["none", "holes", "buffered"])
@pytest.mark.parametrize("texture_weight", [0.5, 0.0])
def test_score_inputs_read_in_strips_give_the_score_of_the_planes(
    dtype: type, masks: str, texture_weight: float
) -> None:
    first, second = dates(150, 170)
    if dtype == np.uint8:
        first, second = first / 16, second / 16
    before, after = stored_planes(first, dtype), stored_planes(second, dtype)
    valid = np.ones(first.shape[:2], dtype=bool)
    valid[60:64, 50:90] = False
    valid[0:3, 160:] = False
    before_valid: RasterLike | None = None
    after_valid: RasterLike | None = None
    if masks == "holes":
        before_valid = valid
    elif masks == "buffered":
        before_valid, after_valid = BufferedValid(valid, 4), valid
    source = Source(before, after, before_valid, after_valid, NORMALISATION, (0.0, 0.0))
    noise, scales = NORMALISATION.noise, (1.0, 2.0, 4.0)
    for key in [(slice(0, 150), slice(0, 170)), (slice(7, 149), slice(33, 101))]:
        planes = source.read_planes(key)
        expected = features.plane_change_score(
            *planes, noise=noise, scales_px=scales, texture_weight=texture_weight
        )
        inputs = source.read_score_inputs(key, grays=bool(texture_weight))
        assert inputs is not None
        np.testing.assert_array_equal(inputs[2], planes[2])
        got = features.difference_change_score(
            *inputs, noise=noise, scales_px=scales, texture_weight=texture_weight
        )
        np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))


def test_score_inputs_leave_what_they_cannot_read_exactly_to_the_planes() -> None:
    first, second = dates(60, 70)
    planar = stored_planes(first), stored_planes(second)
    key = (slice(0, 60), slice(0, 70))
    shifted = Source(*planar, None, None, NORMALISATION, (0.4, 0.0))
    assert shifted.read_score_inputs(key, grays=True) is None
    floats = Source(first, second, None, None, NORMALISATION, (0.0, 0.0))
    assert floats.read_score_inputs(key, grays=True) is None
    assert Source(*planar, None, None, NORMALISATION, (0.0, 0.0)).read_score_inputs(key, grays=True)


GEOGRAPHIC = Affine(8.983152841195214e-05, 0.0, 120.1234567891, 0.0, -8.983152841195214e-05, 30.98)


@pytest.mark.parametrize("corner", [(0, 0), (40, 70), (100, 150), (180, 230)])
def test_pieces_of_a_region_are_those_of_the_whole_core(corner: tuple[int, int]) -> None:
    rows, cols = 200, 256
    top, left = corner
    mask = np.zeros((rows, cols), dtype=bool)
    blob = ndimage.gaussian_filter(RNG.normal(size=(20, 26)), 2) > 0
    mask[top : top + 20, left : left + 26] = blob[: rows - top, : cols - left]
    mask[top + 5, left : left + 3] = True
    classes = np.where(np.arange(cols) % 40 < 20, objects.SOIL, objects.OTHER)[None, :]
    classes = np.repeat(classes, rows, axis=0).astype(np.int8)
    score = RNG.random((rows, cols), dtype=np.float32) * 5
    indices = {"brightness": RNG.random((rows, cols)).astype(np.float32)}
    transform = GEOGRAPHIC @ Affine.translation(3072, 2048)
    edges = (True, True, True, True)
    whole = objects.tile_pieces(
        mask, score, indices, indices, classes=classes, transform=transform, touches_edge=edges
    )
    found = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    region = (
        slice(int(found[0][0]), int(found[0][-1]) + 1),
        slice(int(found[1][0]), int(found[1][-1]) + 1),
    )
    part = objects.tile_pieces(
        mask,
        score,
        {k: v[region] for k, v in indices.items()},
        {k: v[region] for k, v in indices.items()},
        classes=classes[region],
        transform=transform,
        touches_edge=edges,
        region=region,
    )
    assert len(part) == len(whole) >= 2
    for a, b in zip(part, whole, strict=True):
        # Vertex for vertex: the coordinates of a geographic grid are not exact binary
        # fractions, so any other way of placing the region would move their last bits.
        assert to_wkb(a.geometry) == to_wkb(b.geometry)
        assert (a.pixels, a.score_sum, a.kind, a.on_tile_edge) == (
            b.pixels,
            b.score_sum,
            b.kind,
            b.on_tile_edge,
        )
        assert a.sums_before == b.sums_before and a.sums_after == b.sums_after


def test_float16_conversions_are_numpys_bit_for_bit() -> None:
    every_half = np.arange(1 << 16, dtype=np.uint16).view(np.float16).reshape(256, 256)
    widened = as_float32(every_half)
    assert widened.dtype == np.float32
    number = ~np.isnan(every_half)
    expected = every_half.astype(np.float32)
    np.testing.assert_array_equal(widened[number].view(np.uint32), expected[number].view(np.uint32))
    assert np.isnan(widened[~number]).all()
    # float32 values across float16's range and past it: subnormals, ties, overflow, -0.
    bits = np.arange(0, 0x47800000 + (1 << 20), 997, dtype=np.uint32)
    values = np.concatenate([bits.view(np.float32), -bits.view(np.float32)])
    edges = np.array([65504, 65519.996, 65520, -0.0, np.inf], dtype=np.float32)
    values = np.concatenate([values, edges])
    plane = np.resize(values, (len(values) // 1000, 1000))
    with np.errstate(over="ignore"):
        expected16 = plane.astype(np.float16)
    narrowed = as_float16(plane)
    assert narrowed.dtype == np.float16
    np.testing.assert_array_equal(narrowed.view(np.uint16), expected16.view(np.uint16))
    # Strided windows of the grid, as the detector passes them.
    window = plane[3:40:2, 100:900]
    np.testing.assert_array_equal(
        as_float16(window).view(np.uint16), window.astype(np.float16).view(np.uint16)
    )


@pytest.mark.parametrize("tile", [64, 4096])
def test_stored_planes_read_in_strips_detect_what_float32_arrays_do(tile: int) -> None:
    first, second = dates(230, 210)
    valid = np.ones(first.shape[:2], dtype=bool)
    valid[:30, -40:] = False
    # No sub-pixel shift is applied below a shift of 10 pixels: the strip reader's case.
    params = RasterDetectorParams(tile_px=tile, min_shift_px=10.0)
    common = {"params": params, "transform": TRANSFORM, "crs": CRS, "after_valid": valid}
    arrays = detect_changes(stored_planes(first)[:, :], stored_planes(second)[:, :], **common)
    planar = detect_changes(stored_planes(first), stored_planes(second), **common)
    assert arrays.mask.any() and arrays.shift_px == (0.0, 0.0)
    np.testing.assert_array_equal(planar.score.view(np.uint16), arrays.score.view(np.uint16))
    np.testing.assert_array_equal(planar.mask, arrays.mask)
    assert planar.objects == arrays.objects
