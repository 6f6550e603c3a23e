"""The per-pixel median of a preset's ring of frames, while the ring fills and once full; its
placement in the calibration's grid; the compiled passes (the ring's statistics, the lighting
match, the local mean's removal, the noise update, the band mean and root-mean-square, the
rounding to levels, the step sum, the kept background) against the NumPy expressions they
stand for."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from detection.camera_kernels import band_rms, keep_background, step_sum, to_levels
from detection.camera_reference import (
    NOISE_UNITS,
    ReferenceModel,
    gray,
    less_upsampled,
    lighting_fields,
    match_illumination,
    matched_and_levelled,
    median_of_frames,
    upsample_field,
)


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


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
def test_a_rings_median_and_spread_are_numpys(depth: int) -> None:
    rng = np.random.default_rng(10 + depth)
    frames = rng.integers(0, 256, size=(5, 30, 70, 3), dtype=np.uint8)
    frames[:, :3] = rng.integers(0, 3, size=(5, 3, 70, 3), dtype=np.uint8)  # many ties
    frames[:, 3:6] = rng.choice(np.array([0, 255], dtype=np.uint8), size=(5, 3, 70, 3))
    noise = np.zeros((30, 70), dtype=np.uint8)
    model = ReferenceModel.from_frames(frames, count=depth, added=depth, noise=noise)
    filled = frames[:depth]
    median = np.median(filled, axis=0).astype(np.uint8)
    deviation = np.abs(filled.astype(np.int16) - median)
    spread = np.median(deviation, axis=0).astype(np.uint8).max(axis=-1)
    assert np.array_equal(model.median, median)
    assert np.array_equal(model.spread, spread)
    assert model.median.dtype == model.spread.dtype == np.uint8


def test_the_median_is_a_new_array_not_a_view_of_the_ring() -> None:
    stack = np.zeros((5, 4, 4, 3), dtype=np.uint8)
    median = median_of_frames(stack)
    median[:] = 9
    assert not stack.any()


def test_placement_undoes_the_median_of_the_registration_shifts() -> None:
    model = ReferenceModel.start(np.zeros((20, 30, 3), dtype=np.uint8), depth=3)
    # Sway scattered about (2, -3), and one gust far off that the median ignores.
    for shift in [(2.4, -3.2), (1.6, -2.9), (2.2, -3.4), (25.0, 30.0), (1.9, -2.6)]:
        model = model.with_shift(shift)
    assert model.placement() == (-2, 3)
    assert not model.placed


def test_placing_moves_every_frame_and_statistic_by_whole_pixels() -> None:
    rng = np.random.default_rng(3)
    model = ReferenceModel.start(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8), depth=3)
    model = model.with_frame(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8))
    model = replace(model, noise=rng.integers(0, 256, (20, 30), dtype=np.uint8))
    model = model.with_shift((2.0, -3.0))
    placed = model.placed_at((-2, 3))
    assert placed.placed
    assert placed.shifts == ()
    assert (placed.count, placed.added) == (model.count, model.added)
    for name in ("median", "spread", "noise"):
        before, after = getattr(model, name), getattr(placed, name)
        np.testing.assert_array_equal(after[:-2, 3:], before[2:, :-3], err_msg=name)
        np.testing.assert_array_equal(after[-2:, 3:], np.repeat(after[-3:-2, 3:], 2, axis=0))
        np.testing.assert_array_equal(after[:, :3], np.repeat(after[:, 3:4], 3, axis=1))
    np.testing.assert_array_equal(placed.frames[:, :-2, 3:], model.frames[:, 2:, :-3])
    assert placed.border == (-2, 3, 3)
    # Still the median of its frames, as every model is.
    again = ReferenceModel.from_frames(
        placed.frames, count=placed.count, added=placed.added, noise=placed.noise
    )
    np.testing.assert_array_equal(again.median, placed.median)
    np.testing.assert_array_equal(again.spread, placed.spread)


def test_the_border_a_placement_uncovers_is_not_scored_until_the_ring_is_renewed() -> None:
    model = ReferenceModel.start(np.zeros((20, 30, 3), dtype=np.uint8), depth=3)
    model = model.with_frame(np.zeros((20, 30, 3), dtype=np.uint8)).placed_at((-2, 3))
    valid = np.ones((20, 30), dtype=bool)
    expected = np.ones((20, 30), dtype=bool)
    expected[-2:] = False
    expected[:, :3] = False
    for _ in range(3):
        np.testing.assert_array_equal(model.covering(valid), expected)
        model = model.with_frame(np.zeros((20, 30, 3), dtype=np.uint8))
    assert model.border == (0, 0, 0)
    np.testing.assert_array_equal(model.covering(valid), valid)


@pytest.mark.parametrize("shape", [(270, 480), (97, 131), (64, 64)])
def test_the_lighting_match_is_the_numpy_expression_bit_for_bit(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(shape[0])
    reference = rng.uniform(0, 1, (*shape, 3)).astype(np.float32)
    # Brighter and flatter towards one corner, with values pushed past both ends of the range.
    ramp = np.linspace(0.6, 1.6, shape[1], dtype=np.float32)[None, :, None]
    image = (reference * ramp + rng.normal(0, 0.05, (*shape, 3))).astype(np.float32)
    image[:5] = 1.0
    image[-5:] = 0.0
    found = match_illumination(image, reference, grid=(4, 6), max_gain=3.0)
    # What the compiled pass stands for: the fields upsampled, applied and clipped in NumPy.
    gain, offset = lighting_fields(image, reference, grid=(4, 6), max_gain=3.0)
    lit = upsample_field(gain, shape) * image + upsample_field(offset, shape)
    expected = np.clip(lit, 0.0, 1.0)
    assert found.dtype == np.float32 and found.shape == image.shape
    assert np.array_equal(found, expected)
    assert found.min() == 0.0 and found.max() == 1.0  # both ends were clipped


def test_a_levelled_snapshot_takes_the_references_brightness_and_keeps_its_own_contrast() -> None:
    rng = np.random.default_rng(11)
    reference = rng.uniform(0.2, 0.8, (96, 128, 3)).astype(np.float32)
    # The same ground, hazed: half the contrast, lifted towards the airlight.
    image = (0.5 * reference + 0.35).astype(np.float32)
    matched, levelled = matched_and_levelled(image, reference, grid=(3, 4), max_gain=4.0)
    assert np.array_equal(matched, match_illumination(image, reference, grid=(3, 4), max_gain=4.0))
    np.testing.assert_allclose(np.median(levelled), np.median(reference), atol=0.01)
    np.testing.assert_allclose(levelled.std(), image.std(), rtol=0.03)
    np.testing.assert_allclose(matched.std(), reference.std(), rtol=0.02)
    # Levelling adds a smooth field of brightness only: neighbouring pixels keep their step.
    shift = levelled - image
    assert np.abs(np.diff(shift, axis=0)).max() < 0.005
    assert np.abs(np.diff(shift, axis=1)).max() < 0.005


def test_keeping_the_background_is_numpys_masked_assignment() -> None:
    rng = np.random.default_rng(7)
    frame = rng.integers(0, 256, size=(31, 47, 3), dtype=np.uint8)
    background = rng.integers(0, 256, size=(31, 47, 3), dtype=np.uint8)
    keep = rng.uniform(0, 1, size=(31, 47)) < 0.3
    expected = frame.copy()
    expected[keep] = background[keep]
    keep_background(frame, background, keep)
    assert np.array_equal(frame, expected)


def test_keeping_the_background_refuses_a_frame_it_could_not_write_in_place() -> None:
    frame = np.zeros((8, 10, 3), dtype=np.uint8)[:, ::2]
    with pytest.raises(ValueError, match="C-contiguous"):
        keep_background(frame, np.ones((8, 5, 3), dtype=np.uint8), np.ones((8, 5), dtype=bool))


@pytest.mark.parametrize("shape", [(270, 480), (97, 131)])
def test_removing_an_upsampled_field_is_the_numpy_expression_bit_for_bit(
    shape: tuple[int, int],
) -> None:
    rng = np.random.default_rng(shape[1])
    image = rng.normal(0, 0.2, (*shape, 3)).astype(np.float32)
    field = rng.normal(0, 0.2, (shape[0] // 10, shape[1] // 10, 3)).astype(np.float32)
    found = less_upsampled(image, field)
    assert found.dtype == np.float32 and found.shape == image.shape
    assert np.array_equal(found, image - upsample_field(field, shape))


def _noise_in_numpy(
    noise: np.ndarray, residual: np.ndarray, where: np.ndarray, *, added: int
) -> np.ndarray:
    # The update as NumPy expressions, one array operation at a time.
    old = noise.astype(np.float32)
    new = np.minimum(residual * np.float32(255 * NOISE_UNITS), np.float32(255))
    learned = added > 2
    if learned:
        cap = 3 * old
        cap += 2 * NOISE_UNITS
        new = np.minimum(new, cap)
    rise, fall = (0.5, 0.25) if learned else (1.0 / added,) * 2
    step = new - old
    step *= np.where(step > 0, np.float32(rise), np.float32(fall))
    updated = np.where(where, step + old, old)
    return np.clip(np.round(updated), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("added", [1, 2, 3, 40])
def test_the_noise_update_is_the_numpy_expression_bit_for_bit(added: int) -> None:
    rng = np.random.default_rng(added)
    noise = rng.integers(0, 256, size=(60, 80), dtype=np.uint8)
    residual = rng.uniform(0, 0.4, size=(60, 80)).astype(np.float32)
    # Exact halves after the step, which round to the even neighbour: a residual one noise
    # unit above a noise of 10 (or 11) moves it by a half at a rate of 0.5.
    noise[:2] = [[10], [11]]
    residual[:2] = (noise[:2].astype(np.float32) + 1) / np.float32(255 * NOISE_UNITS)
    where = rng.uniform(0, 1, size=(60, 80)) < 0.7
    where[:2] = True
    model = ReferenceModel.from_frames(
        np.zeros((5, 60, 80, 3), dtype=np.uint8), count=5, added=added, noise=noise
    )
    found = model.with_residual(residual, where, rise=0.5, fall=0.25).noise
    expected = _noise_in_numpy(noise, residual, where, added=added)
    assert found.dtype == np.uint8
    assert np.array_equal(found, expected)
    assert np.array_equal(found[~where], noise[~where])
    if added > 2:
        assert set(found[:2, 0]) == {10, 12}  # 10.5 → 10 and 11.5 → 12


def test_the_band_mean_is_the_numpy_expression_bit_for_bit() -> None:
    rng = np.random.default_rng(3)
    image = rng.uniform(0, 1, (97, 131, 3)).astype(np.float32)
    for view in (image, image[::4, ::3]):  # a frame, and a sample of one (not contiguous)
        expected = view[..., 0] + view[..., 1]
        expected += view[..., 2]
        expected *= np.float32(1 / 3)
        found = gray(view)
        assert found.dtype == np.float32 and found.shape == view.shape[:2]
        assert np.array_equal(found, expected)


def test_the_band_rms_is_the_numpy_expression_bit_for_bit() -> None:
    rng = np.random.default_rng(4)
    image = rng.normal(0, 0.3, (97, 131, 3)).astype(np.float32)
    red, green, blue = image[..., 0], image[..., 1], image[..., 2]
    total = red * red
    total += green * green
    total += blue * blue
    total *= np.float32(1 / 3)
    found = band_rms(image)
    assert found.dtype == np.float32 and found.shape == image.shape[:2]
    assert np.array_equal(found, np.sqrt(total))


def test_levels_are_numpys_rounding_bit_for_bit() -> None:
    rng = np.random.default_rng(5)
    image = rng.uniform(0, 1, (97, 131, 3)).astype(np.float32)
    image[0, :6, 0] = np.array([0.5, 1.5, 2.5, 253.5, 0, 255], dtype=np.float32) / 255  # halves
    found = to_levels(image)
    assert found.dtype == np.uint8 and found.shape == image.shape
    assert np.array_equal(found, np.round(image * 255.0).astype(np.uint8))


def test_the_step_sum_is_the_numpy_expression_bit_for_bit() -> None:
    rng = np.random.default_rng(6)
    plane = rng.normal(0, 0.2, (97, 131)).astype(np.float32)
    expected = np.zeros_like(plane)
    expected[:, 1:] = np.abs(plane[:, 1:] - plane[:, :-1])
    expected[1:, :] += np.abs(np.diff(plane, axis=0))
    found = step_sum(plane)
    assert found.dtype == np.float32 and found.shape == plane.shape
    assert np.array_equal(found, expected)
