"""What Dask workers run: pure functions of file paths and outlines, results that pickle.

Nothing here reads the database or the settings, so a worker on another machine needs only
the package and read access to the imagery.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

import numpy as np
import shapely
from rasterio.errors import RasterioError
from rasterio.features import geometry_mask
from rasterio.windows import Window, from_bounds
from rasterio.windows import transform as window_transform
from scipy import ndimage
from shapely.geometry.base import BaseGeometry

from detection.errors import DetectionError
from detection.io.raster import Raster
from detection.radiometry import Normalisation, fit_normalisation_with
from detection.raster_pair import detect_changes
from detection.rs_params import RasterDetectorParams
from detection.rs_reference import clear_beyond, margin_px
from detection.rs_tiles import lattice_step
from service.analysis.pair import (
    Chip,
    PairComparison,
    compare_rasters,
    last_clear_look,
    read_tile,
    stretched,
    transformer,
    true_colour,
)

TRACE_MARGIN_PX = 32  # context around an outline: the detector's statistics need some
TRACE_MIN_SIDE_PX = 96
MIN_OBSERVED_FRACTION = 0.5  # of the outline's pixels the detector compares: a look
DIFFERS_FRACTION = 0.5  # of the outline changed against the violation's look: not there yet
SAME_FRACTION = 0.2  # at most this changed: the violation already stands
AROUND_FRACTION = 0.3  # at most this changed around the outline: a local change
AROUND_PX = 16  # how far around the outline its own surroundings reach
MAX_EARLIER_STAGES = 3  # a violation growing over more epochs than this keeps its latest bracket
STANDOUT_SIGMAS = 4.0  # this many robust spreads from its surroundings, a pixel is unlike them
STANDS_OUT_FRACTION = 0.15  # of the outline: a first stage a third of its final size still counts
BLENDS_IN_FRACTION = 0.05  # of the outline at most: it looks like the field around it
MAX_STANDING_LOOKS = 3  # earlier looks the run of standing-out looks may take the onset back over
MIN_SURROUNDING_PX = 50  # clear pixels around the outline to take their median and spread
BLENDS_IN = "blends_in"  # a look like the violation only as the field around it was too
GLIMPSED = "glimpsed"  # no look, but the outline stood out where cloud left it clear
GLIMPSE_FRACTION = 0.25  # of the outline clear of cloud (its margin aside): enough to judge it
GLIMPSE_EDGE_PX = 1  # clear pixels next to a cloud are left out: the 3 × 3 mean reaches it
GLIMPSE_STANDS_OUT_FRACTION = 0.5  # of what is clear of the outline: near a cloud, most of it
MIN_FIT_CLEAR_FRACTION = 0.5  # of a tile clear on both dates, to fit their radiometry tile-wide
DAYS_A_YEAR = 365.25
SEASON_DAYS = 45  # from an anniversary: the same time of year, give or take a monthly look


@dataclass(frozen=True)
class UnitTask:
    """One tile × date pair to compare, with the farmland valid on the later date.

    `older_paths` are the tile's dates before `before_path`, newest first: where the before
    date is cloud or nodata they give each pixel its last clear look.
    """

    unit_id: int
    before_path: str
    after_path: str
    parcels_lonlat: tuple[BaseGeometry, ...]
    farmland: tuple[tuple[int, BaseGeometry], ...]
    params: RasterDetectorParams
    older_paths: tuple[str, ...] = ()


@dataclass(frozen=True)
class UnitResult:
    unit_id: int
    comparison: PairComparison | None
    failure: str | None
    seconds: float


def compare_unit(task: UnitTask) -> UnitResult:
    """Run the detector on one pair, the before date filled with the last clear look of its
    older dates; a pair that cannot be compared even so gives its reason."""
    started = time.perf_counter()
    try:
        after = read_tile(task.after_path)
        before = read_tile(task.before_path)
        before, source = last_clear_look(before, _older_looks(task.older_paths), task.params)
        comparison = compare_rasters(
            before,
            after,
            parcels_lonlat=task.parcels_lonlat,
            farmland=task.farmland,
            params=task.params,
            reference_source=source,
        )
    except (DetectionError, RasterioError, ValueError) as error:
        return UnitResult(task.unit_id, None, str(error), time.perf_counter() - started)
    return UnitResult(task.unit_id, comparison, None, time.perf_counter() - started)


def _older_looks(paths: Sequence[str]) -> Iterator[Raster]:
    """The dates at `paths`, read only as the composite asks for them; one that cannot be read
    fills less, it does not stop the comparison."""
    for path in paths:
        try:
            raster = read_tile(path)
        except (DetectionError, RasterioError):
            continue
        yield raster


@dataclass(frozen=True)
class DatedScene:
    scene_id: int
    acquired_at: datetime
    path: str


@dataclass(frozen=True)
class TracePart:
    """One part of a case that holds several apart: its outline (lon/lat) and when the
    first detection of it was seen."""

    outline: BaseGeometry
    reference_at: datetime


@dataclass(frozen=True)
class TraceTask:
    """Trace one case: its outline (lon/lat) over the dates of the scenes under it.

    `reference_at` is when the violation was first seen; `rectifying_since`, when set, asks
    whether imagery after that time shows the place returned to farmland. `parts`, when the
    case grew in places apart from one another (a building, and a pond dug beside it months
    later), each get a bracket: see `_sighted_later`. `sighting`, when set, is traced too and
    may narrow the case's bracket: see `_refined`.
    """

    case_id: int
    outline: BaseGeometry
    reference_at: datetime
    rectifying_since: datetime | None = None
    parts: tuple[TracePart, ...] = ()
    # The outline of the case's first sighting, when later detections grew the case beyond
    # it: see `_refined`.
    sighting: BaseGeometry | None = None


@dataclass(frozen=True)
class DateLook:
    scene_id: int
    acquired_at: datetime
    # "differs" (not there yet / gone), "same" (standing), "blends_in" (like the violation,
    # but so was the field around it), "unclear", "unobserved", "glimpsed" (see `_glimpsed`)
    state: str
    changed_fraction: float | None


@dataclass(frozen=True)
class TraceResult:
    """The onset bracket of one case and, when asked, what later imagery shows."""

    case_id: int
    looks: tuple[DateLook, ...]
    onset_after: DateLook | None  # last date the place was clearly unchanged
    onset_before: DateLook | None  # first date the change is visible
    onset_chips: tuple[Chip, Chip] | None
    onset_likeliest: DateLook | None = None  # see `_likeliest_onset`
    rectification: str | None = None  # "observed", "still_present" or "not_observed"
    rectification_look: DateLook | None = None
    rectification_chips: tuple[Chip, Chip] | None = None
    parts: tuple[PartOnset, ...] = ()


@dataclass(frozen=True)
class PartOnset:
    """The onset bracket of one part of a case (see `TraceTask.parts`): its own, or the
    case's for a part sighted with the case."""

    outline: BaseGeometry
    reference_at: datetime
    onset_after: DateLook | None
    onset_before: DateLook | None
    onset_likeliest: DateLook | None


