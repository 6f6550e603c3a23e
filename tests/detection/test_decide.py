"""`decide.decide` through OpenCV: the same masks as SciPy's binary morphology."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.morphology import disk

from detection import decide

RNG = np.random.default_rng(20261129)


def scipy_decide(
    score: np.ndarray,
    allowed: np.ndarray,
    *,
    strong: float,
    weak: float,
    reach_px: int,
    opening_radius_px: int,
    closing_radius_px: int,
    mmu_px: int,
) -> np.ndarray:
    """The decision as SciPy computes it (the detector's code before OpenCV)."""
    seeds = (score >= strong) & allowed
    candidates = (score >= weak) & allowed
    if not seeds.any():
        return seeds
    mask = ndimage.binary_dilation(seeds, decide.CONNECTIVITY, iterations=reach_px, mask=candidates)
    if opening_radius_px:
        mask = ndimage.binary_opening(mask, disk(opening_radius_px))
    if closing_radius_px:
        mask = ndimage.binary_closing(mask, disk(closing_radius_px)) & allowed
    if mmu_px <= 1 or not mask.any():
        return mask
    labels, count = ndimage.label(mask, decide.CONNECTIVITY)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    keep = sizes >= mmu_px
    keep[0] = False
    return keep[labels]


def score_field(shape: tuple[int, int], blobs: int) -> np.ndarray:
    """Smooth noise with a few strong blobs, some of them on the window's edges."""
    score = ndimage.gaussian_filter(RNG.normal(size=shape), 1.5) * 4 + 1.0
    for _ in range(blobs):
        row, col = RNG.integers(0, shape[0]), RNG.integers(0, shape[1])
        radius = RNG.integers(1, 9)
        score[max(row - radius, 0) : row + radius, max(col - radius, 0) : col + radius] += 4
    return score.astype(np.float32)


SETTINGS = [
    dict(reach_px=8, opening_radius_px=1, closing_radius_px=1, mmu_px=50),
    dict(reach_px=1, opening_radius_px=0, closing_radius_px=0, mmu_px=1),
    dict(reach_px=3, opening_radius_px=2, closing_radius_px=1, mmu_px=9),
    dict(reach_px=0, opening_radius_px=1, closing_radius_px=2, mmu_px=20),  # grow to the end
    dict(reach_px=5, opening_radius_px=0, closing_radius_px=3, mmu_px=4),
]


@pytest.mark.parametrize("settings", SETTINGS)
@pytest.mark.parametrize("shape", [(120, 90), (64, 200), (7, 40)])
@pytest.mark.parametrize("holes", [False, True])
def test_decision_equals_scipys(settings: dict, shape: tuple[int, int], holes: bool) -> None:
    for blobs in (0, 1, 3, 12):
        score = score_field(shape, blobs)
        allowed = np.ones(shape, dtype=bool)
        if holes:
            allowed = ndimage.gaussian_filter(RNG.normal(size=shape), 3) < 0.15
        got = decide.decide(score, allowed, strong=4.0, weak=2.4, **settings)
        expected = scipy_decide(score, allowed, strong=4.0, weak=2.4, **settings)
        assert got.dtype == bool and got.shape == shape
        np.testing.assert_array_equal(got, expected)


def test_weak_above_strong_keeps_seeds_outside_the_candidates() -> None:
    score = score_field((80, 80), 6)
    allowed = np.ones(score.shape, dtype=bool)
    settings = dict(reach_px=4, opening_radius_px=0, closing_radius_px=0, mmu_px=1)
    got = decide.decide(score, allowed, strong=3.0, weak=5.0, **settings)
    expected = scipy_decide(score, allowed, strong=3.0, weak=5.0, **settings)
    assert expected.any()
    np.testing.assert_array_equal(got, expected)


def test_closing_erodes_at_the_image_edge_as_scipy_does() -> None:
    mask = np.zeros((12, 12), dtype=bool)
    mask[0:5, 3:9] = True  # touches the top edge
    got = decide.binary_closing(mask, 1)
    np.testing.assert_array_equal(got, ndimage.binary_closing(mask, disk(1)))
    assert not got[0].any()  # the border counts as no change


def test_growth_stops_at_the_reach_and_follows_candidates_only() -> None:
    seeds = np.zeros((5, 30), dtype=bool)
    seeds[2, 0] = True
    candidates = np.zeros_like(seeds)
    candidates[2, :] = True
    grown = decide.grow_within(seeds, candidates, 6)
    np.testing.assert_array_equal(np.flatnonzero(grown[2]), np.arange(7))
    assert grown.sum() == 7
    np.testing.assert_array_equal(decide.grow_within(seeds, candidates, 0), candidates)


@pytest.mark.parametrize("mmu_px", [1, 2, 5, 6, 100])
def test_remove_small_keeps_components_of_at_least_mmu_pixels(mmu_px: int) -> None:
    mask = np.zeros((10, 10), dtype=bool)
    mask[0, 0:5] = True  # 5 pixels
    mask[1, 5] = True  # touches the first only at a corner: a component of its own
    mask[4:7, 4:6] = True  # 6 pixels
    kept = decide.remove_small(mask, mmu_px)
    assert kept[0, 0:5].all() == (mmu_px <= 5)
    assert kept[1, 5] == (mmu_px <= 1)
    assert kept[4:7, 4:6].all() == (mmu_px <= 6)
    assert kept.sum() == sum(size for size in (5, 1, 6) if size >= mmu_px)


@pytest.mark.parametrize("iterations", [1, 2, 5])
@pytest.mark.parametrize("shape", [(40, 60), (7, 90)])
def test_dilation_equals_scipys_edges_included(iterations: int, shape: tuple[int, int]) -> None:
    mask = RNG.random(shape) > 0.95
    mask[0, :3] = mask[-1, -2:] = True  # on the edges: nothing may grow in from outside
    got = decide.dilate(mask, iterations)
    assert got.dtype == bool
    np.testing.assert_array_equal(got, ndimage.binary_dilation(mask, iterations=iterations))


def test_dilation_needs_at_least_one_step() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        decide.dilate(np.ones((3, 3), dtype=bool), 0)
