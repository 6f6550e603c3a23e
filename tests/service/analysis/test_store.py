"""Storing detector output: once per object, screened, and one case per place."""

from __future__ import annotations

import hashlib
import threading
import uuid
from datetime import datetime
from pathlib import Path

import numpy as np
from shapely.geometry import MultiPolygon, box
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from detection.camera import CameraParams
from models import AlertEvent, Case, CaseEvent, Detection, Evidence, LayerFeature, Scene
from models.detection import ChangeType, DetectionSource, Screening
from models.jurisdiction import JurisdictionLevel
from models.layer import LayerKind
from models.scene import SceneKind
from service.analysis.coverage import (
    farmland_view,
    last_observed,
    record_feature_observations,
    record_observation,
)
from service.analysis.store import (
    DetectorRun,
    FoundChange,
    parameters_json,
    store_detections,
    store_png,
)
from tests.service.screening.places import (
    FAR_PLOT,
    FARMLAND,
    OUTSIDE,
    PLOT,
    SETTINGS,
    add_jurisdiction,
    add_layer_version,
    at,
)

RUN = DetectorRun(DetectionSource.remote_sensing, "raster-pair-test", {"min_mapping_unit_m2": 50})


def add_scene(session: Session, acquired_at: datetime) -> Scene:
    scene = Scene(
        kind=SceneKind.rs_tile,
        sha256=hashlib.sha256(uuid.uuid4().bytes).hexdigest(),
        storage_uri="objects/test",
        size_bytes=1,
        media_type="image/tiff",
        acquired_at=acquired_at,
        geom=box(120.09, 30.09, 120.12, 30.12),
    )
    session.add(scene)
    session.flush()
    return scene


def change(geom: object = PLOT, **fields: object) -> FoundChange:
    values: dict[str, object] = {
        "geom": geom,
        "change_type": ChangeType.building,
        "benign": False,
        "confidence": 0.8,
        "area_m2": 2100.0,
    }
    return FoundChange(**{**values, **fields})  # type: ignore[arg-type]


def totals(session: Session) -> dict[str, int]:
    tables = {"detections": Detection, "cases": Case, "events": CaseEvent, "alerts": AlertEvent}
    return {
        name: session.scalar(select(func.count()).select_from(table)) or 0
        for name, table in tables.items()
    }


def test_a_violation_opens_one_case_and_storing_it_again_changes_nothing(
    db_session: Session,
) -> None:
    add_layer_version(db_session, LayerKind.permanent_basic_farmland, [FARMLAND])
    township = add_jurisdiction(db_session, JurisdictionLevel.township, FARMLAND.buffer(0.01))
    scene = add_scene(db_session, at(2025, 7, 16))
    first = store_detections(scene, [change()], run=RUN, session=db_session, settings=SETTINGS)
    assert [s.screening for s in first] == [Screening.suspected_violation]
    case = db_session.get(Case, first[0].case_id)
    assert case is not None and case.jurisdiction_id == township.id
    assert case.first_seen_at == scene.acquired_at and case.area_m2 > 0
    stored = db_session.get(Detection, first[0].detection_id)
    assert stored is not None
    assert stored.detector_version == "raster-pair-test"
    assert stored.parameters == {"min_mapping_unit_m2": 50}
    before = totals(db_session)
    again = store_detections(scene, [change()], run=RUN, session=db_session, settings=SETTINGS)
    assert again[0].detection_id == first[0].detection_id and not again[0].created
    assert totals(db_session) == before


def test_farm_work_and_change_off_farmland_open_no_case(db_session: Session) -> None:
    add_layer_version(db_session, LayerKind.permanent_basic_farmland, [FARMLAND])
    scene = add_scene(db_session, at(2025, 7, 16))
    stored = store_detections(
        scene,
        [change(benign=True, change_type=ChangeType.ploughing), change(OUTSIDE)],
        run=RUN,
        session=db_session,
        settings=SETTINGS,
    )
    assert [s.screening for s in stored] == [Screening.benign, Screening.outside_farmland]
    assert all(s.case_id is None for s in stored)


def test_change_on_approved_land_is_recorded_as_approved(db_session: Session) -> None:
    add_layer_version(db_session, LayerKind.permanent_basic_farmland, [FARMLAND])
    add_layer_version(db_session, LayerKind.approved_construction, [PLOT.buffer(0.0001)])
    scene = add_scene(db_session, at(2025, 7, 16))
    stored = store_detections(scene, [change()], run=RUN, session=db_session, settings=SETTINGS)
    assert stored[0].screening == Screening.covered_by_approval and stored[0].case_id is None


