"""Scores of a change mask against a reference: pooled pixel counts and object-level counts.

Pixel scores are pooled: true/false positives and false negatives are summed over every pair
of a dataset before precision, recall, F1 and IoU of the change class are computed once.
Datasets are then compared by the plain mean of their F1.

Object rule: objects are 8-connected components of change. A predicted object is correct
when at least one of its pixels is reference change (overlap of one pixel or more, i.e.
IoU > 0); a reference object is found when at least one predicted pixel lies on it. With
partial labels, reference objects are taken inside the labelled pixels only, and a predicted
object that touches no labelled pixel is not counted either way.

Ratios whose denominator is zero are reported as 0 (scikit-learn's ``zero_division=0``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


@dataclass(frozen=True)
class PixelCounts:
    """Pixel confusion counts of the change class; add them to pool over pairs."""

    true_positive: int = 0
    false_positive: int = 0
    false_negative: int = 0
    true_negative: int = 0

    def __add__(self, other: PixelCounts) -> PixelCounts:
        return PixelCounts(
            self.true_positive + other.true_positive,
            self.false_positive + other.false_positive,
            self.false_negative + other.false_negative,
            self.true_negative + other.true_negative,
        )

    @property
    def precision(self) -> float:
        """Fraction of predicted change pixels that are reference change."""
        return _ratio(self.true_positive, self.true_positive + self.false_positive)

    @property
    def recall(self) -> float:
        """Fraction of reference change pixels that are predicted."""
        return _ratio(self.true_positive, self.true_positive + self.false_negative)

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall: 2TP / (2TP + FP + FN)."""
        return _ratio(
            2 * self.true_positive,
            2 * self.true_positive + self.false_positive + self.false_negative,
        )

    @property
    def iou(self) -> float:
        """Intersection over union of the change class: TP / (TP + FP + FN)."""
        return _ratio(
            self.true_positive,
            self.true_positive + self.false_positive + self.false_negative,
        )


@dataclass(frozen=True)
class ObjectCounts:
    """Object-level counts (see the module docstring for the rule); add them to pool."""

    predicted: int = 0
    predicted_correct: int = 0
    reference: int = 0
    reference_found: int = 0

    def __add__(self, other: ObjectCounts) -> ObjectCounts:
        return ObjectCounts(
            self.predicted + other.predicted,
            self.predicted_correct + other.predicted_correct,
            self.reference + other.reference,
            self.reference_found + other.reference_found,
        )

    @property
    def precision(self) -> float:
        """Fraction of predicted objects that overlap reference change."""
        return _ratio(self.predicted_correct, self.predicted)

    @property
    def recall(self) -> float:
        """Fraction of reference objects that some predicted pixel overlaps."""
        return _ratio(self.reference_found, self.reference)


def _checked(
    predicted: np.ndarray, reference: np.ndarray, labelled: np.ndarray | None
) -> np.ndarray:
    if predicted.shape != reference.shape or predicted.ndim != 2:
        raise ValueError(
            f"predicted mask {predicted.shape} and reference {reference.shape} must be "
            "2-D masks of one shape (rows, cols)"
        )
    if labelled is None:
        return np.ones(reference.shape, dtype=bool)
    if labelled.shape != reference.shape:
        raise ValueError(
            f"labelled mask {labelled.shape} must have the reference's shape {reference.shape}"
        )
    return labelled.astype(bool, copy=False)


def pixel_counts(
    predicted: np.ndarray, reference: np.ndarray, *, labelled: np.ndarray | None = None
) -> PixelCounts:
    """Confusion counts of the change class over the labelled pixels.

    Parameters
    ----------
    predicted, reference : ndarray of shape (rows, cols), bool
        Predicted and reference change.
    labelled : ndarray of shape (rows, cols), bool, optional
        Pixels that carry a reference label; all pixels when omitted.
    """
    scored = _checked(predicted, reference, labelled)
    predicted = predicted.astype(bool, copy=False) & scored
    reference = reference.astype(bool, copy=False) & scored
    true_positive = int(np.count_nonzero(predicted & reference))
    false_positive = int(np.count_nonzero(predicted)) - true_positive
    false_negative = int(np.count_nonzero(reference)) - true_positive
    true_negative = int(np.count_nonzero(scored)) - true_positive - false_positive - false_negative
    return PixelCounts(true_positive, false_positive, false_negative, true_negative)


def _labels_touching(components: np.ndarray, where: np.ndarray) -> np.ndarray:
    touched = np.unique(components[where])
    return touched[touched != 0]


def object_counts(
    predicted: np.ndarray, reference: np.ndarray, *, labelled: np.ndarray | None = None
) -> ObjectCounts:
    """Object-level counts of 8-connected change objects (rule in the module docstring).

    Parameters
    ----------
    predicted, reference : ndarray of shape (rows, cols), bool
    labelled : ndarray of shape (rows, cols), bool, optional
    """
    scored = _checked(predicted, reference, labelled)
    reference = reference.astype(bool, copy=False) & scored
    predicted_objects, _ = ndimage.label(predicted, structure=_EIGHT_CONNECTED)
    reference_objects, reference_total = ndimage.label(reference, structure=_EIGHT_CONNECTED)
    counted = _labels_touching(predicted_objects, scored)
    correct = np.intersect1d(counted, _labels_touching(predicted_objects, reference))
    found = _labels_touching(reference_objects, predicted.astype(bool, copy=False))
    return ObjectCounts(
        predicted=int(counted.size),
        predicted_correct=int(correct.size),
        reference=int(reference_total),
        reference_found=int(found.size),
    )


@dataclass(frozen=True)
class Score:
    """Pooled pixel and object counts of one dataset (or one pair)."""

    pixels: PixelCounts = PixelCounts()
    objects: ObjectCounts = ObjectCounts()
    pairs: int = 0

    def __add__(self, other: Score) -> Score:
        return Score(
            self.pixels + other.pixels, self.objects + other.objects, self.pairs + other.pairs
        )

    def as_dict(self) -> dict[str, float | int]:
        """Flat, JSON-ready numbers: pixel P/R/F1/IoU, object P/R, raw counts."""
        return {
            "f1": self.pixels.f1,
            "precision": self.pixels.precision,
            "recall": self.pixels.recall,
            "iou": self.pixels.iou,
            "object_precision": self.objects.precision,
            "object_recall": self.objects.recall,
            "pairs": self.pairs,
            "true_positive": self.pixels.true_positive,
            "false_positive": self.pixels.false_positive,
            "false_negative": self.pixels.false_negative,
            "true_negative": self.pixels.true_negative,
            "predicted_objects": self.objects.predicted,
            "reference_objects": self.objects.reference,
        }


def score_pair(
    predicted: np.ndarray, reference: np.ndarray, *, labelled: np.ndarray | None = None
) -> Score:
    """Pixel and object counts of one pair, ready to be summed into a dataset score."""
    return Score(
        pixels=pixel_counts(predicted, reference, labelled=labelled),
        objects=object_counts(predicted, reference, labelled=labelled),
        pairs=1,
    )


def pooled(scores: Iterable[Score]) -> Score:
    """The sum of pair scores: pooled counts over a dataset."""
    return sum(scores, Score())


def mean_f1(scores: Iterable[Score]) -> float:
    """Plain mean of per-dataset pooled F1; 0 for no datasets."""
    values = [score.pixels.f1 for score in scores]
    return float(np.mean(values)) if values else 0.0
