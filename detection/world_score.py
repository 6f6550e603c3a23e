"""Score remote-sensing detections over a sequence of epochs against a world's exact truth."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from shapely import STRtree
from shapely.geometry.base import BaseGeometry

M2_PER_KM2 = 1_000_000.0
# The remote-sensing acceptance counts violations of at least this size, m².
ACCEPTANCE_AREA_M2 = 100.0


@dataclass(frozen=True)
class TruthViolation:
    """One injected violation (or an approved look-alike).

    Attributes
    ----------
    violation_id, violation_type : str
    onset_epoch : int
        Index of the first epoch whose image shows it.
    area_m2 : float
        Area on the last epoch, square metres.
    geometry : shapely geometry
        Extent on the last epoch, projected CRS (metres).
    extents : mapping of int to shapely geometry
        Extent per epoch index where it stands (growing types grow); empty to use `geometry`
        on every epoch from the onset.
    in_approved : bool
        A look-alike inside approved construction land: legal, never a case.
    """

    violation_id: str
    violation_type: str
    onset_epoch: int
    area_m2: float
    geometry: BaseGeometry
    extents: Mapping[int, BaseGeometry] = field(default_factory=dict)
    in_approved: bool = False

    def extent_on(self, epoch: int) -> BaseGeometry | None:
        """Its extent on `epoch`, or None before the onset."""
        if epoch < self.onset_epoch:
            return None
        return self.extents.get(epoch, self.geometry)


@dataclass(frozen=True)
class BenignEvent:
    """One farm-work event (harvest, ploughing, flooding, consolidation...).

    Attributes
    ----------
    event_id, event_type : str
    epoch : int
        Index of the first epoch whose image shows it: the pair ending on it contains its date.
    geometry : shapely geometry
        Parcel area it changed, projected CRS (metres).
    """

    event_id: str
    event_type: str
    epoch: int
    geometry: BaseGeometry


@dataclass(frozen=True)
class DetectedObject:
    """One change object the detector reported on an epoch pair.

    Attributes
    ----------
    geometry : shapely geometry
        Outline, same projected CRS as the truth.
    benign : bool
        True when the detector itself judged it farm work (never a case).
    change_type : str
    area_m2 : float
    """

    geometry: BaseGeometry
    benign: bool
    change_type: str = "unknown"
    area_m2: float = 0.0


@dataclass(frozen=True)
class PairDetections:
    """The objects found from `before_epoch` to `after_epoch` (consecutive indices).

    `clear_fraction` maps a violation id to the fraction (0–1) of its extent the detector
    compared: free of cloud and nodata on both dates and beyond its margin of them; a
    violation missing from it counts as fully clear.
    """

    before_epoch: int
    after_epoch: int
    objects: tuple[DetectedObject, ...]
    clear_fraction: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ViolationOutcome:
    """Whether and when one violation was first detected.

    `epochs_after_onset` is 0 when found on the pair ending on its onset epoch, 1 one pair
    later, ...; None when never found. `observed_epoch` is the first epoch at or after the
    onset whose pair saw enough of it clear (None: clouds hid it on every pair).
    """

    violation_id: str
    violation_type: str
    onset_epoch: int
    area_m2: float
    detected: bool
    detected_epoch: int | None
    epochs_after_onset: int | None
    observed_epoch: int | None


@dataclass(frozen=True)
class PairOutcome:
    """Counts on one epoch pair; `false_alarm_types` counts false alarms by detector type."""

    before_epoch: int
    after_epoch: int
    objects: int
    suspected: int
    false_alarms: int
    approved_lookalikes: int
    benign_events: int
    benign_flagged: int
    false_alarm_types: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class WorldScore:
    """The remote-sensing yardstick of a world.

    Attributes
    ----------
    violations : tuple of ViolationOutcome
        One per scoreable violation (not approved, onset after the first epoch), truth order.
    pairs : tuple of PairOutcome
    area_km2 : float
        Area watched, square kilometres.
    false_alarms : int
        Suspected objects touching no violation standing on that pair and no approved look-alike.
    false_alarms_per_km2_per_epoch : float
        `false_alarms` / `area_km2` / number of pairs.
    benign_events, benign_flagged : int
        Farm-work events with a pair ending on their epoch, and those a suspected object touches.
    benign_flagged_share : float
        Fraction 0–1 (0 when there are no events).
    detection_rate : float
        Fraction 0–1 of `violations` detected at any time after onset.
    violations_observed : int
        Violations seen clear on at least one pair at or after their onset.
    observed_detection_rate : float
        Fraction 0–1 of those detected.
    median_epochs_after_onset : float or None
        Median delay of the detected ones, in epochs (None when none was detected).
    """

    violations: tuple[ViolationOutcome, ...]
    pairs: tuple[PairOutcome, ...]
    area_km2: float
    false_alarms: int
    false_alarms_per_km2_per_epoch: float
    benign_events: int
    benign_flagged: int
    benign_flagged_share: float
    detection_rate: float
    violations_observed: int
    observed_detection_rate: float
    median_epochs_after_onset: float | None


def score_world(
    violations: Sequence[TruthViolation],
    benign: Sequence[BenignEvent],
    pairs: Sequence[PairDetections],
    *,
    area_km2: float,
    min_clear_fraction: float = 0.5,
) -> WorldScore:
    """Score detections on consecutive epoch pairs against the truth of one world.

    Parameters
    ----------
    violations : sequence of TruthViolation
        Every violation and approved look-alike; those standing on the first epoch cannot
        be seen as change and are left out of the detection rate.
    benign : sequence of BenignEvent
    pairs : sequence of PairDetections
        In any order; each pair's `after_epoch` must be its `before_epoch` + 1.
    area_km2 : float
        Area watched, square kilometres (> 0).
    min_clear_fraction : float
        A violation counts as observed on a pair when at least this fraction (0–1) of its
        extent is clear on both dates.

    Returns
    -------
    WorldScore

    Raises
    ------
    ValueError
        `area_km2` not positive, or a pair whose epochs are not consecutive.
    """
    if not area_km2 > 0:
        raise ValueError(f"area_km2 must be positive, got {area_km2}; give the watched area")
    ordered = sorted(pairs, key=lambda pair: pair.after_epoch)
    for pair in ordered:
        if pair.after_epoch != pair.before_epoch + 1:
            raise ValueError(
                f"pair {pair.before_epoch}→{pair.after_epoch} is not consecutive; "
                "score each consecutive pair of epochs"
            )
    outcomes = tuple(
        _first_detection(v, ordered, min_clear_fraction) for v in violations if _scoreable(v)
    )
    pair_outcomes = tuple(_score_pair(pair, violations, benign) for pair in ordered)
    false_alarms = sum(p.false_alarms for p in pair_outcomes)
    events = sum(p.benign_events for p in pair_outcomes)
    flagged = sum(p.benign_flagged for p in pair_outcomes)
    delays = [o.epochs_after_onset for o in outcomes if o.epochs_after_onset is not None]
    observed = [o for o in outcomes if o.observed_epoch is not None]
    return WorldScore(
        violations=outcomes,
        pairs=pair_outcomes,
        area_km2=area_km2,
        false_alarms=false_alarms,
        false_alarms_per_km2_per_epoch=false_alarms / area_km2 / max(len(ordered), 1),
        benign_events=events,
        benign_flagged=flagged,
        benign_flagged_share=flagged / events if events else 0.0,
        detection_rate=len(delays) / len(outcomes) if outcomes else 0.0,
        violations_observed=len(observed),
        observed_detection_rate=(
            sum(o.detected for o in observed) / len(observed) if observed else 0.0
        ),
        median_epochs_after_onset=float(np.median(delays)) if delays else None,
    )


@dataclass(frozen=True)
class SizeTally:
    """Scored violations of at least `min_area_m2` (area on the last epoch): how many were
    detected, how many some pair saw clear after their onset, and how many of those were
    detected. A violation no image shows clear cannot be detected by any detector, so both
    rates are worth reading."""

    min_area_m2: float
    violations: int
    detected: int
    observed: int
    observed_detected: int


def tally_by_size(
    outcomes: Sequence[ViolationOutcome], *, min_area_m2: float = ACCEPTANCE_AREA_M2
) -> SizeTally:
    """Count `outcomes` of at least `min_area_m2` (see `SizeTally`)."""
    large = [outcome for outcome in outcomes if outcome.area_m2 >= min_area_m2]
    observed = [outcome for outcome in large if outcome.observed_epoch is not None]
    return SizeTally(
        min_area_m2=min_area_m2,
        violations=len(large),
        detected=sum(outcome.detected for outcome in large),
        observed=len(observed),
        observed_detected=sum(outcome.detected for outcome in observed),
    )


def _scoreable(violation: TruthViolation) -> bool:
    return not violation.in_approved and violation.onset_epoch >= 1


def _suspected(pair: PairDetections) -> list[BaseGeometry]:
    return [found.geometry for found in pair.objects if not found.benign]


def _first_detection(
    violation: TruthViolation, pairs: Sequence[PairDetections], min_clear_fraction: float
) -> ViolationOutcome:
    found_on: int | None = None
    observed_on: int | None = None
    for pair in pairs:
        extent = violation.extent_on(pair.after_epoch)
        if extent is None:
            continue
        clear = pair.clear_fraction.get(violation.violation_id, 1.0) >= min_clear_fraction
        if clear and observed_on is None:
            observed_on = pair.after_epoch
        if any(geometry.intersects(extent) for geometry in _suspected(pair)):
            found_on = pair.after_epoch
            break
    return ViolationOutcome(
        violation_id=violation.violation_id,
        violation_type=violation.violation_type,
        onset_epoch=violation.onset_epoch,
        area_m2=violation.area_m2,
        detected=found_on is not None,
        detected_epoch=found_on,
        epochs_after_onset=None if found_on is None else found_on - violation.onset_epoch,
        observed_epoch=observed_on if observed_on is not None else found_on,
    )


def _score_pair(
    pair: PairDetections, violations: Sequence[TruthViolation], benign: Sequence[BenignEvent]
) -> PairOutcome:
    suspected = _suspected(pair)
    types = [found.change_type for found in pair.objects if not found.benign]
    standing = [(v, v.extent_on(pair.after_epoch)) for v in violations]
    real = [extent for v, extent in standing if extent is not None and not v.in_approved]
    approved = [extent for v, extent in standing if extent is not None and v.in_approved]
    touches_real = _touching(suspected, real)
    touches_approved = _touching(suspected, approved)
    events = [event.geometry for event in benign if event.epoch == pair.after_epoch]
    flagged = _touching(events, suspected)
    false_alarm = ~touches_real & ~touches_approved
    return PairOutcome(
        before_epoch=pair.before_epoch,
        after_epoch=pair.after_epoch,
        objects=len(pair.objects),
        suspected=len(suspected),
        false_alarms=int(false_alarm.sum()),
        approved_lookalikes=int((~touches_real & touches_approved).sum()),
        benign_events=len(events),
        benign_flagged=int(flagged.sum()),
        false_alarm_types=dict(
            Counter(t for t, hit in zip(types, false_alarm, strict=True) if hit)
        ),
    )


def _touching(queries: Sequence[BaseGeometry], targets: Sequence[BaseGeometry]) -> np.ndarray:
    """For each query geometry, whether it intersects any target (bool array)."""
    hit = np.zeros(len(queries), dtype=bool)
    if not queries or not targets:
        return hit
    query_index, _ = STRtree(list(targets)).query(list(queries), predicate="intersects")
    hit[np.unique(query_index)] = True
    return hit