def test_a_case_gets_its_before_and_after_chips_once(db_session: Session, tmp_path: Path) -> None:
    add_layer_version(db_session, LayerKind.permanent_basic_farmland, [FARMLAND])
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    chips = (store_png(image, tmp_path), store_png(image + 200, tmp_path))
    assert (tmp_path / chips[1].storage_uri).read_bytes().startswith(b"\x89PNG")
    scene = add_scene(db_session, at(2025, 7, 16))
    for _ in range(2):
        stored = store_detections(
            scene, [change(chips=chips)], run=RUN, session=db_session, settings=SETTINGS
        )
    kinds = db_session.scalars(
        select(Evidence.kind).where(Evidence.case_id == stored[0].case_id).order_by(Evidence.id)
    ).all()
    assert kinds == ["chip_before", "chip_after"]


def test_parcels_remember_when_they_were_last_observed(db_session: Session) -> None:
    version = add_layer_version(db_session, LayerKind.cultivated_land, [FARMLAND])
    july, june = add_scene(db_session, at(2025, 7, 16)), add_scene(db_session, at(2025, 6, 1))
    source = DetectionSource.remote_sensing
    assert record_observation(july.geom, source=source, scene=july, session=db_session) == 1
    # A late upload of an older scene does not move the time back.
    record_observation(june.geom, source=source, scene=june, session=db_session)
    assert record_observation(OUTSIDE, source=source, scene=june, session=db_session) == 0
    feature = db_session.scalars(
        select(LayerFeature).where(LayerFeature.layer_version_id == version.id)
    ).one()
    assert last_observed(feature.id, session=db_session) == {"remote_sensing": july.acquired_at}


def test_a_parcel_seen_for_the_first_time_beside_known_ones_gets_its_row(
    db_session: Session,
) -> None:
    version = add_layer_version(db_session, LayerKind.cultivated_land, [FARMLAND, OUTSIDE])
    known, new = db_session.scalars(
        select(LayerFeature.id)
        .where(LayerFeature.layer_version_id == version.id)
        .order_by(LayerFeature.id)
    ).all()
    june, july, august = (add_scene(db_session, at(2025, m, 1)) for m in (6, 7, 8))
    camera = DetectionSource.camera
    record_feature_observations([known], source=camera, scene=june, session=db_session)
    record_feature_observations([known, new], source=camera, scene=july, session=db_session)
    assert last_observed(new, session=db_session) == {"camera": july.acquired_at}
    record_feature_observations([known, new], source=camera, scene=august, session=db_session)
    assert last_observed(known, session=db_session) == {"camera": august.acquired_at}
    assert last_observed(new, session=db_session) == {"camera": august.acquired_at}


def test_the_farmland_in_a_view_follows_a_new_layer_version(db_session: Session) -> None:
    old = add_layer_version(db_session, LayerKind.cultivated_land, [FARMLAND], valid_to=at(2025, 1))
    first = farmland_view(FARMLAND, at=at(2024), session=db_session)
    assert farmland_view(FARMLAND, at=at(2024), session=db_session) is first  # kept
    new = add_layer_version(
        db_session, LayerKind.cultivated_land, [PLOT], version="2025", valid_from=at(2025, 1)
    )
    later = farmland_view(FARMLAND, at=at(2025, 6), session=db_session)
    ids = {
        version.id: db_session.scalars(
            select(LayerFeature.id).where(LayerFeature.layer_version_id == version.id)
        ).all()
        for version in (old, new)
    }
    assert list(first.feature_ids) == ids[old.id] and list(later.feature_ids) == ids[new.id]
    assert later.geometry is not None and later.geometry.equals(PLOT)
    assert farmland_view(OUTSIDE, at=at(2025, 6), session=db_session).feature_ids == ()


