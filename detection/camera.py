"""Tower-camera change detection: one snapshot in, persistent changes and camera health out.

The per-preset state (background, pending changes, last capture time) is an explicit
:class:`CameraState` that the ingest worker stores between snapshots with ``to_bytes()`` and
reloads with ``from_bytes()``; :func:`process_snapshot` is a pure step from one state to the next.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from detection.camera_change import (
    ChangeScore,
    local_residual,
    mask_box,
    outline_detections,
    region_of_interest,
    score_change,
    seen_clearly,
)
from detection.camera_reference import (
    NOISE_UNITS,
    ReferenceModel,
    gray,
    illumination_mode,
    matched_and_levelled,
    signal_level,
)
from detection.camera_register import (
    RegisterParams,
    register_snapshot,
    structure_image,
    warp_image,
    warp_valid_mask,
)
from detection.camera_state import (
    CameraDetection,
    CameraState,
    HealthEvent,
    References,
    SnapshotResult,
)
from detection.geolocate import Calibration, GeolocateParams
from detection.io.snapshot import InvalidSnapshotError, decode_snapshot


@dataclass(frozen=True)
class CameraParams:
    """Parameters of the tower-camera detector.

    Attributes
    ----------
    reduce : int
        Work at 1/reduce of the full resolution (JPEG DCT scaling when decoding bytes).
    persistence : int
        A change becomes a detection after this many consecutive snapshots showing it; night
        infrared frames and rows hidden by fog or rain pause the count instead of breaking it.
    reference_depth : int
        Frames in the per-pixel median background (odd keeps the median a real pixel value).
    warmup_frames : int
        Accepted frames gathered before changes are scored.
    reference_every : int
        Add every n-th accepted snapshot to the background (larger = slower absorption).
    colour_threshold : float
        RGB distance that counts as change on its own where the residual is quiet, fraction of
        full scale.
    plain_threshold : float
        RGB distance of the plain (not local) difference that counts as change when outlining
        a confirmed change and when judging whether it is the rim of a larger region of change
        (farm work on a whole parcel), fraction of full scale; apart from ``colour_threshold``
        so that a more sensitive local test does not turn seasonal drift into vetoes.
    structure_threshold : float
        Mean gradient magnitude of the difference image (new or lost edges and texture) that
        counts as strong structural change, fraction per pixel; it reinforces colour change.
    noise_factor : float
        Each pixel's colour threshold grows by this many times the background's spread (its
        median absolute deviation over the recent frames, averaged over 5 × 5 neighbours).
    residual_factor : float
        Each pixel's colour threshold also grows by this many times its residual noise (the
        running upper estimate of its local difference from the background on ordinary
        snapshots, averaged over 5 × 5 neighbours), so change is scored against what the
        pixel usually shows after lighting matching rather than against one fixed level.
    noise_rise, noise_fall : float
        Fractions of the gap by which the residual noise climbs towards a larger residual and
        sinks towards a smaller one on each snapshot.
    colour_agreement : float
        A pending change continues its streak only while the cosine between its colour
        difference from the background and the one it started with reaches this; -1 lets any
        candidate continue.
    day_buckets : tuple of float
        Two local solar hours splitting daylight into morning, midday and evening, each with
        its own background and residual noise; empty keeps one daylight background. Off by
        default: on two simulated worlds it did not help both (benchmarks/RESULTS.md).
    object_window_px : int
        Colour change is measured against its surroundings within this window (working
        pixels), so parcel-wide farm work scores only at its edges.
    signal_window_px : int
        The signed colour difference is averaged over this many working pixels square before
        its length is scored (1 = off): frame noise cancels, an object's change does not.
    hysteresis_low : float
        Change regions grow from pixels scoring ≥ 1 into neighbours scoring ≥ this.
    min_area_px : int
        Smallest change region kept, working-resolution pixels.
    min_object_area_m2 : float
        Confirmed changes smaller on the ground than this (square metres) are not reported yet:
        they stay pending, neither learned nor reported, until they outgrow it. The remote-sensing
        detector's minimum mapping unit; on three simulated worlds 50 m² cut false alarms by
        14–25 % with the same violations found in time (benchmarks/RESULTS.md). 0 reports any
        size.
    max_object_area_m2, max_object_extent_m : float
        Confirmed changes larger on the ground (square metres, or metres along their longest
        side) are whole-parcel farm work or season, not a violation; they are learned at once.
    max_elongation : float
        Confirmed changes longer than this many times their width on the ground are the edges
        of farm work on a parcel, not objects.
    parcel_share : float
        A change filling at least this fraction of the background regions (parcels) it touches
        is farm work on whole parcels, fraction.
    parcel_along : float
        Where the calibration names the parcels in view, a confirmed change is farm work when
        the rest of the parcel it lies in changed colour at least this fraction of the way its
        own pixels did (a parcel that turned over, of which only a rim stood out); 0 turns this
        off. On two simulated worlds 0.3 cut false alarms by about half at the same detection
        (benchmarks/RESULTS.md).
    context_ratio : float
        A change that is part of a region of plain colour change this many times its size is
        the rim of farm work on a whole parcel (ploughing, harvest in a day), not an object.
    max_edge_share, edge_level : float
        A confirmed change with more than this share of its pixels on or next to a strong edge
        of the background (a brightness step between neighbouring pixels of at least
        ``edge_level``, fraction, and of three times the background's median step) lies along
        a parcel boundary, where light, haze and sub-pixel sway change the residual from frame
        to frame: it is neither reported nor learned; 1 turns this off. On two simulated worlds
        0.5 cut false alarms by 37–64 % at the same detection (benchmarks/RESULTS.md); an
        object built right on a boundary can be missed.
    farm_work_reach_px : int
        A confirmed change within this many working pixels of farm work found in the same
        snapshot (a parcel that turned over) is the edge of it, not an object; 0 turns this
        off. On two simulated worlds 2 cut false alarms from 34 to 30 at the same detection.
    max_ir_chroma : float
        Frames with mean chroma below this are night infrared, fraction.
    min_signal_std : float
        Frames flatter than this (spatial std of brightness, fraction) are "no signal".
    obstructed_texture : float
        A frame that cannot be registered and keeps less than this fraction of the
        background's texture is "obstructed" rather than "moved".
    illumination_grid : tuple of int
        Blocks (rows, cols) for matching lighting to the background.
    max_gain : float
        Largest contrast correction per block.
    text_boxes : tuple of (col0, row0, col1, row1)
        On-screen text areas never scored, fractions of the image width and height.
    reseed_after : int
        After this many consecutive "moved" snapshots the background restarts from the view.
    clear_texture : float
        A band of rows whose median block keeps less than this fraction of the background's
        texture is hidden (fog, rain, haze): it neither confirms nor breaks a pending change
        and is not learned into the background, fraction.
    clear_block_px : int
        Side of the blocks whose texture is compared, working pixels.
    hold_score : float
        Pixels scoring at least this (1 = the detection threshold) keep their background, so
        an abrupt change is not learned before it can be confirmed. Off by default: at 0.4 it
        found one more violation in 61 on two simulated worlds but multiplied false alarms by 5.
    reported_share : float
        A confirmed change with at least this share of its pixels already reported is that
        change's rim showing more fully (light, sway): it joins it without a second
        detection. A change growing beyond that is reported anew.
    open_release_after, open_release_share :
        A reported change is given back to detection (so that a change built there later is
        reported anew, a rebound) after this many consecutive snapshots in which at most this
        share of what was seen of it still differed from the background.
    placement_frames : int
        After this many snapshots registered onto a background, it is moved into the
        calibration's pixel grid by the median of their shifts (see
        :meth:`~detection.camera_reference.ReferenceModel.placement`), so that outlines,
        farmland and parcels line up with it wherever sway had put the first frame; 0 keeps
        the first frame's grid. The simulator's towers sway with a standard deviation of
        about 14 full-resolution pixels (3.5 working pixels) a snapshot, where a first frame
        can be 10 working pixels off; on four simulated worlds the median of 10 undid the known
        offset of all 24 daylight backgrounds' first frames up to rounding.
    future_tolerance : timedelta
        Capture times further ahead of ``now`` are refused.
    """

    reduce: int = 4
    persistence: int = 2
    reference_depth: int = 5
    warmup_frames: int = 3
    reference_every: int = 1
    colour_threshold: float = 0.12
    plain_threshold: float = 0.12
    structure_threshold: float = 0.05
    noise_factor: float = 3.0
    residual_factor: float = 0.0
    noise_rise: float = 0.3
    noise_fall: float = 0.05
    day_buckets: tuple[float, ...] = ()
    colour_agreement: float = 0.8
    hysteresis_low: float = 0.6
    object_window_px: int = 25
    signal_window_px: int = 1
    min_area_px: int = 10
    min_object_area_m2: float = 50.0
    max_object_area_m2: float = 3000.0
    max_object_extent_m: float = 75.0
    max_elongation: float = 4.0
    parcel_share: float = 0.5
    parcel_along: float = 0.3
    context_ratio: float = 3.0
    max_edge_share: float = 0.5
    edge_level: float = 0.03
    farm_work_reach_px: int = 2
    max_ir_chroma: float = 0.03
    min_signal_std: float = 0.015
    obstructed_texture: float = 0.5
    illumination_grid: tuple[int, int] = (3, 4)
    max_gain: float = 4.0
    text_boxes: tuple[tuple[float, float, float, float], ...] = (
        (0.0, 0.0, 0.5, 0.08),
        (0.6, 0.92, 1.0, 1.0),
    )
    reseed_after: int = 3
    reported_share: float = 0.8
    open_release_after: int = 6
    open_release_share: float = 0.1
    clear_texture: float = 0.5
    hold_score: float = float("inf")
    clear_block_px: int = 16
    placement_frames: int = 10
    future_tolerance: timedelta = timedelta(minutes=5)
    register: RegisterParams = field(default_factory=RegisterParams)
    geolocate: GeolocateParams = field(default_factory=GeolocateParams)


def _check_time(
    state: CameraState, captured_at: datetime, now: datetime | None, params: CameraParams
) -> None:
    if captured_at.tzinfo is None:
        raise InvalidSnapshotError(
            "naive_time", "the capture time has no time zone: give it in UTC (…Z)"
        )
    if state.last_captured_at is not None and captured_at <= state.last_captured_at:
        raise InvalidSnapshotError(
            "out_of_order",
            f"captured {captured_at.isoformat()} is not after the preset's last snapshot "
            f"{state.last_captured_at.isoformat()}: snapshots must arrive in capture order",
        )
    if now is not None and captured_at > now + params.future_tolerance:
        raise InvalidSnapshotError(
            "future",
            f"captured {captured_at.isoformat()} is in the future (now {now.isoformat()}): "
            "check the camera's clock (NTP)",
        )


def _check_image(image: NDArray[np.uint8], state: CameraState, calibration: Calibration) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InvalidSnapshotError(
            "mode", f"expected an RGB uint8 array (rows, cols, 3); got {image.dtype} {image.shape}"
        )
    width, height = calibration.image_size
    scale = width / image.shape[1]
    if abs(image.shape[0] * scale - height) > scale:
        raise InvalidSnapshotError(
            "wrong_size",
            f"a {image.shape[1]}×{image.shape[0]} working image does not match the "
            f"{width}×{height} calibration: decode with the preset's reduction",
        )
    if state.shape != image.shape[:2]:
        raise InvalidSnapshotError(
            "wrong_size",
            f"working image {image.shape[:2]} differs from the preset's state {state.shape}",
        )


def _health(kind: str, captured_at: datetime, detail: str) -> tuple[HealthEvent, ...]:
    return (HealthEvent(kind=kind, captured_at=captured_at, detail=detail),)


def process_snapshot(
    state: CameraState | None,
    image: NDArray[np.uint8],
    captured_at: datetime,
    *,
    calibration: Calibration,
    params: CameraParams,
    now: datetime | None = None,
) -> tuple[CameraState, SnapshotResult]:
    """Analyse one snapshot of a preset and return the next state and what it showed.

    Parameters
    ----------
    state : CameraState or None
        The preset's state after its previous snapshot; None for the first one.
    image : ndarray of shape (rows, cols, 3), uint8
        RGB at working resolution (full resolution / ``params.reduce``).
    captured_at : datetime
        UTC capture time; must be later than the previous snapshot's.
    calibration : Calibration
        The preset's image-to-ground calibration (and the farmland it watches).
    params : CameraParams
        Detector parameters.
    now : datetime, optional
        The current time, to refuse capture times in the future.

    Returns
    -------
    tuple of (CameraState, SnapshotResult)
        Persistent changes become detections; camera problems become health events.

    Raises
    ------
    InvalidSnapshotError
        Out-of-order or future capture time, or an image of the wrong size or kind.
    """
    state = state or CameraState.empty((int(image.shape[0]), int(image.shape[1])))
    _check_image(image, state, calibration)
    _check_time(state, captured_at, now, params)
    state = replace(state, last_captured_at=captured_at)
    frame = _fraction(image, 255.0)
    brightness, contrast = signal_level(frame)
    if contrast < params.min_signal_std:
        detail = f"flat frame (mean {brightness:.2f}, std {contrast:.3f})"
        return state, SnapshotResult(captured_at, health=_health("no_signal", captured_at, detail))
    light = illumination_mode(frame, max_ir_chroma=params.max_ir_chroma)
    health = (
        _health("night_ir", captured_at, "switched to infrared")
        if light == "ir" and state.last_mode != "ir"
        else ()
    )
    mode = "ir" if light == "ir" else _day_bucket(captured_at, calibration, params.day_buckets)
    state = replace(state, last_mode=mode)
    # States of format 1 hold one "day" background: it seeds each bucket until replaced.
    reference = state.references.get(mode)
    if reference is None and light == "day":
        reference = state.references.get("day")
    if reference is None:
        started = ReferenceModel.start(image, depth=params.reference_depth)
        state = replace(state, references=state.references | {mode: started})
        return state, SnapshotResult(captured_at, health=health, registration="reference")
    return _analyse(state, frame, captured_at, reference, mode, health, calibration, params)


def _fraction(levels: NDArray[np.uint8], full_scale: float) -> NDArray[np.float32]:
    """Levels (any shape) as float32 fractions of ``full_scale``.

    One pass, the same values as ``levels.astype(np.float32) / full_scale``, which converts
    into one temporary and divides into another.
    """
    return np.divide(levels, np.float32(full_scale), dtype=np.float32)


def _day_bucket(captured_at: datetime, calibration: Calibration, hours: tuple[float, ...]) -> str:
    """``"day_morning"``, ``"day_midday"`` or ``"day_evening"`` by local solar time.

    Without ``hours`` every daylight snapshot shares one ``"day"`` background.

    The camera's longitude is taken as its UTM zone's central meridian (within 3°, i.e.
    12 minutes of solar time), which the calibration already knows without a projection.
    """
    if not hours:
        return "day"
    zone = calibration.epsg % 100 if calibration.epsg // 100 in (326, 327) else 0
    meridian = 6.0 * zone - 183.0 if zone else 0.0
    utc = captured_at.astimezone(UTC)
    hour = (utc.hour + utc.minute / 60.0 + meridian / 15.0) % 24.0
    if hour < hours[0]:
        return "day_morning"
    return "day_midday" if hour < hours[1] else "day_evening"


def _analyse(
    state: CameraState,
    frame: NDArray[np.float32],
    captured_at: datetime,
    reference: ReferenceModel,
    mode: str,
    health: tuple[HealthEvent, ...],
    calibration: Calibration,
    params: CameraParams,
) -> tuple[CameraState, SnapshotResult]:
    background = _fraction(reference.median, 255.0)
    gray_ref, gray_now = gray(background), gray(frame)
    roi = region_of_interest(calibration, shape=state.shape, params=params)
    registration = register_snapshot(
        structure_image(gray_ref),
        structure_image(gray_now),
        judged=roi if roi.sum() > 0.02 * roi.size else None,
        params=params.register,
    )
    if registration.method == "failed":
        kind, detail = _registration_failure(gray_now, gray_ref, registration.correlation, params)
        failed = SnapshotResult(
            captured_at,
            health=health + _health(kind, captured_at, detail),
            registration="failed",
            shift_px=registration.shift,
        )
        return _after_failure(state, kind, image_of(frame), mode, params), failed
    state = replace(state, failures=0)
    if registration.method == "shift" and params.placement_frames and not reference.placed:
        reference = reference.with_shift(registration.shift)
    aligned = warp_image(frame, registration)
    valid = warp_valid_mask(frame.shape, registration)
    # Where the background holds ground the snapshot covers; `valid` alone is learned, so that
    # a border a placement left without ground fills in.
    scored = reference.covering(valid)
    matched, levelled = matched_and_levelled(
        aligned, background, grid=params.illumination_grid, max_gain=params.max_gain
    )
    result = SnapshotResult(
        captured_at, health=health, registration=registration.method, shift_px=registration.shift
    )
    if reference.count < params.warmup_frames:
        residual = local_residual(
            matched, background, params.object_window_px, params.signal_window_px
        )
        reference = reference.with_residual(
            residual, scored, rise=params.noise_rise, fall=params.noise_fall
        )
        state = _absorb(state, mode, reference, levelled, valid, params, warm=True)
        return _placed(state, mode, params), result
    if mode == "ir":
        # Night frames are few, so their background is weeks old and shows every season's
        # change; they keep it current but, like fog, neither confirm nor break a streak.
        state = _absorb(state, mode, reference, levelled, valid, params, warm=False)
        return _placed(state, mode, params), result
    score = score_change(
        matched,
        background,
        spread=_fraction(reference.spread, 255.0),
        noise=_fraction(reference.noise, 255.0 * NOISE_UNITS),
        valid=scored,
        calibration=calibration,
        params=params,
    )
    clear = seen_clearly(gray(matched), gray_ref, params=params)
    state, detections, farm_work = _persist(
        state, score, clear, matched, background, captured_at, calibration, params
    )
    # A sudden change too faint to alarm yet is not learned either: a median over a few frames
    # would take it in within three snapshots and it would never be seen again.
    held = ~clear | (score.score >= params.hold_score)
    # Reported changes are not noise; hidden rows (fog, rain) say nothing about it either.
    reference = reference.with_residual(
        score.residual,
        scored & clear & ~state.open_mask,
        rise=params.noise_rise,
        fall=params.noise_fall,
    )
    state = _absorb(
        state, mode, reference, levelled, valid, params, warm=False, adopt=farm_work, held=held
    )
    placed = _placed(state, mode, params)
    return placed, replace(result, detections=detections, candidates=score.candidates)


def _placed(state: CameraState, mode: str, params: CameraParams) -> CameraState:
    """The state with the background of `mode` moved into the calibration's grid once it has
    registered enough snapshots, and the change memory moved with a daylight background."""
    reference = state.references[mode]
    if (
        not params.placement_frames
        or reference.placed
        or len(reference.shifts) < params.placement_frames
    ):
        return state
    move = reference.placement()
    state = replace(state, references=state.references | {mode: reference.placed_at(move)})
    # Streaks and reported changes are kept in the grid of the daylight snapshots (infrared
    # ones neither confirm nor break them). With time-of-day buckets each bucket's background
    # is placed in turn, and they share the grid only once all are placed.
    return state if mode == "ir" else state.moved_by(move)


def image_of(frame: NDArray[np.float32]) -> NDArray[np.uint8]:
    """Back to uint8 (rows, cols, 3) from [0, 1] floats: ``np.round(frame * 255.0)`` cast, in
    one compiled pass (Numba is loaded on first use: see camera_reference._lit)."""
    from detection.camera_kernels import to_levels

    return to_levels(frame)


def _after_failure(
    state: CameraState, kind: str, image: NDArray[np.uint8], mode: str, params: CameraParams
) -> CameraState:
    failures = state.failures + 1 if kind == "moved" else state.failures
    if failures < params.reseed_after:
        return replace(state, failures=failures)
    # The camera keeps showing a clear view that no longer matches: the preset was moved or the
    # season turned the scene over. Start a new background from this view rather than failing
    # forever; what it already shows is not reported as new.
    fresh = ReferenceModel.start(image, depth=params.reference_depth)
    return replace(
        state,
        references=References({mode: fresh}),
        streak=np.zeros_like(state.streak),
        streak_start=np.zeros_like(state.streak_start),
        streak_colour=np.zeros_like(state.streak_colour),
        open_mask=np.zeros_like(state.open_mask),
        open_quiet=np.zeros_like(state.open_quiet),
        failures=0,
    )


def _registration_failure(
    gray: NDArray[np.float32],
    gray_ref: NDArray[np.float32],
    correlation: float,
    params: CameraParams,
) -> tuple[str, str]:
    texture = float(np.abs(np.diff(gray, axis=1)).mean())
    texture_ref = float(np.abs(np.diff(gray_ref, axis=1)).mean()) or 1e-6
    if texture < params.obstructed_texture * texture_ref:
        return "obstructed", f"texture {texture / texture_ref:.0%} of the background's"
    return "moved", f"cannot register to the preset background (correlation {correlation:.2f})"


def _absorb(
    state: CameraState,
    mode: str,
    reference: ReferenceModel,
    levelled: NDArray[np.float32],
    valid: NDArray[np.bool_],
    params: CameraParams,
    *,
    warm: bool,
    adopt: NDArray[np.bool_] | None = None,
    held: NDArray[np.bool_] | None = None,
) -> CameraState:
    """The state with the snapshot (brightness levelled to the background, its contrast its
    own: see `matched_and_levelled`) learned into the background of `mode`."""
    accepted = state.accepted + 1
    state = replace(state, accepted=accepted)
    frame = image_of(levelled)
    if adopt is not None and adopt.any():
        reference = reference.adopting(frame, adopt & valid)
    if warm or accepted % params.reference_every == 0:
        # Pending and reported changes keep the old background: a change is never learned away.
        keep = ~valid if warm else (~valid | (state.streak > 0) | state.open_mask)
        if held is not None:
            keep |= held if adopt is None else held & ~adopt
        # Numba is loaded on first use: see camera_reference._lit.
        from detection.camera_kernels import keep_background

        keep_background(frame, reference.median, keep)
        reference = reference.with_frame(frame)
    return replace(state, references=state.references | {mode: reference})


def _persist(
    state: CameraState,
    score: ChangeScore,
    clear: NDArray[np.bool_],
    matched: NDArray[np.float32],
    background: NDArray[np.float32],
    captured_at: datetime,
    calibration: Calibration,
    params: CameraParams,
) -> tuple[CameraState, tuple[CameraDetection, ...], NDArray[np.bool_]]:
    # Where fog, rain or haze hide the ground this frame says nothing: streaks wait for it.
    hidden = ~clear
    candidates = score.candidates & clear
    timestamp = int(captured_at.timestamp())
    # A change continues its streak only if it keeps the colour it started with against the
    # background; light, haze and rain streaks come and go with other colours each time.
    continuing = candidates & (state.streak > 0)
    agrees = _same_colour(score.local, state.streak_colour, candidates, continuing, params)
    streak, start, colour = _next_streaks(state, agrees, candidates, hidden, score.local, timestamp)
    open_mask, open_quiet = _release_gone(
        state.open_mask, state.open_quiet, candidates, clear, params
    )
    confirmed = (streak >= params.persistence) & ~open_mask
    detections: tuple[CameraDetection, ...] = ()
    farm_work = np.zeros_like(candidates)
    if confirmed.sum() >= params.min_area_px:
        outlines = outline_detections(
            confirmed=confirmed,
            candidates=candidates,
            colour=score.colour,
            open_mask=open_mask,
            streak_start=start,
            score=score.score,
            matched=matched,
            background=background,
            captured_at=captured_at,
            first_id=state.next_detection_id,
            calibration=calibration,
            params=params,
        )
        detections = tuple(CameraDetection(**item) for item in outlines.found)
        open_mask, farm_work = outlines.open_mask, outlines.farm_work
        streak[farm_work] = 0
    state = replace(
        state,
        streak=streak,
        streak_start=start,
        streak_colour=colour,
        open_mask=open_mask,
        open_quiet=open_quiet,  # zero outside open_mask: new changes start from none
        next_detection_id=state.next_detection_id + len(detections),
    )
    return state, detections, farm_work


def _release_gone(
    open_mask: NDArray[np.bool_],
    open_quiet: NDArray[np.uint8],
    candidates: NDArray[np.bool_],
    clear: NDArray[np.bool_],
    params: CameraParams,
) -> tuple[NDArray[np.bool_], NDArray[np.uint8]]:
    """The reported changes still standing, and each one's count of quiet snapshots.

    A reported change (a connected part of `open_mask`) is quiet in a snapshot that sees at
    least half of it clearly with at most `open_release_share` of what it sees still differing
    from the background. Quiet snapshots are counted; a snapshot that hides it pauses the
    count, any other resets it. After `open_release_after` quiet snapshots in a row the change
    is gone (pulled down, the land restored) and its pixels are watched again.
    """
    box = mask_box(open_mask)
    if box is None:
        return open_mask, open_quiet
    # Reported changes are small and the frame is not: each change is judged in its own box.
    top, left = box[0].start, box[1].start
    labels, _ = ndimage.label(open_mask[box])
    kept, kept_counts = open_mask.copy(), np.zeros_like(open_quiet)
    for index, (r, c) in enumerate(ndimage.find_objects(labels), start=1):
        change = labels[r, c] == index
        box = (slice(r.start + top, r.stop + top), slice(c.start + left, c.stop + left))
        seen = clear[box][change]
        differing = np.count_nonzero(candidates[box][change] & seen)
        looked = np.count_nonzero(seen) >= 0.5 * np.count_nonzero(change)
        # A change merged with a newer one counts from the newer one's start.
        count = int(open_quiet[box][change].min())
        if looked:
            quiet = differing <= params.open_release_share * np.count_nonzero(seen)
            count = count + 1 if quiet else 0
        if count >= params.open_release_after:
            kept[box][change] = False
        else:
            kept_counts[box][change] = min(count, 255)
    return kept, kept_counts


def _next_streaks(
    state: CameraState,
    agrees: NDArray[np.bool_],
    candidates: NDArray[np.bool_],
    hidden: NDArray[np.bool_],
    local: NDArray[np.float32],
    timestamp: int,
) -> tuple[NDArray[np.uint8], NDArray[np.int64], NDArray[np.int8]]:
    """Each pixel's streak length, start time and start colour after this snapshot.

    A streak goes on where the change ``agrees`` with the colour it started with, starts
    afresh at the other ``candidates`` (stamped ``timestamp`` and today's ``local`` colour
    difference), waits where ``hidden`` and ends everywhere else. ``agrees`` lies inside
    ``candidates``, which do not meet ``hidden``.
    """
    fresh = candidates & ~agrees
    kept = candidates | hidden
    # Candidates and hidden rows are usually a small part of the frame: starting from zeros and
    # writing only their pixels costs a fraction of whole-frame `where` passes, most of all on
    # the (rows, cols, 3) colours, and gives the same arrays.
    streak = np.zeros(state.shape, dtype=np.uint8)
    streak[agrees] = np.minimum(state.streak[agrees].astype(np.int16) + 1, 255)
    streak[fresh] = 1
    streak[hidden] = state.streak[hidden]
    start = np.zeros(state.shape, dtype=np.int64)
    start[kept] = state.streak_start[kept]
    start[fresh] = timestamp
    colour = np.zeros((*state.shape, 3), dtype=np.int8)
    by_pixel = colour.reshape(-1, 3)
    kept_at, fresh_at = np.flatnonzero(kept), np.flatnonzero(fresh)
    by_pixel[kept_at] = state.streak_colour.reshape(-1, 3)[kept_at]
    by_pixel[fresh_at] = _quantised(local.reshape(-1, 3)[fresh_at])
    return streak, start, colour


def _quantised(local: NDArray[np.float32]) -> NDArray[np.int8]:
    """A local colour difference (rows, cols, 3) in [-1, 1] as int8 steps of two grey levels."""
    return np.clip(np.round(local * (255 / 2)), -127, 127).astype(np.int8)


def _same_colour(
    local: NDArray[np.float32],
    stored: NDArray[np.int8],
    candidates: NDArray[np.bool_],
    continuing: NDArray[np.bool_],
    params: CameraParams,
) -> NDArray[np.bool_]:
    """Pixels of ``continuing`` whose change region keeps the colour it started with.

    Judged per connected region of ``candidates`` (rows, cols), on the region's summed local
    difference now and as stored at the start of its pixels' streaks: single pixels at the
    rim of a change differ by a grey level or two and their direction means nothing. The
    cosine between the two RGB vectors must reach ``params.colour_agreement``; a region with
    no stored colour (states of format 1) agrees.
    """
    if params.colour_agreement <= -1.0 or not continuing.any():
        return continuing
    # Candidates are a sliver of the frame: labelled in their box (see `mask_box`).
    box = mask_box(candidates)
    assert box is not None  # it holds `continuing`
    labels, count = ndimage.label(candidates[box])
    inside = continuing[box]
    index = labels[inside]
    now = local[box][inside]
    before = stored[box][inside].astype(np.float32)
    sums_now = np.stack([np.bincount(index, now[:, b], count + 1) for b in range(3)], axis=1)
    sums_before = np.stack([np.bincount(index, before[:, b], count + 1) for b in range(3)], 1)
    dot = (sums_now * sums_before).sum(axis=1)
    lengths = np.sqrt((sums_now**2).sum(axis=1) * (sums_before**2).sum(axis=1))
    unknown = ~sums_before.any(axis=1)
    keeps = unknown | (dot >= params.colour_agreement * lengths)
    agrees = np.zeros_like(continuing)
    agrees[box] = inside & keeps[labels]
    return agrees


def analyse_snapshot_bytes(
    state: CameraState | None,
    data: bytes,
    captured_at: datetime,
    *,
    calibration: Calibration,
    params: CameraParams,
    now: datetime | None = None,
) -> tuple[CameraState | None, SnapshotResult]:
    """Decode untrusted JPEG bytes and run :func:`process_snapshot`.

    An unusable snapshot does not raise: the state is returned unchanged and the result carries
    ``rejection`` (a short reason code) and ``message`` (what is wrong and what to do).
    """
    try:
        decoded = decode_snapshot(data, expected_size=calibration.image_size, reduce=params.reduce)
        return process_snapshot(
            state, decoded.image, captured_at, calibration=calibration, params=params, now=now
        )
    except InvalidSnapshotError as exc:
        return state, SnapshotResult(captured_at, rejection=exc.reason, message=str(exc))


def utc_now() -> datetime:
    """The current UTC time (callers pass it as ``now``; the detector never reads the clock)."""
    return datetime.now(UTC)
