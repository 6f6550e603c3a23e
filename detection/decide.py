"""From score to change mask: adaptive threshold, hysteresis, morphology, minimum mapping unit."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.morphology import disk

#: 4-connectivity: objects that touch only at a corner are separate (and polygons stay simple).
CONNECTIVITY = ndimage.generate_binary_structure(2, 1)


def noise_threshold(score_sample: np.ndarray, *, floor: float, sigmas: float) -> float:
    """Threshold above the bulk of unchanged scores: median + `sigmas` robust deviations."""
    finite = score_sample[np.isfinite(score_sample)]
    if finite.size < 2:
        return floor
    median = float(np.median(finite))
    spread = 1.4826 * float(np.median(np.abs(finite - median)))
    return max(floor, median + sigmas * spread)


def adaptive_threshold(score_sample: np.ndarray, *, floor: float) -> float:
    """Strong-change threshold from a sample of scores, in the score's units.

    Otsu's threshold on the sample when it separates a change mode above `floor`; `floor`
    when the scores are unimodal noise (e.g. no change at all), so that an unchanged pair
    does not get its noisiest pixels called change.
    """
    finite = score_sample[np.isfinite(score_sample)]
    if finite.size < 2 or np.ptp(finite) == 0:
        return floor
    return max(floor, float(threshold_otsu(finite)))


def mmu_pixels(min_mapping_unit_m2: float, pixel_area_m2: float) -> int:
    """Smallest object size in whole pixels (at least 1)."""
    return max(1, math.ceil(min_mapping_unit_m2 / pixel_area_m2 - 1e-9))


def decision_halo_px(
    *, reach_px: int, opening_radius_px: int, closing_radius_px: int, mmu_px: int
) -> int:
    """Context a tile needs so its core decision equals the whole-image decision.

    The minimum-mapping-unit test is exact when the halo is at least `mmu_px`: a component
    that leaves the window has a path of at least that many pixels inside it, so it passes.
    """
    return reach_px + 2 * (opening_radius_px + closing_radius_px) + mmu_px + 1


def decide(
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
    """Change mask of a score window.

    Parameters
    ----------
    score : ndarray of shape (rows, cols), float
    allowed : ndarray of shape (rows, cols), bool
        Pixels that may be change (valid data at both dates, inside farmland when given).
    strong, weak : float
        Score thresholds; weak pixels are kept only within `reach_px` of strong ones.

    Returns
    -------
    ndarray of shape (rows, cols), bool
    """
    seeds = (score >= strong) & allowed
    candidates = (score >= weak) & allowed
    if not seeds.any():
        return seeds
    mask = ndimage.binary_dilation(seeds, CONNECTIVITY, iterations=reach_px, mask=candidates)
    if opening_radius_px:
        mask = ndimage.binary_opening(mask, disk(opening_radius_px))
    if closing_radius_px:
        mask = ndimage.binary_closing(mask, disk(closing_radius_px)) & allowed
    return remove_small(mask, mmu_px)


def remove_small(mask: np.ndarray, mmu_px: int) -> np.ndarray:
    """Drop 4-connected components with fewer than `mmu_px` pixels."""
    if mmu_px <= 1 or not mask.any():
        return mask
    labels, count = ndimage.label(mask, CONNECTIVITY)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    keep = sizes >= mmu_px
    keep[0] = False
    return keep[labels]