@dataclass(eq=False)
class _DateSample:
    """A lattice of one whole date, to map another date's radiometry into it tile-wide.

    A crop is mostly the violation's own field, whose season moves all of it: radiometry
    fitted on the crop alone would take the change for light. `fits` keeps each mapping once
    fitted (key: the other date's index).
    """

    index: int
    grid: tuple[object, ...]  # shape and transform: lattices of two dates match only on one grid
    pixels: np.ndarray  # (points, bands)
    valid: np.ndarray  # (points,)
    fits: dict[int, Normalisation | None] = field(default_factory=dict)


@dataclass(frozen=True)
class _Crop:
    """The outline and its surroundings cut from one date.

    `comparable` is where the detector would compare this date with another: clear, and
    beyond its margin (`invalid_buffer_m`) of cloud and nodata. Pixels near a cloud are
    neither changed nor unchanged to the detector, so they say nothing either way.
    """

    raster: Raster
    inside: np.ndarray  # the outline's pixels in the crop
    comparable: np.ndarray
    sample: _DateSample | None = None  # the whole date the crop was cut from

    @property
    def observed(self) -> bool:
        """Does this date look at the outline at all (half of it comparable)?"""
        return _covers_outline(self.inside, self.comparable)

    @cached_property
    def stands_out(self) -> float | None:
        """See `_stands_out`; computed once, as several of the trace's rules ask it."""
        return _stands_out_over(self, self.comparable) if self.observed else None


def trace_cases(dates: Sequence[DatedScene], tasks: Sequence[TraceTask]) -> list[TraceResult]:
    """Trace every case of `tasks` over `dates` (each file is read once for all of them)."""
    ordered = sorted(dates, key=lambda d: (d.acquired_at, d.scene_id))
    outlines = [outline for task in tasks for outline in _outlines(task)]
    crops: list[list[_Crop | None]] = [[] for _ in outlines]
    for index, dated in enumerate(ordered):
        try:
            raster = read_tile(dated.path)
        except (DetectionError, RasterioError):
            raster = None  # a date that cannot be read is a date without a look
        sample = _date_sample(index, raster) if raster else None
        for outline, outline_crops in zip(outlines, crops, strict=True):
            outline_crops.append(_crop(raster, outline, sample) if raster else None)
    results, next_crops = [], iter(crops)
    for task in tasks:  # the crops of each task come in the order of `_outlines`
        result = _trace_one(task, ordered, next(next_crops))
        if task.sighting is not None:
            result = _refined(result, _trace_one(_sighted(task), ordered, next(next_crops)))
        parts = tuple(
            _part_onset(part, _trace_one(_alone(task, part), ordered, next(next_crops)))
            if _sighted_later(task, part)
            else _part_onset(part, result)
            for part in task.parts
        )
        results.append(dataclasses.replace(result, parts=parts))
    return results


