"""The tower-camera detector on synthetic sequences with known answers."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numba
import numpy as np
import pytest
import shapely
from numpy.typing import NDArray
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry

from detection import camera_kernels
from detection.camera import (
    CameraParams,
    CameraState,
    SnapshotResult,
    process_snapshot,
)
from detection.camera_change import (
    Outlines,
    _background_edges,
    _surely_too_large,
    outline_detections,
    parcel_labels,
    region_of_interest,
)
from detection.camera_reference import ReferenceModel
from detection.camera_state import decode_state
from detection.geolocate import (
    Calibration,
    ground_area_m2,
    image_geometry_to_lonlat,
    watched_ground,
)
from detection.io.snapshot import InvalidSnapshotError
from tests.detection.test_camera_scene import Scene

START = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
PATCH = (-10.0, 190.0, 10.0, 210.0, (0.78, 0.78, 0.74))  # a 20 m × 20 m concrete pad
PARAMS = CameraParams()


def run(
    frames: list[NDArray[np.uint8]],
    calibration: Calibration,
    state: CameraState | None = None,
    *,
    start: int = 0,
    params: CameraParams = PARAMS,
) -> tuple[CameraState, list[SnapshotResult]]:
    results = []
    for index, frame in enumerate(frames, start=start):
        state, result = process_snapshot(
            state,
            frame,
            START + timedelta(minutes=10 * index),
            calibration=calibration,
            params=params,
        )
        results.append(result)
    assert state is not None
    return state, results


def detections(results: list[SnapshotResult]) -> list[tuple[int, object]]:
    return [(i, d) for i, r in enumerate(results) for d in r.detections]


def background(scene: Scene, count: int) -> list[NDArray[np.uint8]]:
    return [scene.render(noise_seed=i) for i in range(count)]


def test_identical_frames_show_no_change(scene: Scene, calibration: Calibration) -> None:
    frame = scene.render()
    _, results = run([frame] * 8, calibration)
    assert detections(results) == []
    assert all(r.candidates is None or not r.candidates.any() for r in results)


def test_a_known_sway_is_recovered(scene: Scene, calibration: Calibration) -> None:
    frames = [*background(scene, 3), scene.render(noise_seed=9, shift=(-4, 7))]
    _, results = run(frames, calibration)
    assert results[-1].registration == "shift"
    np.testing.assert_allclose(results[-1].shift_px, (4.0, -7.0), atol=0.3)
    assert not results[-1].candidates.any()


def _contrast(frame: NDArray[np.uint8]) -> float:
    """Spatial standard deviation of brightness over the ground (the lower half)."""
    return float(frame[frame.shape[0] // 2 :].astype(np.float32).mean(axis=2).std())


def test_a_background_started_on_a_hazy_frame_takes_on_the_contrast_of_clear_ones(
    scene: Scene, calibration: Calibration
) -> None:
    hazy = scene.render(noise_seed=0).astype(np.float32)
    hazy = (0.4 * hazy + 0.6 * 200.0).astype(np.uint8)  # washed towards the airlight
    frames = [hazy, *[scene.render(noise_seed=i) for i in range(1, 9)]]
    state, results = run(frames, calibration)
    assert detections(results) == []
    learned = state.references["day"].median
    assert _contrast(learned) >= 0.9 * _contrast(frames[-1])
    assert _contrast(hazy) < 0.5 * _contrast(frames[-1])


def started_off_the_pose(scene: Scene) -> list[NDArray[np.uint8]]:
    """A first frame that caught the tower swayed by (3, -5) working pixels, then ten that
    scatter about the pose the calibration was made in."""
    sway = [(0, 0), (1, -1), (-1, 1), (0, 1), (1, 0), (-1, 0), (0, -1), (1, 1), (-1, -1), (0, 0)]
    first = scene.render(noise_seed=0, shift=(3, -5))
    return [first] + [scene.render(noise_seed=1 + i, shift=s) for i, s in enumerate(sway)]


def test_a_background_started_off_the_calibrated_pose_is_placed_on_it(
    scene: Scene, calibration: Calibration
) -> None:
    frames = started_off_the_pose(scene)
    state, results = run(frames, calibration)
    np.testing.assert_allclose(results[1].shift_px, (3.0, -5.0), atol=0.3)
    assert state.references["day"].placed
    _, after = run([scene.render(noise_seed=50)], calibration, state, start=len(frames))
    np.testing.assert_allclose(after[0].shift_px, (0.0, 0.0), atol=0.3)
    assert not after[0].candidates.any()


def test_pending_and_reported_changes_move_with_their_background() -> None:
    state = CameraState.empty((20, 30))
    streak = np.zeros((20, 30), dtype=np.uint8)
    streak[5:8, 10:14] = 2
    colour = np.zeros((20, 30, 3), dtype=np.int8)
    colour[streak > 0] = 7
    state = replace(
        state,
        streak=streak,
        streak_start=np.where(streak > 0, 1_700_000_000, 0).astype(np.int64),
        streak_colour=colour,
        open_mask=np.pad(np.ones((3, 3), dtype=bool), ((0, 17), (0, 27))),
        open_quiet=np.pad(np.full((3, 3), 4, dtype=np.uint8), ((0, 17), (0, 27))),
    )
    moved = state.moved_by((-2, 3))
    np.testing.assert_array_equal(moved.streak[3:6, 13:17], 2)
    assert moved.streak.sum() == streak.sum()
    assert (moved.streak_start > 0).sum() == 12 and (moved.streak_colour == 7).sum() == 36
    # The reported change in the top corner moved partly out of the frame; nothing came in.
    np.testing.assert_array_equal(np.argwhere(moved.open_mask), [[0, 3], [0, 4], [0, 5]])
    assert moved.open_quiet.sum() == 3 * 4


def iou_on_ground(calibration: Calibration, found: BaseGeometry, truth: BaseGeometry) -> float:
    overlap = ground_area_m2(calibration, found.intersection(truth))
    return overlap / ground_area_m2(calibration, found.union(truth))


def test_a_change_is_mapped_where_it_stands_whatever_pose_the_first_frame_had(
    scene: Scene, calibration: Calibration
) -> None:
    frames = started_off_the_pose(scene)
    frames += [scene.render(noise_seed=20 + i, patches=[PATCH]) for i in range(3)]
    truth = Polygon(scene.lonlat(np.array([[-10, 190], [10, 190], [10, 210], [-10, 210]])))
    _, results = run(frames, calibration)
    [(_, placed)] = detections(results)
    assert iou_on_ground(calibration, placed.ground, truth) >= 0.7
    # Kept in its first frame's grid, the background maps the same change off its ground.
    _, results = run(frames, calibration, params=replace(PARAMS, placement_frames=0))
    [(_, unplaced)] = detections(results)
    assert iou_on_ground(calibration, unplaced.ground, truth) < 0.5


def test_a_change_persisting_over_the_persistence_is_detected_with_its_onset(
    scene: Scene, calibration: Calibration
) -> None:
    frames = background(scene, 5) + [
        scene.render(noise_seed=10 + i, patches=[PATCH], shift=(i % 2, -i)) for i in range(4)
    ]
    _, results = run(frames, calibration)
    found = detections(results)
    confirming = 5 + PARAMS.persistence - 1  # the n-th snapshot showing it
    assert [index for index, _ in found] == [confirming]
    detection = found[0][1]
    assert detection.onset == START + timedelta(minutes=50)
    assert detection.confirmed_at == START + timedelta(minutes=10 * confirming)
    truth = Polygon(scene.lonlat(np.array([[-10, 190], [10, 190], [10, 210], [-10, 210]])))
    overlap = ground_area_m2(calibration, detection.ground.intersection(truth))
    union = ground_area_m2(calibration, detection.ground.union(truth))
    assert overlap / union >= 0.5
    assert detection.area_m2 == pytest.approx(400, rel=0.6)
    assert detection.type == "building_or_hardening"


@pytest.mark.parametrize(
    ("box", "too_large"),
    [
        # 3.5 working rows 600–690 m out: 89 m deep as drawn, 63 m without the partly covered
        # top and bottom rows, 26 m across; an object, not the edge of a ploughed parcel.
        ((940, 314, 1000, 328), False),
        # One working row deep, unresolved along the line of sight: judged by its width.
        ((940, 318, 1040, 322), False),
        ((900, 318, 1200, 322), True),  # 127 m across
        ((700, 312, 1200, 328), True),  # a whole parcel
    ],
)
def test_far_changes_are_sized_allowing_for_the_depth_of_a_working_row(
    calibration: Calibration, box: tuple[int, int, int, int], too_large: bool
) -> None:
    outline = shapely.box(*box)
    watched = watched_ground(calibration)
    ground = image_geometry_to_lonlat(calibration, outline).intersection(watched)
    scale = calibration.image_size[0] / 480
    assert _surely_too_large(outline, ground, calibration, watched, PARAMS, scale) is too_large


@pytest.mark.parametrize("grain", [0.0, 0.03])
def test_background_edges_mark_parcel_boundaries_not_crop_grain(grain: float) -> None:
    rng = np.random.default_rng(3)
    brightness = np.where(np.arange(60)[:, None] < 30, 0.3, 0.42) * np.ones((60, 80))
    brightness += rng.uniform(-grain, grain, brightness.shape)
    edges = _background_edges(np.repeat(brightness[..., None], 3, axis=2), level=0.03)
    assert edges[29:31].mean() > 0.9  # the boundary between the two parcels
    assert edges[:26].mean() + edges[34:].mean() < 0.1  # inside them


def test_a_change_seen_fewer_times_than_the_persistence_does_not_alarm_yet(
    scene: Scene, calibration: Calibration
) -> None:
    seen = PARAMS.persistence - 1
    frames = background(scene, 5) + [scene.render(noise_seed=20, patches=[PATCH])] * seen
    _, results = run(frames, calibration)
    assert detections(results) == []


def test_a_reported_change_is_neither_repeated_nor_absorbed(
    scene: Scene, calibration: Calibration
) -> None:
    frames = background(scene, 4) + [
        scene.render(noise_seed=30 + i, patches=[PATCH]) for i in range(12)
    ]
    state, results = run(frames, calibration)
    assert len(detections(results)) == 1
    # Twelve snapshots later the background still shows the field, not the pad.
    assert state.open_mask.any()
    assert results[-1].candidates.any()


@pytest.mark.parametrize(("grown_m", "reported_again"), [(1.0, False), (3.0, True)])
def test_a_reported_change_is_reported_again_only_once_it_grows(
    scene: Scene, calibration: Calibration, grown_m: float, reported_again: bool
) -> None:
    left, near, right, far, colour = PATCH
    grown = (left - grown_m, near - grown_m, right + grown_m, far + grown_m, colour)
    frames = background(scene, 4)
    frames += [scene.render(noise_seed=30 + i, patches=[PATCH]) for i in range(3)]
    frames += [scene.render(noise_seed=40 + i, patches=[grown]) for i in range(4)]
    _, results = run(frames, calibration)
    found = detections(results)
    # A metre more all round is the pad's rim showing more fully; three metres (400 → 676 m²)
    # is growth, reported as a change of its own (the service grows the case with it).
    assert len(found) == (2 if reported_again else 1)
    if reported_again:
        assert found[1][1].area_m2 > found[0][1].area_m2


def test_a_reported_change_that_is_gone_is_watched_again_so_a_rebound_is_reported(
    scene: Scene, calibration: Calibration
) -> None:
    pad = [scene.render(noise_seed=60 + i, patches=[PATCH]) for i in range(3)]
    gone = [scene.render(noise_seed=70 + i) for i in range(PARAMS.open_release_after)]
    state, results = run(background(scene, 4) + pad + gone[:-1], calibration)
    assert len(detections(results)) == 1 and state.open_mask.any()  # one quiet look short
    state, results = run(background(scene, 4) + pad + gone, calibration)
    assert len(detections(results)) == 1 and not state.open_mask.any()
    again = [scene.render(noise_seed=80 + i, patches=[PATCH]) for i in range(3)]
    state, results = run(background(scene, 4) + pad + gone + again, calibration)
    found = detections(results)
    assert [index for index, _ in found] == [5, 4 + 3 + len(gone) + 1]
    rebound = found[1][1]
    assert rebound.onset == START + timedelta(minutes=10 * (4 + 3 + len(gone)))
    assert rebound.detection_id == found[0][1].detection_id + 1


def test_night_frames_whose_background_learned_a_reported_change_do_not_release_it(
    scene: Scene, calibration: Calibration
) -> None:
    pad = [scene.render(noise_seed=60 + i, patches=[PATCH]) for i in range(3)]
    # The infrared background starts after the report, with the pad in it: at night the pad
    # matches its background, which must not pass for the pad being gone (night frames are
    # not scored for change, so they neither count nor break a reported change's quiet run).
    night = [
        frame.mean(axis=-1, keepdims=True).repeat(3, axis=-1).astype(np.uint8) for frame in pad
    ]
    nights = [night[i % 3] for i in range(PARAMS.open_release_after + 6)]
    state, results = run(background(scene, 4) + pad + nights + pad, calibration)
    assert len(detections(results)) == 1 and state.open_mask.any()


def test_passing_vehicles_never_alarm(scene: Scene, calibration: Calibration) -> None:
    rng = np.random.default_rng(3)
    frames = [
        scene.render(
            noise_seed=i,
            blobs=[(rng.uniform(-150, 150), rng.uniform(120, 500), 3.0) for _ in range(3)],
        )
        for i in range(20)
    ]
    _, results = run(frames, calibration)
    assert detections(results) == []
    assert any(r.candidates is not None and r.candidates.any() for r in results)


def test_a_vehicle_in_the_first_frame_does_not_haunt_the_background(
    scene: Scene, calibration: Calibration
) -> None:
    first = scene.render(noise_seed=0, blobs=[(0.0, 150.0, 4.0)])
    _, results = run([first, *background(scene, 9)], calibration)
    assert detections(results) == []


def test_an_exposure_jump_is_not_change(scene: Scene, calibration: Calibration) -> None:
    frames = background(scene, 4) + [
        scene.render(noise_seed=40 + i, gain=1.45, offset=-0.05) for i in range(4)
    ]
    _, results = run(frames, calibration)
    assert detections(results) == []
    assert results[-1].candidates.sum() < 10


def test_the_same_patch_outside_the_farmland_is_ignored(
    scene: Scene, calibration: Calibration
) -> None:
    outside = (450.0, 190.0, 470.0, 210.0, PATCH[4])  # east of the 400 m farmland edge
    frames = background(scene, 4) + [
        scene.render(noise_seed=50 + i, patches=[outside]) for i in range(4)
    ]
    _, results = run(frames, calibration)
    assert detections(results) == []


def test_state_survives_a_round_trip_between_snapshots(
    scene: Scene, calibration: Calibration
) -> None:
    frames = background(scene, 5) + [
        scene.render(noise_seed=60 + i, patches=[PATCH]) for i in range(PARAMS.persistence)
    ]
    state, _ = run(frames[:6], calibration)
    restored = CameraState.from_bytes(state.to_bytes())
    for index, frame in enumerate(frames[6:], start=6):
        restored, result = process_snapshot(
            restored,
            frame,
            START + timedelta(minutes=10 * index),
            calibration=calibration,
            params=PARAMS,
        )
    assert len(result.detections) == 1
    assert result.detections[0].onset == START + timedelta(minutes=50)


def test_a_day_snapshot_leaves_the_stored_night_background_undecoded(
    scene: Scene, calibration: Calibration
) -> None:
    day = background(scene, 5)
    night = [f.mean(axis=-1, keepdims=True).repeat(3, axis=-1).astype(np.uint8) for f in day]
    state, _ = run(day[:3] + night[:3], calibration)
    restored = decode_state(state.to_bytes()).state
    assert set(restored.references.undecoded()) == {"day", "ir"}
    restored, result = process_snapshot(
        restored, day[4], START + timedelta(hours=1), calibration=calibration, params=PARAMS
    )
    assert result.registration and not result.rejection
    assert set(restored.references.undecoded()) == {"ir"}
    np.testing.assert_array_equal(
        CameraState.from_bytes(restored.to_bytes()).references["ir"].frames,
        state.references["ir"].frames,
    )


def test_out_of_order_and_future_snapshots_are_refused(
    scene: Scene, calibration: Calibration
) -> None:
    frame = scene.render()
    state, _ = run([frame, frame], calibration)
    with pytest.raises(InvalidSnapshotError, match="capture order") as error:
        process_snapshot(state, frame, START, calibration=calibration, params=PARAMS)
    assert error.value.reason == "out_of_order"
    later = START + timedelta(days=2)
    with pytest.raises(InvalidSnapshotError, match="future") as error:
        process_snapshot(
            state,
            frame,
            later,
            calibration=calibration,
            params=PARAMS,
            now=START + timedelta(days=1),
        )
    assert error.value.reason == "future"


def test_camera_problems_become_health_events_not_changes(
    scene: Scene, calibration: Calibration
) -> None:
    blank = np.full_like(scene.render(), 3)
    elsewhere = Scene(seed=99, ground_to_image=scene.ground_to_image[:, [1, 0, 2]])
    # Something on the lens: bright and dark, but with none of the ground's texture.
    ramp = np.linspace(60, 140, 270)[:, None, None] * np.array([1.0, 0.8, 0.6])
    covered = np.broadcast_to(ramp, blank.shape).astype(np.uint8)
    gray = scene.render(noise_seed=70).mean(axis=-1, keepdims=True).repeat(3, axis=-1)
    frames = [
        *background(scene, 4),
        blank,
        elsewhere.render(noise_seed=1),
        covered,
        gray.astype(np.uint8),
    ]
    _, results = run(frames, calibration)
    kinds = [[event.kind for event in r.health] for r in results[4:]]
    assert kinds == [["no_signal"], ["moved"], ["obstructed"], ["night_ir"]]
    assert detections(results) == []


def test_a_frame_of_the_wrong_size_is_refused(scene: Scene, calibration: Calibration) -> None:
    with pytest.raises(InvalidSnapshotError) as error:
        process_snapshot(None, scene.render()[:200], START, calibration=calibration, params=PARAMS)
    assert error.value.reason == "wrong_size"


def test_ploughing_a_whole_parcel_does_not_alarm(scene: Scene, calibration: Calibration) -> None:
    # The scene's parcels are 25 m × 40 m cells; this one turns to bare brown soil.
    ploughed = (0.0, 200.0, 25.0, 240.0, (0.45, 0.32, 0.2))
    frames = background(scene, 4) + [
        scene.render(noise_seed=80 + i, patches=[ploughed]) for i in range(6)
    ]
    _, results = run(frames, calibration)
    assert detections(results) == []


@pytest.mark.parametrize("reference_every", [1, 2])
def test_every_background_stays_the_median_of_its_frames(
    scene: Scene, calibration: Calibration, monkeypatch: pytest.MonkeyPatch, reference_every: int
) -> None:
    # Stored states hold the frames only and compute median and spread again when read. With
    # a frame added less often than every snapshot, farm work learned at once (`adopting`)
    # is what the background holds until the next frame is added.
    params = replace(PARAMS, reference_every=reference_every)
    adopted = []
    adopting = ReferenceModel.adopting
    monkeypatch.setattr(
        ReferenceModel,
        "adopting",
        lambda model, image, where: adopted.append(where.sum()) or adopting(model, image, where),
    )
    ploughed = (0.0, 200.0, 25.0, 240.0, (0.45, 0.32, 0.2))
    frames = (
        background(scene, 4)
        + [scene.render(noise_seed=80 + i, patches=[ploughed]) for i in range(6)]
        + [scene.render(noise_seed=90 + i, patches=[ploughed, PATCH]) for i in range(4)]
    )
    state = None
    found = []
    for index, frame in enumerate(frames):
        state, results = run([frame], calibration, state, start=index, params=params)
        found += results[0].detections
        for model in state.references.values():
            again = ReferenceModel.from_frames(
                model.frames, count=model.count, added=model.added, noise=model.noise
            )
            np.testing.assert_array_equal(model.median, again.median)
            np.testing.assert_array_equal(model.spread, again.spread)
    assert adopted  # the ploughed parcel was learned at once, in every frame
    assert len(found) == 1  # and the patch after it was reported (an open change, kept out)


def _parcel_on_ground(
    calibration: Calibration, params: CameraParams
) -> tuple[NDArray[np.float32], int, int]:
    """A working-resolution background: a bright 20 × 40 px parcel on darker ground, inside
    the watched region, with the row and column of its top-left corner."""
    shape = (calibration.image_size[1] // params.reduce, calibration.image_size[0] // params.reduce)
    rows, cols = np.nonzero(region_of_interest(calibration, shape=shape, params=params))
    top, left = int(np.percentile(rows, 60)), int(np.percentile(cols, 40))
    background = np.full((*shape, 3), 0.3, dtype=np.float32)
    background[top : top + 20, left : left + 40] = 0.55
    return background, top, left


def _outlines_of(
    changed: NDArray[np.bool_],
    background: NDArray[np.float32],
    matched: NDArray[np.float32],
    calibration: Calibration,
    params: CameraParams,
) -> Outlines:
    """`outline_detections` with every `changed` pixel confirmed and strongly changed."""
    colour = np.where(changed, 0.9, 0.0).astype(np.float32)
    return outline_detections(
        confirmed=changed,
        candidates=changed,
        colour=colour,
        open_mask=np.zeros(changed.shape, dtype=bool),
        streak_start=np.zeros(changed.shape, dtype=np.int64),
        score=3 * colour,
        matched=matched,
        background=background,
        captured_at=START,
        first_id=1,
        calibration=calibration,
        params=params,
    )


@pytest.mark.parametrize(("reach_px", "reported"), [(2, False), (0, True)])
def test_a_strip_beside_a_parcel_turning_over_in_the_same_frame_goes_with_it(
    scene: Scene, calibration: Calibration, reach_px: int, reported: bool
) -> None:
    # Working resolution: a parcel of its own in the background turns over whole, and a strip
    # one row past its edge (a boundary line between them) changes with it.
    # These changes cover a few square metres near the tower: size is not what is tested.
    params = CameraParams(farm_work_reach_px=reach_px, min_object_area_m2=0.0)
    background, top, left = _parcel_on_ground(calibration, params)
    parcel = np.zeros(background.shape[:2], dtype=bool)
    strip = np.zeros_like(parcel)
    parcel[top : top + 20, left : left + 40] = True
    strip[top + 21 : top + 24, left + 5 : left + 25] = True

    outlines = _outlines_of(parcel | strip, background, background + 0.2, calibration, params)

    assert outlines.farm_work[parcel].all()
    assert bool(outlines.found) is reported
    assert bool(outlines.farm_work[strip].all()) is not reported


@pytest.mark.parametrize(
    ("first_row", "max_edge_share", "reported"),
    [
        # Three of its four rows on the boundary between two parcels: a frame's light, haze
        # or a fraction of a pixel of sway there, not an object.
        (-2, 0.5, False),
        (-2, 1.0, True),  # the veto turned off
        # The same change inside the parcel, clear of its boundaries.
        (8, 0.5, True),
    ],
)
def test_a_change_lying_along_a_parcel_boundary_is_not_reported(
    calibration: Calibration, first_row: int, max_edge_share: float, reported: bool
) -> None:
    # A 4 × 6 px change at the parcel's top edge or well inside it.
    # These changes cover a few square metres near the tower: size is not what is tested.
    params = CameraParams(max_edge_share=max_edge_share, min_object_area_m2=0.0)
    background, top, left = _parcel_on_ground(calibration, params)
    changed = np.zeros(background.shape[:2], dtype=bool)
    changed[top + first_row : top + first_row + 4, left + 17 : left + 23] = True
    matched = background + 0.2 * changed[..., None]

    outlines = _outlines_of(changed, background, matched, calibration, params)

    assert len(outlines.found) == int(reported)
    # Vetoed as a boundary, it is not learned as farm work either: it may be an object after all.
    assert not outlines.farm_work[changed].any()
    assert bool(outlines.open_mask[changed].all()) is reported


def _with_parcel(
    calibration: Calibration, top: int, left: int, params: CameraParams
) -> Calibration:
    """`calibration` naming one parcel: the 20 × 40 px one of `_parcel_on_ground`."""
    scale = params.reduce
    drawn = shapely.box(left * scale, top * scale, (left + 40) * scale, (top + 20) * scale)
    return replace(calibration, parcels=(image_geometry_to_lonlat(calibration, drawn),))


def test_parcels_are_drawn_in_the_image_at_working_resolution(calibration: Calibration) -> None:
    background, top, left = _parcel_on_ground(calibration, PARAMS)
    labels = parcel_labels(
        _with_parcel(calibration, top, left, PARAMS), shape=background.shape[:2], params=PARAMS
    )
    assert labels is not None
    inside = np.zeros(background.shape[:2], dtype=bool)
    inside[top : top + 20, left : left + 40] = True
    assert (labels[inside] == 1).mean() > 0.95
    assert (labels[~inside] == 0).mean() > 0.99
    assert parcel_labels(calibration, shape=background.shape[:2], params=PARAMS) is None


@pytest.mark.parametrize(
    ("parcel_known", "parcel_turned_over", "parcel_along", "reported"),
    [
        # The whole parcel changed colour, though only part of it stood out: farm work.
        (True, True, 0.3, False),
        # Only that part changed: an object on part of the parcel.
        (True, False, 0.3, True),
        (True, True, 0.0, True),  # the test turned off
        (False, True, 0.3, True),  # no parcels to judge by
    ],
)
def test_a_change_whose_whole_parcel_turned_over_is_farm_work(
    calibration: Calibration,
    parcel_known: bool,
    parcel_turned_over: bool,
    parcel_along: float,
    reported: bool,
) -> None:
    # These changes cover a few square metres near the tower: size is not what is tested.
    params = CameraParams(parcel_along=parcel_along, min_object_area_m2=0.0)
    background, top, left = _parcel_on_ground(calibration, params)
    if parcel_known:
        calibration = _with_parcel(calibration, top, left, params)
    part = np.zeros(background.shape[:2], dtype=bool)
    part[top + 6 : top + 10, left + 15 : left + 25] = True
    parcel = np.zeros_like(part)
    parcel[top : top + 20, left : left + 40] = True
    changed = parcel if parcel_turned_over else part
    matched = background + np.where(changed, np.float32(0.15), np.float32(0.0))[..., None]

    outlines = _outlines_of(part, background, matched, calibration, params)

    assert len(outlines.found) == int(reported)
    assert bool(outlines.farm_work[part].all()) is not reported


@pytest.mark.parametrize(("min_area_m2", "reported"), [(5.0, False), (4.0, True), (0.0, True)])
def test_a_change_under_the_minimum_mapping_unit_waits_to_grow(
    calibration: Calibration, min_area_m2: float, reported: bool
) -> None:
    # A 4 × 10 px change inside the parcel: about 4.4 m² of ground at that range.
    params = CameraParams(min_object_area_m2=min_area_m2)
    background, top, left = _parcel_on_ground(calibration, params)
    changed = np.zeros(background.shape[:2], dtype=bool)
    changed[top + 6 : top + 10, left + 15 : left + 25] = True
    matched = background + 0.2 * changed[..., None]

    outlines = _outlines_of(changed, background, matched, calibration, params)

    assert len(outlines.found) == int(reported)
    assert all(4.0 < found["area_m2"] < 5.0 for found in outlines.found)
    # Not reported yet is not dismissed: it is neither learned nor marked as reported.
    assert bool(outlines.open_mask[changed].any()) is reported
    assert not outlines.farm_work[changed].any()


def _fogged(frame: NDArray[np.uint8], rows: int) -> NDArray[np.uint8]:
    """The far part of the frame (the top ``rows``) washed out by fog."""
    out = frame.astype(np.float32)
    out[:rows] = 0.85 * 205.0 + 0.15 * out[:rows]
    return out.astype(np.uint8)


@pytest.mark.parametrize("clear_texture", [0.5, 0.0])
def test_fog_over_a_pending_change_delays_it_instead_of_forgetting_it(
    scene: Scene, calibration: Calibration, clear_texture: float
) -> None:
    patch_rows = scene.pixels_of_ground(np.array([[0.0, 190.0], [0.0, 210.0]]))[:, 1] / 4
    fog_rows = int(patch_rows.max()) + 8
    showing = [scene.render(noise_seed=40 + i, patches=[PATCH]) for i in range(4)]
    params = CameraParams(clear_texture=clear_texture)
    # Fog over the snapshot that would confirm the change, then one more clear one.
    last = params.persistence - 1
    frames = [*background(scene, 5), *showing[:last], _fogged(showing[last], fog_rows)]
    frames.append(showing[last + 1])
    state, found = None, []
    for index, frame in enumerate(frames):
        when = START + timedelta(minutes=10 * index)
        state, result = process_snapshot(state, frame, when, calibration=calibration, params=params)
        found += [(index, d) for d in result.detections]
    if clear_texture > 0:
        # The foggy snapshot neither counts nor breaks the streak: the n-th clear one confirms.
        assert [index for index, _ in found] == [len(frames) - 1]
        assert found[0][1].onset == START + timedelta(minutes=50)
    else:
        assert found == []  # without the rule the fog resets the streak


def test_a_night_frame_pauses_a_pending_change_instead_of_breaking_it(
    scene: Scene, calibration: Calibration
) -> None:
    showing = [scene.render(noise_seed=90 + i, patches=[PATCH]) for i in range(PARAMS.persistence)]
    night = showing[0].mean(axis=-1, keepdims=True).repeat(3, axis=-1).astype(np.uint8)
    # Night frames seen earlier give the infrared background some history.
    frames = [*background(scene, 4), night, night, night, *background(scene, 2)]
    first = len(frames)
    frames += [showing[0], night, *showing[1:]]
    _, results = run(frames, calibration)
    found = detections(results)
    assert [index for index, _ in found] == [len(frames) - 1]
    assert found[0][1].onset == START + timedelta(minutes=10 * first)


@pytest.mark.parametrize("hold_score", [0.4, float("inf")])
def test_a_faint_abrupt_change_is_held_out_of_the_background(
    scene: Scene, calibration: Calibration, hold_score: float
) -> None:
    x0, y0, x1, y1, _ = PATCH
    before = scene.render(noise_seed=60)
    inside = scene.render(noise_seed=60, patches=[(x0, y0, x1, y1, (1.0, 1.0, 1.0))]) == 255
    inside = inside.all(axis=2)
    field = before[inside].astype(float).mean(axis=0)
    faint = (*PATCH[:4], tuple(float(v) / 255 * 1.05 for v in field))  # 5% brighter
    frames = background(scene, 5) + [
        scene.render(noise_seed=60 + i, patches=[faint]) for i in range(6)
    ]
    state = None
    for index, frame in enumerate(frames):
        when = START + timedelta(minutes=10 * index)
        state, _ = process_snapshot(
            state, frame, when, calibration=calibration, params=CameraParams(hold_score=hold_score)
        )
    assert state is not None
    median = state.references[state.last_mode].median[inside].astype(float).mean(axis=0)
    # Without the hold, three snapshots turn the median and the change is gone for good.
    learned = np.abs(median - field).max() > 5
    assert learned == (hold_score == float("inf"))


def test_the_passes_loaded_ahead_are_those_the_detector_runs(
    scene: Scene, calibration: Calibration
) -> None:
    # A worker loads them as it starts; a pass the detector then called with other types
    # would be loaded again during the first snapshot, the cost the early load is for.
    dispatchers = [
        kernel
        for kernel in vars(camera_kernels).values()
        if isinstance(kernel, numba.core.registry.CPUDispatcher)
        # Inlined into the passes that call it: it is never called on its own.
        and kernel.targetoptions.get("inline") != "always"
    ]
    assert len(dispatchers) == 10  # the module's passes: finding none would prove nothing
    camera_kernels.load_passes()
    loaded = [list(dispatcher.signatures) for dispatcher in dispatchers]
    assert all(loaded)
    frames = background(scene, 5) + [scene.render(noise_seed=10, patches=[PATCH])] * 2
    run(frames, calibration)
    assert [list(dispatcher.signatures) for dispatcher in dispatchers] == loaded
