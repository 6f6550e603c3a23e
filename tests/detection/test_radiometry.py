"""Relative radiometric normalisation: what the fit keeps and what it refuses."""

from __future__ import annotations

import numpy as np
import pytest

from detection.radiometry import fit_normalisation

FIT = {"iterations": 8, "invariant_probability": 0.9, "noise_floor_fraction": 0.03}
PIXELS = 20_000


def _scene(rng: np.random.Generator) -> np.ndarray:
    """Four bands of varied ground, in sensor counts."""
    return rng.uniform(200.0, 3000.0, size=(PIXELS, 4))


def test_unequal_gains_per_band_are_recovered_around_a_changed_minority() -> None:
    # Another sensor or season may scale each band differently; that is light, not change.
    rng = np.random.default_rng(1)
    before = _scene(rng)
    gain, offset = np.array([0.8, 1.0, 1.2, 1.4]), np.array([50.0, -20.0, 0.0, 100.0])
    after = (before - offset) / gain + rng.normal(0.0, 15.0, size=before.shape)
    changed = rng.random(PIXELS) < 0.2
    after[changed] = rng.uniform(200.0, 3000.0, size=(int(changed.sum()), 4))

    fit = fit_normalisation(before, after, **FIT)

    np.testing.assert_allclose(fit.gain, gain, rtol=0.02)
    np.testing.assert_allclose(fit.offset, offset, atol=40.0)


def test_a_band_that_most_of_the_scene_changes_alike_is_not_taken_for_light() -> None:
    # As crops greening from June to July: most of the near infrared moves, linearly but the
    # wrong way round, and IR-MAD (blind to any linear relation) calls that invariant. A line
    # fitted there would map unchanged fields far off, so the dates are compared as they are.
    rng = np.random.default_rng(2)
    before = _scene(rng)
    after = before + rng.normal(0.0, 15.0, size=before.shape)
    after[:, 3] = 4000.0 - 0.8 * before[:, 3] + rng.normal(0.0, 15.0, PIXELS)

    fit = fit_normalisation(before, after, **FIT)

    np.testing.assert_array_equal(fit.gain, np.ones(4))
    np.testing.assert_array_equal(fit.offset, np.zeros(4))
    assert fit.invariant_fraction == pytest.approx(1.0)


def test_a_band_constant_at_both_dates_keeps_the_fit() -> None:
    # A band saturated or empty over the whole sample has no spread to correlate; an offset
    # fits it exactly, so it must not throw away the other bands' fit.
    rng = np.random.default_rng(3)
    before = _scene(rng)
    before[:, 2] = 1000.0
    after = before / 1.25 + rng.normal(0.0, 15.0, size=before.shape)
    after[:, 2] = 800.0

    fit = fit_normalisation(before, after, **FIT)

    np.testing.assert_allclose(fit.gain[[0, 1, 3]], 1.25, rtol=0.02)
    assert fit.gain[2] * 800.0 + fit.offset[2] == pytest.approx(1000.0)