def test_a_view_names_its_cultivated_land_parcels_clipped_to_it(db_session: Session) -> None:
    # Cultivated parcels inside a larger basic-farmland block (farmland, not a parcel of its
    # own): one inside the view, one reaching out of it, and one in two pieces, a piece inside
    # and a piece touching the view's edge from outside, which meets the view in a line.
    view = box(120.100, 30.100, 120.1072, 30.1072)
    inside, touching = (
        box(120.1060, 30.1010, 120.1065, 30.1014),
        box(120.1072, 30.1030, 120.108, 30.104),
    )
    add_layer_version(
        db_session, LayerKind.cultivated_land, [PLOT, FAR_PLOT, MultiPolygon([inside, touching])]
    )
    add_layer_version(db_session, LayerKind.permanent_basic_farmland, [FARMLAND])

    seen = farmland_view(view, at=at(2024), session=db_session)

    assert seen.geometry is not None and seen.geometry.equals(view)
    assert sorted(round(parcel.area / 1e-8) for parcel in seen.parcels) == sorted(
        round(parcel.area / 1e-8) for parcel in (PLOT, FAR_PLOT.intersection(view), inside)
    )
    assert all(view.contains(parcel) for parcel in seen.parcels)
    assert {parcel.geom_type for parcel in seen.parcels} <= {"Polygon", "MultiPolygon"}


def test_camera_and_satellite_sightings_of_one_place_share_one_case(db_session: Session) -> None:
    add_layer_version(db_session, LayerKind.permanent_basic_farmland, [FARMLAND])
    camera_run = DetectorRun(DetectionSource.camera, "camera-test")
    snapshot = add_scene(db_session, at(2025, 7, 14))
    tile = add_scene(db_session, at(2025, 7, 16))
    seen = store_detections(
        snapshot,
        [change(PLOT.buffer(-0.00005))],
        run=camera_run,
        session=db_session,
        settings=SETTINGS,
    )
    also = store_detections(tile, [change()], run=RUN, session=db_session, settings=SETTINGS)
    assert seen[0].case_id == also[0].case_id
    case = db_session.get(Case, seen[0].case_id)
    assert case is not None
    assert case.sources == ["camera", "remote_sensing"] and case.confidence_level == "highest"
    assert (case.first_seen_at, case.last_seen_at) == (snapshot.acquired_at, tile.acquired_at)


def test_detector_parameters_with_infinite_values_are_stored_on_every_backend(
    db_session: Session,
) -> None:
    # The camera detector's defaults hold an infinite threshold; PostgreSQL's JSON has no
    # Infinity, so every camera detection once failed to store there.
    parameters = parameters_json(CameraParams())
    assert CameraParams().hold_score == float("inf") and parameters["hold_score"] == "inf"
    run = DetectorRun(DetectionSource.camera, "camera-test", parameters)
    add_layer_version(db_session, LayerKind.permanent_basic_farmland, [FARMLAND])
    scene = add_scene(db_session, at(2025, 7, 16))
    stored = store_detections(scene, [change()], run=run, session=db_session, settings=SETTINGS)
    db_session.expire_all()
    detection = db_session.get(Detection, stored[0].detection_id)
    assert detection is not None and detection.parameters == parameters


def test_two_workers_seeing_a_parcel_first_at_once_both_succeed(
    fresh_postgresql_engine: Engine,
) -> None:
    engine = fresh_postgresql_engine
    with Session(engine) as setup:
        version = add_layer_version(setup, LayerKind.cultivated_land, [FARMLAND])
        june, july = add_scene(setup, at(2025, 6, 1)), add_scene(setup, at(2025, 7, 16))
        setup.commit()
        version_id, june_id, july_id = version.id, june.id, july.id
    with Session(engine) as first, Session(engine) as second:
        feature_id = first.scalars(
            select(LayerFeature.id).where(LayerFeature.layer_version_id == version_id)
        ).one()
        source = DetectionSource.camera
        first_scene = first.get(Scene, june_id)
        assert first_scene is not None
        record_feature_observations([feature_id], source=source, scene=first_scene, session=first)
        errors: list[BaseException] = []

        def see_later() -> None:
            try:
                later = second.get(Scene, july_id)
                assert later is not None
                record_feature_observations(
                    [feature_id], source=source, scene=later, session=second
                )
                second.commit()
            except BaseException as error:  # reported below, in the test's thread
                errors.append(error)

        worker = threading.Thread(target=see_later)
        worker.start()
        worker.join(timeout=1.0)
        assert worker.is_alive()  # waiting for the first worker's row
        first.commit()
        worker.join(timeout=30)
        assert not errors, errors
    with Session(engine) as check:
        assert last_observed(feature_id, session=check) == {"camera": at(2025, 7, 16)}
