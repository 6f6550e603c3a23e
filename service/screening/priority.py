"""Case priority (0..100) from confidence, layer severity, area, growth and recurrence."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from models.case import ConfidenceLevel
from models.detection import DetectionSource
from models.layer import LayerKind
from service.spatial import m2_to_mu

# How much a hit on each control line weighs; the X lines add a little each, as tags.
SEVERITY_BY_KIND: dict[str, float] = {
    LayerKind.permanent_basic_farmland: 1.0,
    LayerKind.cultivated_land: 0.7,
}
X_LINE_KINDS = frozenset(
    {
        LayerKind.ecological_red_line,
        LayerKind.purple_line,
        LayerKind.yellow_line,
        LayerKind.blue_line,
        LayerKind.green_line,
        LayerKind.orange_line,
        LayerKind.geohazard_line,
    }
)
X_LINE_SEVERITY_STEP = 0.1


@dataclass(frozen=True)
class PriorityWeights:
    """Shares of the score; they sum to 1. The urban factor scales the whole score down."""

    confidence: float = 0.35
    severity: float = 0.25
    area: float = 0.2
    growth: float = 0.1
    recurrence: float = 0.1
    # Inside the urban development boundary construction is expected sooner or later.
    urban_factor: float = 0.6
    # Areas at or above this many mu score fully (log scale below it).
    area_saturation_mu: float = 5.0


@dataclass(frozen=True)
class PriorityInputs:
    confidence: float  # fraction 0..1
    layer_kinds: frozenset[str]  # kinds of every layer the case's detections hit
    area_m2: float
    growth: float  # fraction by which the outline grew since the first sighting
    sightings: int  # detections attached
    reopen_count: int


def layer_severity(kinds: Iterable[str]) -> float:
    kinds = set(kinds)
    base = max((SEVERITY_BY_KIND.get(kind, 0.0) for kind in kinds), default=0.0)
    return min(1.0, base + X_LINE_SEVERITY_STEP * len(kinds & X_LINE_KINDS))


def priority_score(inputs: PriorityInputs, weights: PriorityWeights = PriorityWeights()) -> int:
    """Weighted sum of factors in 0..1, scaled to 0..100 and lowered inside the urban boundary."""
    area_mu = m2_to_mu(max(inputs.area_m2, 0.0))
    factors = {
        "confidence": _clip(inputs.confidence),
        "severity": layer_severity(inputs.layer_kinds),
        "area": _clip(math.log1p(area_mu) / math.log1p(weights.area_saturation_mu)),
        "growth": _clip(inputs.growth),
        # A rebound counts as much as several repeated sightings.
        "recurrence": _clip(0.5 * inputs.reopen_count + 0.1 * max(inputs.sightings - 1, 0)),
    }
    score = sum(getattr(weights, name) * value for name, value in factors.items())
    if LayerKind.urban_development_boundary in inputs.layer_kinds:
        score *= weights.urban_factor
    return round(100 * _clip(score))


def _clip(value: float) -> float:
    return min(1.0, max(0.0, value))


def combined_confidence(per_sensor: Iterable[float]) -> float:
    """Independent sensors combine as 1 - Π(1 - c); repeats of one sensor are not independent,
    so each sensor contributes only its best confidence."""
    miss = 1.0
    for confidence in per_sensor:
        miss *= 1.0 - min(max(float(confidence), 0.0), 1.0)
    return 1.0 - miss


def confidence_level(sources: set[str], sightings: int) -> ConfidenceLevel:
    if {DetectionSource.camera, DetectionSource.remote_sensing} <= sources:
        return ConfidenceLevel.highest  # camera and satellite agree
    if sightings >= 2:
        return ConfidenceLevel.high  # seen again
    return ConfidenceLevel.nominal