def _outlines(task: TraceTask) -> list[BaseGeometry]:
    """The outlines traced for `task`: the case's, its first sighting's, its later places'."""
    sighting = [task.sighting] if task.sighting is not None else []
    return [task.outline, *sighting, *(part.outline for part in _later(task))]


def _sighted(task: TraceTask) -> TraceTask:
    assert task.sighting is not None
    return TraceTask(task.case_id, task.sighting, task.reference_at)


def _refined(case: TraceResult, sighted: TraceResult) -> TraceResult:
    """The case's bracket narrowed by the trace over the outline of its first sighting.

    A violation that grew after it was sighted (a pile, a pit or a stack widening month by
    month) gives its case the outline of its latest extent. Over that outline the stage first
    sighted is a small share, so the looks before the onset compare neither the same as that
    stage nor clearly unlike it, and the bracket stays wide. Over the outline the detector drew
    when it first sighted the change, they differ outright. That trace is taken when its
    likeliest onset lies within the case's own bracket: after the case's last clearly
    unchanged date, and no later than its first visible one. Outside it, the first sighting
    is likelier a piece of the violation than its extent then (a pond's first detection inside
    its pit, whose surroundings are pit too, looks like a bare field months before).
    """
    onset = sighted.onset_likeliest
    if onset is None or case.onset_before is None:
        return case
    if onset.acquired_at > case.onset_before.acquired_at:
        return case
    if case.onset_after is not None and onset.acquired_at <= case.onset_after.acquired_at:
        return case
    return dataclasses.replace(
        case,
        onset_after=sighted.onset_after,
        onset_before=sighted.onset_before,
        onset_likeliest=onset,
        onset_chips=sighted.onset_chips,
    )


def _sighted_later(task: TraceTask, part: TracePart) -> bool:
    """Is `part` traced as a case of its own? Only a place sighted after its case was.

    A place sighted with the case is what the case's own trace dated: the case began there.
    Traced over the case's outline, a place that joined later would take that onset instead
    of its own.
    """
    return part.reference_at > task.reference_at


def _later(task: TraceTask) -> list[TracePart]:
    return [part for part in task.parts if _sighted_later(task, part)]


def _alone(task: TraceTask, part: TracePart) -> TraceTask:
    return TraceTask(task.case_id, part.outline, part.reference_at)


def _part_onset(part: TracePart, traced: TraceResult) -> PartOnset:
    return PartOnset(
        part.outline,
        part.reference_at,
        traced.onset_after,
        traced.onset_before,
        traced.onset_likeliest,
    )


def _date_sample(index: int, raster: Raster) -> _DateSample:
    """The detector's sampling lattice over the whole of `raster`, the `index`-th date."""
    params = RasterDetectorParams()
    step = lattice_step(*raster.shape, params.sample_pixels)
    pixels = raster.array[::step, ::step]
    valid = ~raster.nodata[::step, ::step]
    return _DateSample(
        index,
        (raster.shape, raster.transform),
        np.asarray(pixels, dtype=np.float32).reshape(-1, pixels.shape[2]),
        valid.ravel(),
    )


def _tile_wide_fit(earlier: _DateSample | None, later: _DateSample | None) -> Normalisation | None:
    """The later date's radiometry mapped into the earlier's over both whole dates (None: the
    two are on different grids or share too little clear ground; the crop fits its own)."""
    if earlier is None or later is None or earlier.grid != later.grid:
        return None
    if later.index not in earlier.fits:
        both = earlier.valid & later.valid
        fit = None
        if both.mean() >= MIN_FIT_CLEAR_FRACTION:
            params = RasterDetectorParams()
            fit = fit_normalisation_with(earlier.pixels[both], later.pixels[both], params)
        earlier.fits[later.index] = fit
    return earlier.fits[later.index]


