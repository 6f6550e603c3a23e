"""Shortcuts of the tiled detector that must leave every value as it was (score inputs read
plane by plane, windows read only where the change is, polygons traced over part of a tile),
and the coarse grid the score is filtered on."""

from __future__ import annotations

from dataclasses import replace

import cv2
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
def test_score_inputs_of_stored_planes_are_those_of_float32_arrays_bit_for_bit(
    dtype: type, masks: str
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
    stored = Source(before, after, before_valid, after_valid, NORMALISATION, (0.0, 0.0))
    # The same samples as a float32 (rows, cols, bands) array, with NaN where there is no
    # data: the stored planes go in as views, the array as float32 copies.
    arrays = [np.moveaxis(image.stored, 0, -1).astype(np.float32) for image in (before, after)]
    if masks != "none":
        for image in arrays:
            image[~valid] = np.nan
    floats = Source(*arrays, before_valid, after_valid, NORMALISATION, (0.0, 0.0))
    for key in [(slice(0, 150), slice(0, 170)), (slice(8, 149), slice(34, 101))]:
        got, expected = stored.read_score_inputs(key), floats.read_score_inputs(key)
        np.testing.assert_array_equal(got.valid, expected.valid)
        for name in ("unsmoothed", "grey_before", "grey_after"):
            np.testing.assert_array_equal(
                getattr(got, name).view(np.uint32), getattr(expected, name).view(np.uint32)
            )
        for plane, other in zip(got.differences, expected.differences, strict=True):
            np.testing.assert_array_equal(plane.view(np.uint32), other.view(np.uint32))


def test_score_inputs_are_the_normalised_differences_halved() -> None:
    first, second = dates(150, 170)
    before, after = stored_planes(first), stored_planes(second)
    valid = np.ones(first.shape[:2], dtype=bool)
    valid[60:64, 50:90] = False
    source = Source(before, after, valid, None, NORMALISATION, (0.0, 0.0))
    key = (slice(8, 148), slice(34, 102))
    inputs = source.read_score_inputs(key)
    samples_before = before.stored[:, key[0], key[1]].astype(np.float64)
    samples_after = after.stored[:, key[0], key[1]].astype(np.float64)
    inside = valid[key]
    normalised = NORMALISATION.gain[:, None, None] * samples_after
    normalised += NORMALISATION.offset[:, None, None]
    scaled = (normalised - samples_before) / NORMALISATION.noise[:, None, None] * inside

    def halved(plane: np.ndarray) -> np.ndarray:
        rows, cols = plane.shape
        return plane.reshape(rows // 2, 2, cols // 2, 2).mean(axis=(1, 3))

    magnitude = np.sqrt((scaled**2).mean(axis=0))
    np.testing.assert_allclose(inputs.unsmoothed, magnitude, rtol=1e-5, atol=1e-5)
    for plane, expected in zip(inputs.differences, scaled, strict=True):
        np.testing.assert_allclose(plane, halved(expected), rtol=1e-5, atol=1e-5)
    grey_before = halved((samples_before * inside).mean(axis=0))
    grey_after = halved((normalised * inside).mean(axis=0))
    np.testing.assert_allclose(inputs.grey_before, grey_before, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(inputs.grey_after, grey_after, rtol=1e-5, atol=1e-3)
    assert (inputs.unsmoothed[~inside] == 0).all()
    # The unsmoothed cap is what zeroes the score where a date has no data.
    common = {"noise": NORMALISATION.noise, "scales_px": (1.0, 2.0, 4.0), "texture_weight": 0.5}
    score = features.coarse_change_score(inputs, **common)
    assert (score[~inside] == 0).all() and (score[inside] > 0).any()


@pytest.mark.parametrize("dtype", [np.uint16, np.int16, np.uint8, np.float32])
@pytest.mark.parametrize("shape", [(64, 80), (63, 81), (1, 7), (2, 1)])
def test_the_one_pass_score_inputs_are_numpys_float32_steps_bit_for_bit(
    dtype: type, shape: tuple[int, int]
) -> None:
    bands = 4
    before = RNG.uniform(0, 200, (bands, *shape)).astype(dtype)
    after = RNG.uniform(0, 200, (bands, *shape)).astype(dtype)
    valid = RNG.random(shape) > 0.2
    inputs = features.score_inputs(
        before,
        # Planes of an interleaved (rows, cols, bands) image: strided views go in as they are.
        np.moveaxis(np.ascontiguousarray(np.moveaxis(after, 0, -1)), -1, 0),
        valid,
        gain=NORMALISATION.gain,
        offset=NORMALISATION.offset,
        noise=NORMALISATION.noise,
    )
    squares = np.zeros(shape, dtype=np.float32)
    before_sum = np.zeros(shape, dtype=np.float32)
    for band in range(bands):
        scale = float(NORMALISATION.noise[band])
        difference = after[band] * np.float32(NORMALISATION.gain[band] / scale)
        difference -= before[band] * np.float32(1.0 / scale)
        difference += np.float32(NORMALISATION.offset[band] / scale)
        difference[~valid] = 0.0
        bits = features.halve(difference).view(np.uint32)
        np.testing.assert_array_equal(inputs.differences[band].view(np.uint32), bits)
        squares = squares + difference * difference if band else difference * difference
        before_sum += np.where(valid, before[band], 0).astype(np.float32)
    magnitude = np.sqrt(squares / np.float32(bands))
    np.testing.assert_array_equal(inputs.unsmoothed.view(np.uint32), magnitude.view(np.uint32))
    grey = features.halve(before_sum) / np.float32(bands)
    np.testing.assert_array_equal(inputs.grey_before.view(np.uint32), grey.view(np.uint32))


@pytest.mark.parametrize("shape", [(64, 80), (63, 81), (1, 7)])
@pytest.mark.parametrize("corner", [(0, 0), (40, 58), (76, 96)])
def test_a_window_from_an_even_pixel_halves_onto_the_whole_images_coarse_grid(
    shape: tuple[int, int], corner: tuple[int, int]
) -> None:
    plane = RNG.normal(0, 50, (141, 177)).astype(np.float32)
    whole = features.halve(plane)
    (rows, cols), (top, left) = shape, corner
    window = features.halve(plane[top : top + rows, left : left + cols])
    assert window.shape == ((rows + 1) // 2, (cols + 1) // 2)
    # Every coarse pixel made of whole 2 × 2 blocks is the whole image's, bit for bit (an odd
    # edge's last one is padded in the window only), and is the mean of its block.
    full_rows, full_cols = rows // 2, cols // 2
    expected = whole[top // 2 : top // 2 + full_rows, left // 2 : left // 2 + full_cols]
    np.testing.assert_array_equal(window[:full_rows, :full_cols], expected)
    block = plane[top : top + 2 * full_rows, left : left + 2 * full_cols]
    means = block.reshape(full_rows, 2, full_cols, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(expected, means, rtol=1e-5, atol=1e-4)
    assert features.double(window, (rows, cols)).shape == (rows, cols)


def test_the_coarse_score_of_a_uniform_change_is_its_magnitude_cut_at_its_edge() -> None:
    rows, cols, bands = 120, 130, 4
    rng = np.random.default_rng(7)
    before = rng.normal(1000, 1, (rows, cols, bands)).astype(np.float32)
    after = before.copy()
    # Three noise units in every band over a 40 × 50 block.
    after[40:80, 40:90] += 3 * NORMALISATION.noise.astype(np.float32)
    same_light = Normalisation(
        gain=np.ones(bands), offset=np.zeros(bands), noise=NORMALISATION.noise, invariant_fraction=1
    )
    source = Source(before, after, None, None, same_light, (0.0, 0.0))
    inputs = source.read_score_inputs((slice(0, rows), slice(0, cols)))
    common = {"noise": NORMALISATION.noise, "scales_px": (1.0, 2.0, 4.0), "texture_weight": 0.5}
    score = features.coarse_change_score(inputs, **common).copy()
    assert score[60, 65] == pytest.approx(3.0, rel=0.03)
    assert score[5, 5] < 0.1
    # Smoothing spreads the score past the block; the unsmoothed magnitude cuts it back.
    uncut = np.full(inputs.valid.shape, np.inf, dtype=np.float32)
    spread = features.coarse_change_score(replace(inputs, unsmoothed=uncut), **common)
    assert spread[60, 38] > 0.5
    assert score[60, 38] < 0.1


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
def test_stored_planes_detect_what_float32_arrays_do(tile: int) -> None:
    first, second = dates(230, 210)
    valid = np.ones(first.shape[:2], dtype=bool)
    valid[:30, -40:] = False
    # No sub-pixel shift is applied below a shift of 10 pixels: the case in which
    # `Source.read_score_inputs` converts the stored planes itself.
    params = RasterDetectorParams(tile_px=tile, min_shift_px=10.0)
    common = {"params": params, "transform": TRANSFORM, "crs": CRS, "after_valid": valid}
    arrays = detect_changes(stored_planes(first)[:, :], stored_planes(second)[:, :], **common)
    planar = detect_changes(stored_planes(first), stored_planes(second), **common)
    assert arrays.mask.any() and arrays.shift_px == (0.0, 0.0)
    np.testing.assert_array_equal(planar.score.view(np.uint16), arrays.score.view(np.uint16))
    np.testing.assert_array_equal(planar.mask, arrays.mask)
    assert planar.objects == arrays.objects


@pytest.mark.parametrize("ipp", [True, False])
def test_tiles_score_as_the_whole_image_with_and_without_opencvs_ipp(ipp: bool) -> None:
    # Builds without Intel's IPP (other CPUs) must tile as exactly as this one does: the score
    # must not go through an OpenCV function whose result changes with a window's width.
    first, second = dates(230, 210)
    used = cv2.ipp.useIPP()
    try:
        cv2.ipp.setUseIPP(ipp)
        scores = [
            detect_changes(
                stored_planes(first),
                stored_planes(second),
                params=RasterDetectorParams(tile_px=tile, min_shift_px=10.0),
                transform=TRANSFORM,
                crs=CRS,
            ).score
            for tile in (66, 4096)
        ]
    finally:
        cv2.ipp.setUseIPP(used)
    np.testing.assert_array_equal(scores[0].view(np.uint16), scores[1].view(np.uint16))


@pytest.mark.parametrize("ipp", [True, False])
def test_doubling_gives_a_pixel_the_same_value_in_every_window_that_holds_it(ipp: bool) -> None:
    rng = np.random.default_rng(11)
    used = cv2.ipp.useIPP()
    try:
        cv2.ipp.setUseIPP(ipp)
        for _ in range(20):
            rows, cols = rng.integers(1, 60), rng.integers(1, 400)
            coarse = rng.normal(0, 5, (rows, cols)).astype(np.float32)
            whole = features.double(coarse, (2 * rows, 2 * cols)).copy()
            for _ in range(20):
                top, left = rng.integers(0, rows), rng.integers(0, cols)
                height, width = rng.integers(1, rows - top + 1), rng.integers(1, cols - left + 1)
                window = np.ascontiguousarray(coarse[top : top + height, left : left + width])
                part = features.double(window, (2 * height, 2 * width))
                # A window's own edges repeat its last pixels; the image's edges are its too.
                inner_top = 0 if top == 0 else 2
                inner_left = 0 if left == 0 else 2
                inner_bottom = 2 * height - (0 if top + height == rows else 2)
                inner_right = 2 * width - (0 if left + width == cols else 2)
                np.testing.assert_array_equal(
                    part[inner_top:inner_bottom, inner_left:inner_right],
                    whole[2 * top :][inner_top:inner_bottom, 2 * left :][:, inner_left:inner_right],
                )
    finally:
        cv2.ipp.setUseIPP(used)


def test_doubling_is_bilinear_with_pixel_centres_aligned() -> None:
    coarse = RNG.normal(0, 50, (31, 40)).astype(np.float32)
    doubled = features.double(coarse, (61, 80))
    assert doubled.shape == (61, 80)
    padded = np.pad(coarse.astype(np.float64), 1, mode="edge")
    # Fine pixel i lies at coarse coordinate (i + 0.5) / 2 - 0.5: a quarter of the way from
    # its own coarse pixel towards a neighbour.
    rows = (np.arange(61) + 0.5) / 2 - 0.5 + 1
    cols = (np.arange(80) + 0.5) / 2 - 0.5 + 1
    expected = ndimage.map_coordinates(padded, np.meshgrid(rows, cols, indexing="ij"), order=1)
    np.testing.assert_allclose(doubled, expected, rtol=1e-5, atol=1e-4)


def test_a_score_beyond_float16s_range_saturates_instead_of_becoming_infinite() -> None:
    # Flat dates have almost no noise: a step of a few hundred levels is millions of noise
    # units, past float16's largest value.
    before = np.full((96, 96, 4), 300.0, dtype=np.float32)
    after = before.copy()
    after[30:60, 30:60] = 900.0
    result = detect_changes(before, after, transform=TRANSFORM, crs=CRS)
    assert np.isfinite(result.score).all()
    assert result.score.max() == np.finfo(np.float16).max
    assert result.mask[45, 45] and not result.mask[5, 5]
