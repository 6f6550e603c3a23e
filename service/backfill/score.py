"""A backfill's cases scored against a simulated world's truth: found, onset dated, why missed.

A violation is found when a case outline touches it; its onset is dated within one epoch when
the case's likeliest onset date (its "first visible" date where the trace gave none) falls on
the violation's onset epoch, the one before or the one after. A case that grew in places apart
dates each violation by the place its first detection went to. Every violation not found with
its onset so dated gets one reason, the first of: never seen clear, smaller than the mapping
unit, not detected, detected but judged farm work, detected but screened out, found with its
onset hidden (cloud over the onset: dated late, but within one epoch of the first date the
detector saw it), or found with its onset dated too early or late.

"Seen clear" is the detector's own view: a pixel counts only where the detector compared it,
clear and beyond its margin of cloud and nodata (`invalid_buffer_m`) on the date and on the
last clear look before it. A date clear over the violation but all near a cloud shows the
detector, and so the trace, nothing of it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import shapely
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry
from sqlalchemy import select
from sqlalchemy.orm import Session

from detection.world_score import TruthViolation
from models.case import Case
from models.detection import Detection, DetectionSource
from models.scene import Scene

ONSET_TOLERANCE_EPOCHS = 1
TARGET_SHARE = 0.9  # of injected violations found with their onset so dated (issue 10)

NEVER_SEEN_CLEAR = "never seen clear after onset"
TOO_SMALL = "smaller than the detector's mapping unit"
NOT_DETECTED = "seen clear but not detected"
FARM_WORK = "detected but judged farm work"
SCREENED_OUT = "detected but screened out"
NO_CASE = "detected but its case lies elsewhere"
ONSET_UNDATED = "found, onset not dated"
ONSET_HIDDEN = "found, onset hidden: dated within one epoch of the first look"
ONSET_EARLY = "found, onset dated too early"
ONSET_LATE = "found, onset dated too late"


@dataclass(frozen=True)
class CaseSeen:
    """A case as the scorer needs it: outline in the world CRS, onset bracket as epochs."""

    code: str
    geometry: BaseGeometry
    onset_after_epoch: int | None  # last clearly unchanged
    onset_before_epoch: int | None  # first visible
    onset_likeliest_epoch: int | None = None
    # A case of places apart: each place read as a case of its own (same code), its own bracket.
    parts: tuple[CaseSeen, ...] = ()

    @property
    def dated_epoch(self) -> int | None:
        """The epoch the case says the change began on."""
        if self.onset_likeliest_epoch is not None:
            return self.onset_likeliest_epoch
        return self.onset_before_epoch

    def part_over(self, place: BaseGeometry) -> CaseSeen:
        """The part of the case that dates `place` (the one overlapping it most), or the
        whole case when it was traced as one place."""
        if not self.parts:
            return self
        return max(self.parts, key=lambda part: part.geometry.intersection(place).area)


@dataclass(frozen=True)
class DetectionSeen:
    """A stored detection on the pair ending on `epoch`, outline in the world CRS."""

    epoch: int
    geometry: BaseGeometry
    screening: str
    change_type: str
    case_code: str | None  # the case it opened or joined

    @property
    def has_case(self) -> bool:
        return self.case_code is not None


@dataclass(frozen=True)
class ViolationResult:
    violation_id: str
    violation_type: str
    onset_epoch: int
    area_m2: float
    first_clear_epoch: int | None  # first epoch at or after onset the detector saw it clear
    case_code: str | None
    onset_after_epoch: int | None
    onset_before_epoch: int | None
    dated_epoch: int | None  # the case's likeliest onset, or its first visible date
    missed_because: str | None  # None: found with its onset within the tolerance
    detail: str = ""
    cases_touching: int = 0

    @property
    def found(self) -> bool:
        return self.case_code is not None

    @property
    def onset_error_epochs(self) -> int | None:
        if self.dated_epoch is None or not self.found:
            return None
        return self.dated_epoch - self.onset_epoch


@dataclass(frozen=True)
class BackfillScore:
    violations: tuple[ViolationResult, ...]
    cases: int
    cases_on_violations: int
    cases_on_approved_lookalikes: int

    @property
    def found(self) -> int:
        return sum(v.found for v in self.violations)

    @property
    def found_with_onset(self) -> int:
        return sum(v.missed_because is None for v in self.violations)

    @property
    def found_with_first_look(self) -> int:
        """Dated within one epoch of the onset or, when cloud hid the onset, of the first date
        the detector saw the violation: no dating from this imagery can do better."""
        return self.found_with_onset + sum(
            v.missed_because == ONSET_HIDDEN for v in self.violations
        )

    @property
    def found_in_one_case(self) -> int:
        """Found violations touched by one case only (one case per place)."""
        return sum(v.found and v.cases_touching == 1 for v in self.violations)

    @property
    def target_met(self) -> bool:
        total = len(self.violations)
        return total > 0 and self.found_with_onset >= TARGET_SHARE * total

    @property
    def seen_clear(self) -> int:
        """Violations not missed as never seen clear after their onset (a found one counts
        however cloudy its dates were: a case over it is what an image showed)."""
        return sum(v.missed_because != NEVER_SEEN_CLEAR for v in self.violations)

    @property
    def target_met_over_seen(self) -> bool:
        """The target read over what the imagery shows: dated within one epoch of the onset,
        or of the first clear look where cloud hid it, over the violations seen clear after
        their onset. No dating from these images can reach the others."""
        seen = self.seen_clear
        return seen > 0 and self.found_with_first_look >= TARGET_SHARE * seen

    def as_json(self, dates: Sequence[date]) -> dict[str, Any]:
        total = len(self.violations)

        def day(epoch: int | None) -> str | None:
            return dates[epoch].isoformat() if epoch is not None else None

        return {
            "violations_scored": total,
            "found": self.found,
            "found_share": _share(self.found, total),
            "onset_within_one_epoch": self.found_with_onset,
            "onset_within_one_epoch_share_of_found": _share(self.found_with_onset, self.found),
            "found_with_onset_share": _share(self.found_with_onset, total),
            "onset_within_one_epoch_of_first_look": self.found_with_first_look,
            "target_share": TARGET_SHARE,
            "target_met": self.target_met,
            "seen_clear_after_onset": self.seen_clear,
            "target_met_over_seen": self.target_met_over_seen,
            "missed_by_reason": dict(
                Counter(v.missed_because for v in self.violations if v.missed_because).most_common()
            ),
            "found_in_one_case": self.found_in_one_case,
            "cases": self.cases,
            "cases_on_violations": self.cases_on_violations,
            "cases_on_approved_lookalikes": self.cases_on_approved_lookalikes,
            "cases_elsewhere": self.cases
            - self.cases_on_violations
            - self.cases_on_approved_lookalikes,
            "violations_detail": [
                {
                    "id": v.violation_id,
                    "type": v.violation_type,
                    "area_m2": round(v.area_m2, 1),
                    "onset": day(v.onset_epoch),
                    "first_seen_clear": day(v.first_clear_epoch),
                    "case": v.case_code,
                    "cases_touching": v.cases_touching,
                    "last_unchanged": day(v.onset_after_epoch),
                    "first_visible": day(v.onset_before_epoch),
                    "likeliest_onset": day(v.dated_epoch),
                    "onset_error_epochs": v.onset_error_epochs,
                    "missed_because": v.missed_because,
                    "detail": v.detail,
                }
                for v in self.violations
            ],
        }


def _share(part: int, whole: int) -> float:
    return round(part / whole, 3) if whole else 0.0


def read_backfill_results(
    session: Session,
    *,
    to_world: Callable[[Any, Any], Any],
    epoch_of: Mapping[date, int],
) -> tuple[list[CaseSeen], list[DetectionSeen]]:
    """Every case and remote-sensing detection in the database, outlines moved into the world
    CRS by `to_world` (lon/lat arrays in, x/y arrays out), dates turned into epoch indices."""

    def epoch(when: Any) -> int | None:
        return None if when is None else _epoch_at(when.date(), epoch_of)

    def projected(geometry: BaseGeometry) -> BaseGeometry:
        # Reprojection can fold a valid lon/lat outline onto itself by a rounding error, and
        # GEOS refuses to intersect a self-touching polygon.
        return shapely.make_valid(shapely.transform(geometry, to_world, interleaved=False))

    def on_date(iso: str | None) -> int | None:
        return None if iso is None else _epoch_at(date.fromisoformat(iso[:10]), epoch_of)

    def part(code: str, traced: Mapping[str, Any]) -> CaseSeen:
        return CaseSeen(
            code,
            projected(shape(traced["outline"])),
            on_date(traced["last_unchanged"]),
            on_date(traced["first_visible"]),
            on_date(traced["likeliest_onset"]),
        )

    cases = [
        CaseSeen(
            c.code,
            projected(c.geom),
            epoch(c.onset_after),
            epoch(c.onset_before),
            epoch(c.onset_likeliest),
            tuple(part(c.code, traced) for traced in c.onset_parts),
        )
        for c in session.scalars(select(Case).order_by(Case.id))
    ]
    codes = {case_id: code for case_id, code in session.execute(select(Case.id, Case.code))}
    statement = (
        select(Detection, Scene.acquired_at)
        .join(Scene, Scene.id == Detection.scene_id)
        .where(Detection.source == DetectionSource.remote_sensing)
    )
    detections = [
        DetectionSeen(
            epoch=_epoch_at(acquired_at.date(), epoch_of),
            geometry=projected(detection.geom),
            screening=str(detection.screening),
            change_type=str(detection.change_type),
            case_code=codes.get(detection.case_id) if detection.case_id else None,
        )
        for detection, acquired_at in session.execute(statement)
    ]
    return cases, detections


def _epoch_at(day: date, epoch_of: Mapping[date, int]) -> int:
    """The epoch of a date: its own, or the last epoch before it (scenes carry epoch dates)."""
    earlier = [d for d in epoch_of if d <= day]
    return epoch_of[max(earlier)] if earlier else 0


def score_backfill(
    violations: Sequence[TruthViolation],
    cases: Sequence[CaseSeen],
    detections: Sequence[DetectionSeen],
    *,
    clear_fraction: Mapping[int, Mapping[str, float]],
    min_clear_fraction: float = 0.5,
    min_mapping_unit_m2: float = 0.0,
) -> BackfillScore:
    """Score what a backfill left in the database against the world's violations.

    Parameters
    ----------
    violations : sequence of TruthViolation
        Every violation and approved look-alike, world CRS; those standing on the first epoch
        or inside approved land are not scored.
    cases, detections : sequences of CaseSeen and DetectionSeen
        World CRS, as `read_backfill_results` gives them.
    clear_fraction : mapping of int to mapping of str to float
        Per epoch index e, per violation id standing on e, the fraction 0–1 of its extent the
        detector compared on e (`detector_clear_fractions` of `scripts.evaluate_backfill`).
    min_clear_fraction : float
        A violation is seen clear on an epoch when at least this fraction of it is compared.
    min_mapping_unit_m2 : float
        The detector's smallest object, square metres.
    """
    scored = [v for v in violations if not v.in_approved and v.onset_epoch >= 1]
    results = tuple(
        _score_violation(
            v, cases, detections, clear_fraction, min_clear_fraction, min_mapping_unit_m2
        )
        for v in scored
    )
    real = [v.geometry for v in violations if not v.in_approved]
    approved = [v.geometry for v in violations if v.in_approved]
    on_real = [c for c in cases if _touches_any(c.geometry, real)]
    on_approved = [c for c in cases if c not in on_real and _touches_any(c.geometry, approved)]
    return BackfillScore(results, len(cases), len(on_real), len(on_approved))


def _touches_any(geometry: BaseGeometry, targets: Sequence[BaseGeometry]) -> bool:
    return any(geometry.intersects(target) for target in targets)


def _score_violation(
    violation: TruthViolation,
    cases: Sequence[CaseSeen],
    detections: Sequence[DetectionSeen],
    clear_fraction: Mapping[int, Mapping[str, float]],
    min_clear_fraction: float,
    min_mapping_unit_m2: float,
) -> ViolationResult:
    first_clear = next(
        (
            epoch
            for epoch in sorted(clear_fraction)
            if epoch >= violation.onset_epoch
            and clear_fraction[epoch].get(violation.violation_id, 0.0) >= min_clear_fraction
        ),
        None,
    )
    found = _case_of(violation, cases, detections)
    case = found[0].part_over(found[1]) if found else None
    missed: str | None
    if case is None:
        missed, detail = _why_not_found(
            violation, detections, first_clear, min_mapping_unit_m2=min_mapping_unit_m2
        )
    else:
        missed, detail = _onset_verdict(violation, case, first_clear)
    return ViolationResult(
        violation_id=violation.violation_id,
        violation_type=violation.violation_type,
        onset_epoch=violation.onset_epoch,
        area_m2=violation.area_m2,
        first_clear_epoch=first_clear,
        case_code=case.code if case else None,
        onset_after_epoch=case.onset_after_epoch if case else None,
        onset_before_epoch=case.onset_before_epoch if case else None,
        dated_epoch=case.dated_epoch if case else None,
        missed_because=missed,
        detail=detail,
        cases_touching=sum(c.geometry.intersects(violation.geometry) for c in cases),
    )


def _case_of(
    violation: TruthViolation, cases: Sequence[CaseSeen], detections: Sequence[DetectionSeen]
) -> tuple[CaseSeen, BaseGeometry] | None:
    """The violation's case and the outline that placed it there: the case its first
    detection (on its extent of that epoch) opened or joined, with that detection's outline.
    A case that began elsewhere and grew over the place later, joining a neighbour, does not
    date it; a case on the place that began earlier does, as that detection joined it.

    Without such a detection, the first case at the place: the earliest first-visible date
    among the cases touching the violation (larger overlap first on a tie), with the
    violation's own outline.
    """
    by_code = {case.code: case for case in cases}
    first_hit = min(
        (
            (d.epoch, -d.geometry.intersection(extent).area, by_code[d.case_code], d.geometry)
            for d in detections
            if d.case_code is not None
            and d.case_code in by_code
            and (extent := violation.extent_on(d.epoch)) is not None
            and d.geometry.intersects(extent)
        ),
        key=lambda hit: hit[:2],
        default=None,
    )
    if first_hit is not None:
        return first_hit[2], first_hit[3]
    touching = [c for c in cases if c.geometry.intersects(violation.geometry)]
    if not touching:
        return None

    def order(case: CaseSeen) -> tuple[bool, int, float]:
        undated = case.onset_before_epoch is None
        overlap = case.geometry.intersection(violation.geometry).area
        return undated, case.onset_before_epoch or 0, -overlap

    return min(touching, key=order), violation.geometry


def _why_not_found(
    violation: TruthViolation,
    detections: Sequence[DetectionSeen],
    first_clear: int | None,
    *,
    min_mapping_unit_m2: float,
) -> tuple[str, str]:
    hits = [
        d
        for d in detections
        if (extent := violation.extent_on(d.epoch)) is not None and d.geometry.intersects(extent)
    ]
    if not hits:
        if first_clear is None:
            return NEVER_SEEN_CLEAR, "cloud, nodata or their margin over half of it on every date"
        if violation.area_m2 < min_mapping_unit_m2:
            return TOO_SMALL, f"{violation.area_m2:.0f} m² < {min_mapping_unit_m2:.0f} m²"
        return NOT_DETECTED, "no detection touched it on any pair from its onset on"
    said = ", ".join(
        f"{name} ×{count}"
        for name, count in Counter(
            d.change_type if d.screening == "benign" else f"{d.screening} ({d.change_type})"
            for d in hits
        ).most_common()
    )
    if any(d.has_case for d in hits):
        # A detection of it joined a case that does not reach its extent (cases merge by place).
        return NO_CASE, f"its detections joined cases elsewhere: {said}"
    if all(d.screening == "benign" for d in hits):
        return FARM_WORK, f"only objects judged farm work touched it: {said}"
    return SCREENED_OUT, f"its detections were screened as {said}"


def _onset_verdict(
    violation: TruthViolation, case: CaseSeen, first_clear: int | None
) -> tuple[str | None, str]:
    """None when the case dates the onset within one epoch; otherwise why not, and how far.

    A dating late by more than one epoch but within one epoch of the first date the detector
    saw the violation (`first_clear`) is told apart: cloud hid the onset, not the trace.
    """
    dated = case.dated_epoch
    if dated is None or case.onset_before_epoch is None:
        return ONSET_UNDATED, "the trace found no clear look at the violation"
    error = dated - violation.onset_epoch
    bracket = (
        "the truth lies in the bracket"
        if (case.onset_after_epoch is None or case.onset_after_epoch < violation.onset_epoch)
        and violation.onset_epoch <= case.onset_before_epoch
        else "the truth lies outside the bracket"
    )
    if abs(error) <= ONSET_TOLERANCE_EPOCHS:
        return None, bracket
    if error > 0 and first_clear is not None:
        after_look = dated - first_clear
        if abs(after_look) <= ONSET_TOLERANCE_EPOCHS:
            return (
                ONSET_HIDDEN,
                f"{error:+d} epochs, {after_look:+d} from the first look; {bracket}",
            )
    reason = ONSET_EARLY if error < 0 else ONSET_LATE
    return reason, f"{error:+d} epochs; {bracket}"