def _trace_one(task: TraceTask, dates: list[DatedScene], crops: list[_Crop | None]) -> TraceResult:
    reference = _reference_index(task, dates, crops)
    if reference is None:
        looks = tuple(_look(d, "unobserved", None) for d in dates)
        return TraceResult(task.case_id, looks, None, None, None)
    ref_crop = crops[reference]
    assert ref_crop is not None
    ref_stands_out = (_stands_out(ref_crop) or 0.0) >= STANDS_OUT_FRACTION
    looks = tuple(
        _look(d, "same", 0.0)
        if i == reference
        else _compare_look(d, crop, ref_crop, ref_stands_out)
        for i, (d, crop) in enumerate(zip(dates, crops, strict=True))
    )
    after, before = _onset(looks, reference)
    after, before = _held_to_first_sighting(after, before, crops, looks, reference)
    after, before = _earlier_stages(after, before, crops)
    before, unchanged = _first_departure(after, before, crops)
    standing = _standing_since(crops, reference)
    if standing is not None and standing[0] is None and _unlike_it_before(looks, reference):
        # A run from the first look dates the case on it only when the comparisons agree
        # that every earlier look already showed the violation (but for the time of year):
        # two witnesses, each alone.
        standing = None
    if standing is None:
        standing = _unchanged_since_first_look(crops, reference)
    if standing is not None and standing[1] < before:  # a stage the comparisons set aside
        after, before = standing
        unchanged = after
    if unchanged is not None and ref_stands_out:
        glimpsed, unchanged = _glimpsed(crops, unchanged, before)
        if glimpsed != before:
            before = glimpsed
            looks = _restated(looks, before, GLIMPSED)
    chips = _chips(crops, after, before)
    result = TraceResult(
        task.case_id,
        looks,
        _at(looks, after),
        _at(looks, before),
        chips,
        onset_likeliest=looks[_likeliest_onset(unchanged, before)],
    )
    if task.rectifying_since is None:
        return result
    return _with_rectification(result, task.rectifying_since, crops, reference)


def _unlike_it_before(looks: tuple[DateLook, ...], reference: int) -> bool:
    """Does a comparison find a look before the reference unlike the violation, other than
    for the time of year (`_the_seasons`)?"""
    return any(
        look.state == "differs" and not _the_seasons(looks, reference, look.acquired_at)
        for look in looks[:reference]
    )


def _the_seasons(looks: tuple[DateLook, ...], reference: int, when: datetime) -> bool:
    """Do the violation's own looks after the reference, at the time of year of `when`
    (within `SEASON_DAYS` of a later anniversary), all differ from it?

    A slab, a pile or a stack stays, but the light, the moisture and the field around it
    change with the seasons: compared with its reference, the violation may itself look
    unlike it every winter. A look unlike it at that time of year, before the reference, is
    then no sign that it was not there yet. Without such a later look, it is one.
    """
    seen = [
        look.state
        for look in looks[reference + 1 :]
        if look.state in ("same", "differs") and _near_anniversary(when, look.acquired_at)
    ]
    return bool(seen) and "same" not in seen


def _near_anniversary(earlier: datetime, later: datetime) -> bool:
    """Is `later` a whole number of years (one or more) after `earlier`, give or take
    `SEASON_DAYS`?"""
    years = round((later - earlier).days / DAYS_A_YEAR)
    return years >= 1 and abs((later - earlier).days - years * DAYS_A_YEAR) <= SEASON_DAYS


def _reference_index(
    task: TraceTask, dates: list[DatedScene], crops: list[_Crop | None]
) -> int | None:
    """The first clear look at or after the first sighting: what the violation looks like."""
    for index, (dated, crop) in enumerate(zip(dates, crops, strict=True)):
        if dated.acquired_at >= task.reference_at and crop is not None and crop.observed:
            return index
    return None


def _onset(looks: tuple[DateLook, ...], reference: int) -> tuple[int | None, int]:
    """Walk back from the reference: the last "differs" date, and the earliest "same" after it."""
    first_same = reference
    for index in range(reference - 1, -1, -1):
        state = looks[index].state
        if state == "differs":
            return index, first_same
        if state == "same":
            first_same = index
    return None, first_same


def _held_to_first_sighting(
    after: int | None,
    before: int,
    crops: list[_Crop | None],
    looks: tuple[DateLook, ...],
    reference: int,
) -> tuple[int | None, int]:
    """Keep looks "the same as the violation" from dating it before the last look its first
    sighting was compared with.

    The case was first sighted on the reference date (or on dates just before it that did not
    show the place): a detector compared it with the place's last look before it and found the
    change then. A backfill makes that comparison over the whole tile, against each pixel's
    last clear look and with the parcels. A crop around the outline that looks the same as the
    violation says less: a pit or a pile of soil looks like the bare field of another season.
    The walk may still end on that last look (one look the detector missed); one that passes
    it stops there, with that look the last unchanged one. So does a walk that passes over
    looks up to that last one on which the place only blended into a field like the
    violation (`BLENDS_IN`): they are no more evidence of it than looks the same as it. An
    earlier stage of a violation that grew is still found by the step comparisons of
    `_earlier_stages`.

    Nothing is held when that last look was the same as the violation and stood out from the
    field around it (`_stands_out`), at the end of a run of such looks no longer than
    `_standing_since` trusts: a bare field of another season blends into the fields around
    it, so the place already held the violation, or a stage of it, and the sighting was of
    its growth (or of a piece of the case the crop does not tell apart). A longer run the
    detector would have sighted sooner: it is more likely the place itself.
    """
    seen = _previous_clear(crops, reference)
    if seen is None or before == seen or _stood_out_alike_briefly(crops, looks, seen):
        return after, before
    if before < seen:
        return seen, reference
    # No look up to `seen` compared the same as the violation; one that blends in counts so.
    passed = range(0 if after is None else after + 1, seen + 1)
    if any(looks[index].state == BLENDS_IN for index in passed):
        return seen, reference
    return after, before


