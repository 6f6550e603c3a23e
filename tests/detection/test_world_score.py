"""`score_world` on hand-made truth and detections with known answers."""

from __future__ import annotations

import pytest
from shapely.geometry import box

from detection.world_score import (
    BenignEvent,
    DetectedObject,
    PairDetections,
    TruthViolation,
    score_world,
    tally_by_size,
)


def suspected(x: float, y: float, size: float = 10.0) -> DetectedObject:
    return DetectedObject(geometry=box(x, y, x + size, y + size), benign=False)


def farm_work(x: float, y: float, size: float = 10.0) -> DetectedObject:
    return DetectedObject(geometry=box(x, y, x + size, y + size), benign=True)


def pair(
    after: int, *objects: DetectedObject, clear_fraction: dict[str, float] | None = None
) -> PairDetections:
    return PairDetections(
        before_epoch=after - 1,
        after_epoch=after,
        objects=objects,
        clear_fraction=clear_fraction or {},
    )


SHED = TruthViolation("V1", "building", 2, 400.0, box(0, 0, 20, 20))
POND = TruthViolation("V2", "pond_digging", 1, 400.0, box(100, 0, 120, 20))
APPROVED = TruthViolation("V3", "building", 1, 400.0, box(200, 0, 220, 20), in_approved=True)
HARVEST = BenignEvent("B1", "harvest", 2, box(300, 0, 400, 100))


def test_a_violation_is_found_on_the_first_pair_a_suspected_object_touches_it_after_onset():
    pairs = [
        pair(1, suspected(5, 5)),  # before the shed's onset: a false alarm, not a detection
        pair(2),
        pair(3, suspected(5, 5)),
    ]
    score = score_world([SHED], [], pairs, area_km2=1.0)
    (shed,) = score.violations
    assert shed.detected and shed.detected_epoch == 3 and shed.epochs_after_onset == 1
    assert score.false_alarms == 1 and score.pairs[0].false_alarms == 1


def test_found_at_onset_counts_zero_epochs_and_farm_work_objects_do_not_detect():
    pairs = [pair(1, farm_work(105, 5)), pair(2, suspected(5, 5), farm_work(105, 5))]
    score = score_world([SHED, POND], [], pairs, area_km2=1.0)
    by_id = {v.violation_id: v for v in score.violations}
    assert by_id["V1"].epochs_after_onset == 0
    assert not by_id["V2"].detected and by_id["V2"].epochs_after_onset is None
    assert score.detection_rate == pytest.approx(0.5)
    assert score.median_epochs_after_onset == 0.0


def test_growing_violation_is_matched_against_its_extent_on_that_epoch():
    growing = TruthViolation(
        "V4",
        "soil_piling",
        1,
        400.0,
        box(0, 0, 20, 20),
        extents={1: box(0, 0, 5, 5), 2: box(0, 0, 20, 20)},
    )
    early = score_world([growing], [], [pair(1, suspected(12, 12))], area_km2=1.0)
    assert not early.violations[0].detected and early.false_alarms == 1
    late = score_world([growing], [], [pair(2, suspected(12, 12))], area_km2=1.0)
    assert late.violations[0].detected_epoch == 2 and late.false_alarms == 0


def test_false_alarms_exclude_violations_and_approved_lookalikes_and_scale_by_area_and_pairs():
    pairs = [
        pair(1, suspected(105, 5), suspected(205, 5), suspected(500, 500)),
        pair(2, suspected(600, 600), farm_work(700, 700)),
    ]
    score = score_world([POND, APPROVED], [], pairs, area_km2=4.0)
    assert score.false_alarms == 2
    assert score.false_alarms_per_km2_per_epoch == pytest.approx(2 / 4.0 / 2)
    assert score.pairs[0].approved_lookalikes == 1
    assert score.pairs[0].false_alarm_types == {"unknown": 1}
    # The look-alike is legal: it is not in the detection rate.
    assert [v.violation_id for v in score.violations] == ["V2"]


def test_benign_event_is_flagged_only_by_a_suspected_object_on_its_own_pair():
    flagged = score_world([], [HARVEST], [pair(2, suspected(350, 50))], area_km2=1.0)
    assert (flagged.benign_events, flagged.benign_flagged) == (1, 1)
    assert flagged.benign_flagged_share == 1.0
    vetoed = score_world([], [HARVEST], [pair(2, farm_work(350, 50))], area_km2=1.0)
    assert (vetoed.benign_events, vetoed.benign_flagged) == (1, 0)
    other_pair = score_world([], [HARVEST], [pair(2), pair(3, suspected(350, 50))], area_km2=1.0)
    assert (other_pair.benign_events, other_pair.benign_flagged) == (1, 0)


def test_a_violation_hidden_by_cloud_on_every_pair_is_not_counted_as_observed():
    cloudy = pair(2, clear_fraction={"V1": 0.2, "V2": 0.9})
    score = score_world([SHED, POND], [], [cloudy], area_km2=1.0)
    by_id = {v.violation_id: v for v in score.violations}
    assert by_id["V1"].observed_epoch is None and by_id["V2"].observed_epoch == 2
    assert score.violations_observed == 1 and score.observed_detection_rate == 0.0
    seen = score_world([SHED, POND], [], [cloudy, pair(3, suspected(5, 5))], area_km2=1.0)
    assert seen.violations_observed == 2 and seen.observed_detection_rate == pytest.approx(0.5)


def test_violations_standing_on_the_first_epoch_are_not_scored():
    old = TruthViolation("V0", "building", 0, 100.0, box(0, 0, 10, 10))
    score = score_world([old], [], [pair(1, suspected(2, 2))], area_km2=1.0)
    assert score.violations == ()
    assert score.false_alarms == 0  # it is a real violation, just not a new one
    assert score.detection_rate == 0.0


def test_bad_input_says_what_to_fix():
    with pytest.raises(ValueError, match="area_km2 must be positive"):
        score_world([], [], [], area_km2=0.0)
    skipping = PairDetections(before_epoch=1, after_epoch=3, objects=())
    with pytest.raises(ValueError, match="not consecutive"):
        score_world([], [], [skipping], area_km2=1.0)


def test_the_size_tally_counts_large_violations_and_those_seen_clear():
    small = TruthViolation("V3", "soil_piling", 1, 60.0, box(300, 300, 306, 310))
    hidden = {"V2": 0.1}
    pairs = [
        pair(1, clear_fraction=hidden),
        pair(2, suspected(5, 5), suspected(302, 302), clear_fraction=hidden),
    ]
    score = score_world([SHED, POND, small], [], pairs, area_km2=1.0)
    tally = tally_by_size(score.violations)
    assert (tally.min_area_m2, tally.violations, tally.detected) == (100.0, 2, 1)
    # The pond was hidden on its only pair: it counts, but not as seen.
    assert (tally.observed, tally.observed_detected) == (1, 1)
    everything = tally_by_size(score.violations, min_area_m2=0.0)
    assert (everything.violations, everything.detected) == (3, 2)
