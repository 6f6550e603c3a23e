"""Priority orders cases the way a monitoring centre would triage them."""

from __future__ import annotations

from dataclasses import replace

from models.case import ConfidenceLevel
from service.screening.priority import (
    PriorityInputs,
    combined_confidence,
    confidence_level,
    priority_score,
)

BASE = PriorityInputs(
    confidence=0.7,
    layer_kinds=frozenset({"permanent_basic_farmland"}),
    area_m2=2000.0,
    growth=0.0,
    sightings=1,
    reopen_count=0,
)


def test_basic_farmland_outranks_cultivated_land() -> None:
    cultivated = replace(BASE, layer_kinds=frozenset({"cultivated_land"}))
    assert priority_score(BASE) > priority_score(cultivated)


def test_inside_the_urban_development_boundary_ranks_lower() -> None:
    urban = replace(BASE, layer_kinds=BASE.layer_kinds | {"urban_development_boundary"})
    assert priority_score(urban) < priority_score(BASE)


def test_confidence_area_growth_and_rebounds_each_raise_priority() -> None:
    base = priority_score(BASE)
    assert priority_score(replace(BASE, confidence=0.95)) > base
    assert priority_score(replace(BASE, area_m2=3000.0)) > base
    assert priority_score(replace(BASE, growth=0.5)) > base
    assert priority_score(replace(BASE, reopen_count=1)) > base
    assert priority_score(replace(BASE, sightings=3)) > base


def test_priority_stays_within_0_and_100() -> None:
    top = PriorityInputs(1.0, frozenset({"permanent_basic_farmland", "blue_line"}), 1e9, 9, 99, 9)
    bottom = PriorityInputs(0.0, frozenset(), 0.0, 0.0, 1, 0)
    assert priority_score(top) == 100
    assert priority_score(bottom) == 0


def test_two_sensors_agreeing_are_more_confident_than_either() -> None:
    assert combined_confidence([0.6, 0.7]) > 0.7
    assert combined_confidence([0.6, 0.7]) < 1.0
    assert confidence_level({"camera", "remote_sensing"}, 2) == ConfidenceLevel.highest
    assert confidence_level({"camera"}, 3) == ConfidenceLevel.high
    assert confidence_level({"remote_sensing"}, 1) == ConfidenceLevel.nominal