def _stood_out_alike_briefly(
    crops: list[_Crop | None], looks: tuple[DateLook, ...], last: int
) -> bool:
    """Do the looks up to `last` end in a run of at most `MAX_STANDING_LOOKS` looks, `last`
    among them, each the same as the violation and unlike the field around it?"""
    run = 0
    for index in range(last, -1, -1):
        if not _is_look(crops[index]):
            continue
        fraction = _stands_out(crops[index])
        if looks[index].state != "same" or fraction is None or fraction < STANDS_OUT_FRACTION:
            break
        run += 1
    return 0 < run <= MAX_STANDING_LOOKS


def _earlier_stages(
    after: int | None, before: int, crops: list[_Crop | None]
) -> tuple[int | None, int]:
    """Move the bracket back over earlier stages of a violation that changed after onset.

    The last date unlike the violation's look may be an earlier stage of it (a stack that
    grew since, a building not yet roofed). Walk back date by date, each clear date compared
    with the clear date before it: while that comparison differs, the earlier stage already
    departed from the place's unchanged look. The walk counts only when it ends on a date the
    same as the one before it, an unchanged look, or on the first clear date: the step after
    it departed from it, so the change came later (the first date may itself hold an earlier
    stage, but nothing dates it earlier). A walk that meets an unclear comparison keeps the
    bracket against the violation's look.
    """
    moved_after, moved_before = after, before
    steps = 0
    while moved_after is not None and steps < MAX_EARLIER_STAGES:
        earlier = _previous_clear(crops, moved_after)
        if earlier is None:
            return moved_after, moved_before
        state = _step_state(crops, earlier, moved_after)
        if state == "same":
            return moved_after, moved_before
        if state != "differs":
            return after, before
        moved_after, moved_before = earlier, moved_after
        steps += 1
    return after, before


def _first_departure(
    after: int | None, before: int, crops: list[_Crop | None]
) -> tuple[int, int | None]:
    """The first date after the last unchanged one that differs from it, and the last date
    before that one still showing the place unchanged (`after` itself if none; None without
    `after`).

    Dates between the two ends of the bracket are neither like the violation's look nor
    clearly unlike it: an earlier stage shows so. Compared with the unchanged look instead,
    the first one that departs from it is when the violation was first visible.
    """
    if after is None:
        return before, None
    unchanged = after
    for index in range(after + 1, before):
        if not _is_look(crops[index]):
            continue
        state = _step_state(crops, after, index)
        if state == "differs":
            return index, unchanged
        if state == "same":
            unchanged = index
    return before, unchanged


def _standing_since(crops: list[_Crop | None], reference: int) -> tuple[int | None, int] | None:
    """The last look where the outline blended into the field around it, and the first of the
    unbroken run of looks after it, up to the reference, where the outline stood out from that
    field (None: no such run; None as the first: the run reaches back to the first look).

    Each look is judged on its own date, against the violation's own surroundings, not against
    another date: a pile, a pit or a slab stands out from the crop or soil around it whatever
    the season does to both, so a first stage too small or too faint for the detector's
    comparisons still dates the case. A violation that looks like the field around it (soil
    on a bare field) blends in and ends the run: that look is no evidence either way, so the
    bracket from the comparisons stands unless the run reaches an earlier date. Looks that do
    not show the place (cloud, its margin, a missing file) neither break nor extend the run.
    A run over more than `MAX_STANDING_LOOKS` looks before the reference says nothing as a
    rule: the detector compares every date and would have sighted a violation standing that
    long, so it is more likely the place itself (a strip of another crop). Unless the place
    blended into its field on every look before the run, more looks than a run the rule
    trusts (`_quiet_before`): a place like its field that long that then stood out on every
    look did change when the run began, however long the detector took to sight it (a pit
    whose look changed with the water in it). A shorter run that reaches back to the
    first clear look is what a violation standing before the imagery began leaves: no
    earlier look could show the change, so no comparison could sight it.
    """
    first = _stands_out(crops[reference])
    if first is None or first < STANDS_OUT_FRACTION:
        return None
    earliest, taken = reference, 0
    for index in range(reference - 1, -1, -1):
        fraction = _stands_out(crops[index])
        if fraction is None:
            continue
        if fraction <= BLENDS_IN_FRACTION:
            if taken <= MAX_STANDING_LOOKS or _quiet_before(crops, index):
                return index, earliest
            return None
        if fraction < STANDS_OUT_FRACTION:
            return None
        earliest, taken = index, taken + 1
    if taken > MAX_STANDING_LOOKS:
        return None
    return None, earliest  # standing from the first look: it may predate the imagery


