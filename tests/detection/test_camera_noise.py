"""Residual noise, time-of-day backgrounds and older states of the tower-camera detector."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from detection.camera import CameraDetection, CameraParams, CameraState, process_snapshot
from detection.camera_reference import NOISE_UNITS, ReferenceModel
from detection.camera_state import _npz
from detection.geolocate import Calibration
from tests.detection.test_camera_scene import Scene

# The scene stands at 120.1° E: UTC 01:00 is 09:12 local solar time, 08:00 is 16:12.
MORNING = datetime(2024, 5, 1, 1, 0, tzinfo=UTC)
EVENING = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
PARAMS = CameraParams(day_buckets=(11.0, 14.0))


def _residuals(level: float, count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.abs(rng.normal(0.0, level, size=(40, 60))).astype(np.float32) for _ in range(count)]


def test_the_residual_noise_settles_near_an_upper_quantile_of_the_residual() -> None:
    model = ReferenceModel.start(np.zeros((40, 60, 3), dtype=np.uint8), depth=5)
    everywhere = np.ones((40, 60), dtype=bool)
    for residual in _residuals(2 / 255, 60, seed=1):
        model = model.with_residual(residual, everywhere, rise=0.3, fall=0.05)
        model = model.with_frame(np.zeros((40, 60, 3), dtype=np.uint8))
    levels = model.noise.astype(float) / NOISE_UNITS
    # |N(0, 2)| has its median at 1.35 levels and its 86th percentile at 2.96.
    assert 2.0 < float(np.median(levels)) < 4.5


def test_one_sudden_change_barely_raises_the_residual_noise() -> None:
    model = ReferenceModel.start(np.zeros((40, 60, 3), dtype=np.uint8), depth=5)
    everywhere = np.ones((40, 60), dtype=bool)
    for residual in _residuals(1.5 / 255, 20, seed=2):
        model = model.with_residual(residual, everywhere, rise=0.3, fall=0.05)
        model = model.with_frame(np.zeros((40, 60, 3), dtype=np.uint8))
    quiet = model.noise.astype(float) / NOISE_UNITS
    jump = np.full((40, 60), 40 / 255, dtype=np.float32)
    raised = model.with_residual(jump, everywhere, rise=0.3, fall=0.05).noise / NOISE_UNITS
    # Capped at three times the estimate plus two levels, of which it climbs 0.3 of the gap:
    # one 40-level change leaves the noise of a quiet pixel a few levels, not 40.
    assert (raised <= quiet + 0.3 * (2 * quiet + 2) + 0.25).all()
    assert float(np.median(raised)) < 8


def test_pixels_outside_where_keep_their_noise() -> None:
    model = ReferenceModel.start(np.zeros((4, 4, 3), dtype=np.uint8), depth=5)
    where = np.zeros((4, 4), dtype=bool)
    where[:2] = True
    model = model.with_residual(np.full((4, 4), 0.02, np.float32), where, rise=0.3, fall=0.05)
    assert (model.noise[:2] > 0).all()
    assert (model.noise[2:] == 0).all()


def test_morning_and_evening_snapshots_keep_separate_backgrounds(
    scene: Scene, calibration: Calibration
) -> None:
    state = None
    for day in range(4):
        for start, brightness in ((MORNING, 1.0), (EVENING, 0.8)):
            frame = scene.render(noise_seed=day, gain=brightness)
            state, _ = process_snapshot(
                state,
                frame,
                start + timedelta(days=day),
                calibration=calibration,
                params=PARAMS,
            )
    assert state is not None
    assert set(state.references) == {"day_morning", "day_evening"}
    assert state.last_mode == "day_evening"
    assert state.references["day_morning"].added == 4
    assert state.references["day_evening"].added == 4


def _format_1(state: CameraState) -> bytes:
    """``state`` as the detector wrote it before residual noise and time-of-day buckets."""
    reference = state.references["day_evening"]
    meta = {
        "format": 1,
        "shape": list(state.shape),
        "last_captured_at": state.last_captured_at.isoformat() if state.last_captured_at else None,
        "last_mode": "day",
        "accepted": state.accepted,
        "next_detection_id": state.next_detection_id,
        "failures": state.failures,
        "references": {"day": [reference.count, reference.added]},
    }
    return _npz(
        {
            "meta": np.array(json.dumps(meta)),
            "streak": state.streak,
            "streak_start": state.streak_start,
            "open_mask": state.open_mask,
            "day_frames": reference.frames,
            "day_median": reference.median,
            "day_spread": reference.spread,
        },
        level=1,
    )


def test_a_format_1_state_still_loads_and_detects(scene: Scene, calibration: Calibration) -> None:
    patch = (-10.0, 190.0, 10.0, 210.0, (0.78, 0.78, 0.74))
    state = None
    for index in range(5):
        frame = scene.render(noise_seed=index)
        when = EVENING + timedelta(minutes=10 * index)
        state, _ = process_snapshot(state, frame, when, calibration=calibration, params=PARAMS)
    assert state is not None
    old = CameraState.from_bytes(_format_1(state))
    assert set(old.references) == {"day"}
    spread = old.references["day"].spread.astype(int)
    np.testing.assert_array_equal(
        old.references["day"].noise, np.minimum(spread * NOISE_UNITS, 255)
    )
    found: list[CameraDetection] = []
    for index in range(5, 5 + PARAMS.persistence):
        frame = scene.render(noise_seed=index, patches=[patch])
        when = EVENING + timedelta(minutes=10 * index)
        old, result = process_snapshot(old, frame, when, calibration=calibration, params=PARAMS)
        found += result.detections
    assert len(found) == 1
    assert "day_evening" in old.references
    restored = CameraState.from_bytes(old.to_bytes())
    np.testing.assert_array_equal(
        restored.references["day_evening"].noise, old.references["day_evening"].noise
    )


def test_an_unknown_state_format_is_refused(scene: Scene, calibration: Calibration) -> None:
    state, _ = process_snapshot(
        None, scene.render(), EVENING, calibration=calibration, params=PARAMS
    )
    with np.load(io.BytesIO(_format_1(state)), allow_pickle=False) as stored:
        arrays = {name: stored[name] for name in stored.files}
    meta = json.loads(str(arrays["meta"])) | {"format": 99}
    arrays["meta"] = np.array(json.dumps(meta))
    with pytest.raises(ValueError, match="format 99"):
        CameraState.from_bytes(_npz(arrays, level=1))


@pytest.mark.parametrize("agreement", [-1.0, 0.5])
def test_a_change_that_flips_colour_does_not_confirm_when_colour_must_agree(
    scene: Scene, calibration: Calibration, agreement: float
) -> None:
    params = CameraParams(colour_agreement=agreement)
    bright = (-10.0, 190.0, 10.0, 210.0, (0.85, 0.85, 0.8))
    dark = (-10.0, 190.0, 10.0, 210.0, (0.05, 0.05, 0.08))
    frames = [scene.render(noise_seed=i) for i in range(5)]
    frames += [scene.render(noise_seed=5, patches=[bright]), scene.render(patches=[dark])]
    state: CameraState | None = None
    found: list[CameraDetection] = []
    for index, frame in enumerate(frames):
        when = EVENING + timedelta(minutes=10 * index)
        state, result = process_snapshot(state, frame, when, calibration=calibration, params=params)
        found += result.detections
    assert len(found) == (1 if agreement < -0.5 else 0)
    assert state is not None
    # The dark patch starts a streak of its own, remembered with its own colour.
    assert (state.streak == 1).any() == (agreement > -0.5)
