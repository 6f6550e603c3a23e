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

from detection.camera_change import (
    ChangeScore,
    outline_detections,
    region_of_interest,
    score_change,
    seen_clearly,
)
from detection.camera_reference import (
    ReferenceModel,
    gray,
    illumination_mode,
    match_illumination,
    signal_level,
)
from detection.camera_register import (
    RegisterParams,
    register_snapshot,
    structure_image,
    warp_image,
    warp_valid_mask,
)
from detection.camera_state import CameraDetection, CameraState, HealthEvent, SnapshotResult
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
        RGB distance that counts as change on its own, fraction of full scale.
    structure_threshold : float
        Mean gradient magnitude of the difference image (new or lost edges and texture) that
        counts as strong structural change, fraction per pixel; it reinforces colour change.
    noise_factor : float
        Each pixel's colour threshold grows by this many times the background's spread (its
        median absolute deviation over the recent frames, averaged over 5 × 5 neighbours).
    object_window_px : int
        Colour change is measured against its surroundings within this window (working
        pixels), so parcel-wide farm work scores only at its edges.
    hysteresis_low : float
        Change regions grow from pixels scoring ≥ 1 into neighbours scoring ≥ this.
    min_area_px : int
        Smallest change region kept, working-resolution pixels.
    max_object_area_m2, max_object_extent_m : float
        Confirmed changes larger on the ground (square metres, or metres along their longest
        side) are whole-parcel farm work or season, not a violation; they are learned at once.
    max_elongation : float
        Confirmed changes longer than this many times their width on the ground are the edges
        of farm work on a parcel, not objects.
    parcel_share : float
        A change filling at least this fraction of the background regions (parcels) it touches
        is farm work on whole parcels, fraction.
    context_ratio : float
        A change that is part of a region of plain colour change this many times its size is
        the rim of farm work on a whole parcel (ploughing, harvest in a day), not an object.
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
    future_tolerance : timedelta
        Capture times further ahead of ``now`` are refused.
    """

    reduce: int = 4
    persistence: int = 2
    reference_depth: int = 5
    warmup_frames: int = 3
    reference_every: int = 1
    colour_threshold: float = 0.12
    structure_threshold: float = 0.05
    noise_factor: float = 3.0
    hysteresis_low: float = 0.6
    object_window_px: int = 25
    min_area_px: int = 10
    max_object_area_m2: float = 3000.0
    max_object_extent_m: float = 75.0
    max_elongation: float = 4.0
    parcel_share: float = 0.5
    context_ratio: float = 3.0
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
    clear_texture: float = 0.5
    hold_score: float = float("inf")
    clear_block_px: int = 16
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
    frame = image.astype(np.float32) / 255.0
    brightness, contrast = signal_level(frame)
    if contrast < params.min_signal_std:
        detail = f"flat frame (mean {brightness:.2f}, std {contrast:.3f})"
        return state, SnapshotResult(captured_at, health=_health("no_signal", captured_at, detail))
    mode = illumination_mode(frame, max_ir_chroma=params.max_ir_chroma)
    health = (
        _health("night_ir", captured_at, "switched to infrared")
        if mode == "ir" and state.last_mode != "ir"
        else ()
    )
    state = replace(state, last_mode=mode)
    reference = state.references.get(mode)
    if reference is None:
        started = ReferenceModel.start(image, depth=params.reference_depth)
        state = replace(state, references={**state.references, mode: started})
        return state, SnapshotResult(captured_at, health=health, registration="reference")
    return _analyse(state, frame, captured_at, reference, mode, health, calibration, params)


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
    background = reference.median.astype(np.float32) / 255.0
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
    aligned = warp_image(frame, registration)
    valid = warp_valid_mask(frame.shape, registration)
    matched = match_illumination(
        aligned, background, grid=params.illumination_grid, max_gain=params.max_gain
    )
    result = SnapshotResult(
        captured_at, health=health, registration=registration.method, shift_px=registration.shift
    )
    if reference.count < params.warmup_frames:
        state = _absorb(state, mode, reference, matched, valid, params, warm=True)
        return state, result
    if mode == "ir":
        # Night frames are few, so their background is weeks old and shows every season's
        # change; they keep it current but, like fog, neither confirm nor break a streak.
        state = _absorb(state, mode, reference, matched, valid, params, warm=False)
        return state, result
    score = score_change(
        matched,
        background,
        spread=reference.spread.astype(np.float32) / 255.0,
        valid=valid,
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
    state = _absorb(
        state, mode, reference, matched, valid, params, warm=False, adopt=farm_work, held=held
    )
    return state, replace(result, detections=detections, candidates=score.candidates)


def image_of(frame: NDArray[np.float32]) -> NDArray[np.uint8]:
    """Back to uint8 (rows, cols, 3) from [0, 1] floats."""
    return np.round(frame * 255.0).astype(np.uint8)


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
        references={mode: fresh},
        streak=np.zeros_like(state.streak),
        streak_start=np.zeros_like(state.streak_start),
        open_mask=np.zeros_like(state.open_mask),
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
    matched: NDArray[np.float32],
    valid: NDArray[np.bool_],
    params: CameraParams,
    *,
    warm: bool,
    adopt: NDArray[np.bool_] | None = None,
    held: NDArray[np.bool_] | None = None,
) -> CameraState:
    accepted = state.accepted + 1
    state = replace(state, accepted=accepted)
    frame = np.round(matched * 255.0).astype(np.uint8)
    if adopt is not None and adopt.any():
        reference = reference.adopting(frame, adopt & valid)
    if warm or accepted % params.reference_every == 0:
        # Pending and reported changes keep the old background: a change is never learned away.
        keep = ~valid if warm else (~valid | (state.streak > 0) | state.open_mask)
        if held is not None:
            keep |= held if adopt is None else held & ~adopt
        frame[keep] = reference.median[keep]
        reference = reference.with_frame(frame)
    return replace(state, references={**state.references, mode: reference})


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
    streak = np.where(candidates, np.minimum(state.streak.astype(np.int16) + 1, 255), 0)
    streak = np.where(hidden, state.streak, streak)
    start = np.where(candidates & (state.streak == 0), timestamp, state.streak_start)
    start = np.where(candidates | hidden, start, 0).astype(np.int64)
    confirmed = (streak >= params.persistence) & ~state.open_mask
    detections: tuple[CameraDetection, ...] = ()
    open_mask = state.open_mask
    farm_work = np.zeros_like(candidates)
    if confirmed.sum() >= params.min_area_px:
        outlines = outline_detections(
            confirmed=confirmed,
            candidates=candidates,
            colour=score.colour,
            open_mask=state.open_mask,
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
        streak=streak.astype(np.uint8),
        streak_start=start,
        open_mask=open_mask,
        next_detection_id=state.next_detection_id + len(detections),
    )
    return state, detections, farm_work


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