def _quiet_before(crops: list[_Crop | None], last: int) -> bool:
    """Did the outline blend into its field on every look up to `last`, and on more than
    `MAX_STANDING_LOOKS` of them?"""
    quiet = 0
    for crop in crops[: last + 1]:
        fraction = _stands_out(crop)
        if fraction is None:
            continue
        if fraction > BLENDS_IN_FRACTION:
            return False
        quiet += 1
    return quiet > MAX_STANDING_LOOKS


def _unchanged_since_first_look(
    crops: list[_Crop | None], reference: int
) -> tuple[None, int] | None:
    """(None, the first clear look) when the place stood out from its field on every look up
    to the reference and no step from one look to the next changed it (None otherwise).

    A violation that stood before the first clear look leaves no pair of dates to sight it
    by; the detector finds it later, if at all, by how it stands out from its parcel. The
    comparisons with the reference then follow the seasons of the field around it, so they
    are no witness. Each step unchanged is one: what stood on the first look stood since.
    """
    index = reference
    while True:
        fraction = _stands_out(crops[index])
        if fraction is None or fraction < STANDS_OUT_FRACTION:
            return None
        earlier = _previous_clear(crops, index)
        if earlier is None:
            return None, index
        if _step_state(crops, earlier, index) != "same":
            return None
        index = earlier


def _glimpsed(crops: list[_Crop | None], unchanged: int, before: int) -> tuple[int, int]:
    """The bracket narrowed by the dates within it that cloud hid in part: the first visible
    date and the last unchanged one.

    A date whose cloud, with the detector's margin around it, leaves under half of the
    outline comparable is no look: compared with another date, it would count pixels the
    detector never judges. What cloud leaves clear still shows whether the outline stood out
    from the field around it on that date (`_stands_out`, within the one date). When the
    violation stands out on its reference (the caller's condition) and the place blended into
    its field on the last unchanged look:
    - a date of the bracket on which it blends in again, a look or not, shows the place still
      unchanged, and sets aside any such date before it (a violation does not come and go);
    - after the last of those, the first date that is no look and on which most of what is
      clear of the outline stands out is the first it was visible on. Most, not the share a
      clear look needs (`STANDS_OUT_FRACTION`): near a cloud, its haze and the edge of its
      shadow tint part of the field, and a few of the outline's pixels stand out for that.
    """
    was = _stands_out(crops[unchanged])
    if was is None or was > BLENDS_IN_FRACTION:
        return before, unchanged  # it stood out before the violation: standing out says nothing
    first_visible = None
    for index in range(unchanged + 1, before):
        glimpse = not _is_look(crops[index])
        fraction = _stands_out_where_clear(crops[index]) if glimpse else _stands_out(crops[index])
        if fraction is None:
            continue
        if fraction <= BLENDS_IN_FRACTION:
            unchanged, first_visible = index, None
        elif glimpse and fraction >= GLIMPSE_STANDS_OUT_FRACTION and first_visible is None:
            first_visible = index
    return (before if first_visible is None else first_visible), unchanged


def _stands_out_where_clear(crop: _Crop | None) -> float | None:
    """`_stands_out` over the pixels clear of cloud, its margin included, on a date that is
    no look (None: too little of the outline, or of the field around it, clear)."""
    if crop is None:
        return None
    clear = ndimage.binary_erosion(~crop.raster.nodata, iterations=GLIMPSE_EDGE_PX, border_value=1)
    if float(clear[crop.inside].mean()) < GLIMPSE_FRACTION:
        return None
    return _stands_out_over(crop, clear)


def _restated(looks: tuple[DateLook, ...], index: int, state: str) -> tuple[DateLook, ...]:
    return (*looks[:index], dataclasses.replace(looks[index], state=state), *looks[index + 1 :])


def _stands_out(crop: _Crop | None) -> float | None:
    """The share of the outline's comparable pixels unlike the field around it on this date
    (None: the date does not show the outline, or too little around it)."""
    return None if crop is None else crop.stands_out


