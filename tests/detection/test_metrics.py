"""Pooled pixel scores and object-level scores against numbers worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from detection.metrics import (
    PixelCounts,
    Score,
    mean_f1,
    object_counts,
    pixel_counts,
    pooled,
    score_pair,
)


def mask(rows: list[str]) -> np.ndarray:
    """A boolean mask drawn with '#' for change and '.' for no change."""
    return np.array([[cell == "#" for cell in row] for row in rows])


# 4×6 pair. Reference: a 2×2 object top-left and a single pixel bottom-right.
# Prediction: hits 2 pixels of the 2×2 object, plus a false 2-pixel object in the middle.
REFERENCE = mask(["##....", "##....", "......", ".....#"])
PREDICTED = mask(["#.....", "#..##.", "......", "......"])


def test_pixel_counts_match_the_hand_count() -> None:
    counts = pixel_counts(PREDICTED, REFERENCE)
    # TP = 2 (left column), FP = 2 (middle pair), FN = 2 (right column of the block) + 1.
    assert counts == PixelCounts(
        true_positive=2, false_positive=2, false_negative=3, true_negative=17
    )
    assert counts.precision == pytest.approx(2 / 4)
    assert counts.recall == pytest.approx(2 / 5)
    assert counts.f1 == pytest.approx(2 * 2 / (2 * 2 + 2 + 3))  # 4/9
    assert counts.iou == pytest.approx(2 / 7)


def test_scores_are_pooled_over_pairs_not_averaged() -> None:
    # Second pair: one perfect hit of a 1-pixel change (F1 = 1 alone).
    second_reference = mask(["#.", ".."])
    dataset = pooled(
        [score_pair(PREDICTED, REFERENCE), score_pair(second_reference, second_reference)]
    )
    assert dataset.pairs == 2
    # Pooled: TP 3, FP 2, FN 3 -> F1 = 6/11, not the mean of 4/9 and 1.
    assert dataset.pixels.f1 == pytest.approx(6 / 11)
    assert dataset.pixels.precision == pytest.approx(3 / 5)
    assert dataset.pixels.recall == pytest.approx(3 / 6)


def test_unlabelled_pixels_are_not_scored() -> None:
    labelled = np.ones_like(REFERENCE)
    labelled[1, 3:5] = False  # the false positive pair lies in unknown ground
    counts = pixel_counts(PREDICTED, REFERENCE, labelled=labelled)
    assert (counts.true_positive, counts.false_positive, counts.false_negative) == (2, 0, 3)
    assert counts.precision == 1.0


def test_object_counts_follow_the_overlap_rule() -> None:
    objects = object_counts(PREDICTED, REFERENCE)
    # Predicted objects: the left column (touches reference) and the middle pair (does not).
    # Reference objects: the 2×2 block (touched) and the lone pixel (missed).
    assert (objects.predicted, objects.predicted_correct) == (2, 1)
    assert (objects.reference, objects.reference_found) == (2, 1)
    assert objects.precision == pytest.approx(0.5)
    assert objects.recall == pytest.approx(0.5)


def test_diagonal_neighbours_form_one_object() -> None:
    diagonal = mask(["#..", ".#.", "..#"])
    objects = object_counts(diagonal, diagonal)
    assert objects.predicted == 1 and objects.reference == 1


def test_predicted_objects_entirely_in_unlabelled_ground_are_not_counted() -> None:
    labelled = np.ones_like(REFERENCE)
    labelled[1, 3:5] = False
    objects = object_counts(PREDICTED, REFERENCE, labelled=labelled)
    assert (objects.predicted, objects.predicted_correct) == (1, 1)


def test_nothing_predicted_scores_zero_not_nan() -> None:
    counts = pixel_counts(np.zeros_like(REFERENCE), REFERENCE)
    assert (counts.precision, counts.recall, counts.f1, counts.iou) == (0.0, 0.0, 0.0, 0.0)


def test_mean_f1_is_the_plain_mean_over_datasets() -> None:
    perfect = Score(pixels=PixelCounts(true_positive=5), pairs=1)
    half = Score(pixels=PixelCounts(true_positive=1, false_positive=1, false_negative=1), pairs=1)
    assert mean_f1([perfect, half]) == pytest.approx((1.0 + 0.5) / 2)


def test_masks_of_different_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="one shape"):
        pixel_counts(PREDICTED, REFERENCE[:3])