def _stands_out_over(crop: _Crop, pixels: np.ndarray) -> float | None:
    """The share of the outline's `pixels` unlike the field's `pixels` around it (None: too
    few of those).

    A pixel is unlike its surroundings when, in some band, it lies more than
    `STANDOUT_SIGMAS` robust spreads (scaled median absolute deviation) from their median.
    A 3 × 3 mean first keeps single noisy pixels and crop rows from counting. The spread has
    a floor of 2 % of the median: a uniform field would otherwise make any flicker stand out.
    """
    around = _around(crop.inside) & pixels
    if int(around.sum()) < MIN_SURROUNDING_PX:
        return None
    values = ndimage.uniform_filter(crop.raster.array.astype(np.float32), size=(3, 3, 1))
    median = np.median(values[around], axis=0)
    spread = 1.4826 * np.median(np.abs(values[around] - median), axis=0)
    spread = np.maximum(spread, 0.02 * np.abs(median) + 1e-6)
    unlike = (np.abs(values - median) / spread).max(axis=2) > STANDOUT_SIGMAS
    return float(unlike[crop.inside & pixels].mean())


def _likeliest_onset(unchanged: int | None, before: int) -> int:
    """The date the change most likely began on.

    It began after the last date that showed the place unchanged (`unchanged`) and was
    visible on `before`: on `before` or on one of the dates between that did not show the
    place clearly: cloud, its margin or a missing file, or a look neither like the unchanged
    place nor unlike it (an early stage, or the field around it changing too). Dating it on
    `before` makes every onset so hidden late by the whole run of such dates; the later
    middle of the dates it may have begun on is never more than half of them away. With one
    such date or none it is `before` itself. Without a look before the change, it may predate
    the imagery: `before`.
    """
    if unchanged is None:
        return before
    first = unchanged + 1
    return first + (before - first + 1) // 2


def _is_look(crop: _Crop | None) -> bool:
    return crop is not None and crop.observed


def _previous_clear(crops: list[_Crop | None], index: int) -> int | None:
    for earlier in range(index - 1, -1, -1):
        if _is_look(crops[earlier]):
            return earlier
    return None


def _step_state(crops: list[_Crop | None], earlier: int, later: int) -> str:
    """The step from the earlier clear date to the later one: "same", "differs" or "unclear".

    Any change of the outline beyond the "same" tolerance counts: an earlier stage covers only
    part of the violation's final outline (a stack a third of its final size changes a third
    of it). But "differs" only when the change keeps to the outline: a field-wide change
    around it (a harvest, the season) says nothing about when the violation came.
    """
    earlier_crop, later_crop = crops[earlier], crops[later]
    if earlier_crop is None or later_crop is None or not earlier_crop.observed:
        return "unclear"
    compared = _compared(earlier_crop, later_crop)
    if not _covers_outline(earlier_crop.inside, compared):
        return "unclear"
    changed = _changed_mask(earlier_crop, later_crop)  # one detector run for both questions
    if changed is None:
        return "unclear"
    if float(changed[earlier_crop.inside & compared].mean()) <= SAME_FRACTION:
        return "same"
    around = _around(earlier_crop.inside) & compared
    if not around.any():
        return "unclear"
    return "differs" if float(changed[around].mean()) <= AROUND_FRACTION else "unclear"


def _around(inside: np.ndarray) -> np.ndarray:
    """The ring of `AROUND_PX` around the outline: where a change of the violation's own field
    (a harvest, the season) would show. The rest of the view holds other fields, whose farm
    work on the same date says nothing about the outline."""
    return ndimage.binary_dilation(inside, iterations=AROUND_PX) & ~inside


def _with_rectification(
    result: TraceResult, since: datetime, crops: list[_Crop | None], reference: int
) -> TraceResult:
    later = [
        i
        for i, look in enumerate(result.looks)
        if look.acquired_at > since and look.state in {"same", "differs"}
    ]
    if not later:
        return dataclasses.replace(result, rectification="not_observed")
    last = later[-1]
    verdict = "observed" if result.looks[last].state == "differs" else "still_present"
    chips = _chips(crops, reference, last)
    return dataclasses.replace(
        result,
        rectification=verdict,
        rectification_look=result.looks[last],
        rectification_chips=chips,
    )


def _at(looks: tuple[DateLook, ...], index: int | None) -> DateLook | None:
    return looks[index] if index is not None else None


def _look(dated: DatedScene, state: str, fraction: float | None) -> DateLook:
    return DateLook(dated.scene_id, dated.acquired_at, state, fraction)


def _compare_look(
    dated: DatedScene, crop: _Crop | None, reference: _Crop, reference_stands_out: bool
) -> DateLook:
    """Does the place on this date look like the violation (the reference) or not?

    Only the pixels the detector compared count: one near a cloud on either date is never
    called change, and counting it as unchanged would make a date that saw nothing of the
    place look like the violation already standing.

    A look like a violation that stands out from its field on the reference, on which the
    outline blends into the field around it, is `BLENDS_IN` rather than the same: the whole
    field looked like the violation then (a flooded paddy like a pond, a bare field like a
    pile of soil), which says nothing of whether the violation was there.
    """
    if crop is None or not crop.observed:
        return _look(dated, "unobserved", None)
    compared = _compared(crop, reference)
    if not _covers_outline(crop.inside, compared):
        return _look(dated, "unclear", None)
    changed = _changed_mask(crop, reference)
    if changed is None:
        return _look(dated, "unclear", None)
    fraction = float(changed[crop.inside & compared].mean())
    state = _state_of(fraction)
    if state == "same" and reference_stands_out and _blends_in(crop):
        state = BLENDS_IN
    return _look(dated, state, fraction)


def _blends_in(crop: _Crop) -> bool:
    """Does the outline look like the field around it on this date (see `_stands_out`)?"""
    fraction = _stands_out(crop)
    return fraction is not None and fraction <= BLENDS_IN_FRACTION


def _compared(crop: _Crop, other: _Crop) -> np.ndarray:
    """The pixels the detector compares between two dates: comparable on both."""
    return crop.comparable & other.comparable


def _covers_outline(inside: np.ndarray, pixels: np.ndarray) -> bool:
    """Do `pixels` hold at least `MIN_OBSERVED_FRACTION` of the outline?"""
    return bool(inside.any()) and float(pixels[inside].mean()) >= MIN_OBSERVED_FRACTION


def _state_of(changed_fraction: float) -> str:
    """A look judged by the share of the outline that changed against the other date."""
    if changed_fraction >= DIFFERS_FRACTION:
        return "differs"
    if changed_fraction <= SAME_FRACTION:
        return "same"
    return "unclear"


def _changed_mask(crop: _Crop, later: _Crop) -> np.ndarray | None:
    """The detector's change mask from `crop` to `later` over the crop (None: no verdict)."""
    try:
        result = detect_changes(
            crop.raster.array,
            later.raster.array,
            params=RasterDetectorParams(),
            before_valid=~crop.raster.nodata,
            after_valid=~later.raster.nodata,
            transform=crop.raster.transform,
            crs=crop.raster.crs,
            after_transform=later.raster.transform,
            after_crs=later.raster.crs,
            band_roles=crop.raster.band_roles,
            normalisation=_tile_wide_fit(crop.sample, later.sample),
        )
    except DetectionError:
        return None
    return result.mask


def _crop(raster: Raster, outline: BaseGeometry, sample: _DateSample | None = None) -> _Crop | None:
    """The outline with some context, cut from `raster` (None when it lies outside)."""
    if raster.crs is None or raster.transform is None:
        return None
    local = shapely.transform(
        outline, transformer("EPSG:4326", raster.crs).transform, interleaved=False
    )
    rows, cols = raster.shape
    window = from_bounds(*local.bounds, transform=raster.transform).round_offsets()
    window = window.round_lengths()
    grow_cols = max(TRACE_MARGIN_PX, (TRACE_MIN_SIDE_PX - int(window.width)) // 2 + 1)
    grow_rows = max(TRACE_MARGIN_PX, (TRACE_MIN_SIDE_PX - int(window.height)) // 2 + 1)
    window = Window(
        window.col_off - grow_cols,
        window.row_off - grow_rows,
        window.width + 2 * grow_cols,
        window.height + 2 * grow_rows,
    ).intersection(Window(0, 0, cols, rows))
    if window.width < TRACE_MIN_SIDE_PX // 2 or window.height < TRACE_MIN_SIDE_PX // 2:
        return None
    slices = window.toslices()
    cut = Raster(
        array=np.ascontiguousarray(raster.array[slices]),
        nodata=raster.nodata[slices].copy(),
        transform=window_transform(window, raster.transform),
        crs=raster.crs,
        band_roles=raster.band_roles,
        source_dtype=raster.source_dtype,
    )
    inside = ~geometry_mask(
        [local], out_shape=cut.shape, transform=cut.transform, all_touched=False
    )
    if not inside.any():
        return None
    return _Crop(cut, inside, _beyond_margin(cut), sample)


def _beyond_margin(raster: Raster) -> np.ndarray:
    """Pixels clear and beyond the detector's margin of cloud and nodata."""
    radius = margin_px(RasterDetectorParams(), raster.transform, raster.crs, raster.shape)
    return clear_beyond(~raster.nodata, radius)


def _chips(
    crops: list[_Crop | None], first: int | None, second: int | None
) -> tuple[Chip, Chip] | None:
    if first is None or second is None:
        return None
    a, b = crops[first], crops[second]
    if a is None or b is None:
        return None
    whole = (slice(None), slice(None))
    one, two = stretched([true_colour(a.raster, whole), true_colour(b.raster, whole)])
    return one, two
