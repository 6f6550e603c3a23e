"""The tile task on small GeoTIFFs: a painted change in farmland becomes a case with chips."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
from pyproj import Transformer
from rasterio.transform import from_origin
from shapely.geometry import box
from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Detection, Evidence, LayerFeature, Scene
from models.layer import LayerKind
from models.scene import SceneKind, SceneStatus
from service.analysis.coverage import last_observed
from service.analysis.tiles import analyse_tile, read_tile_inputs, write_tile_outcome
from service.ingest.store import object_key
from service.queue import ClaimedJob
from service.settings import Settings
from tests.service.screening.places import add_layer_version

ORIGIN = (200_000.0, 3_370_000.0)  # EPSG:32651, near Hangzhou
PIXEL, SIDE = 2.0, 96


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(database_url="sqlite://", data_dir=tmp_path, _env_file=None)  # type: ignore[call-arg]


def lonlat_box(x0: float, y0: float, x1: float, y1: float) -> object:
    to_lonlat = Transformer.from_crs(32651, 4326, always_xy=True)
    (lon0, lon1), (lat0, lat1) = to_lonlat.transform([x0, x1], [y0, y1])
    return box(min(lon0, lon1), min(lat0, lat1), max(lon0, lon1), max(lat0, lat1))


def store_tile(
    session: Session,
    settings: Settings,
    month: int,
    *,
    patch: bool,
    cloud: tuple[slice, slice] | None = None,
) -> Scene:
    rng = np.random.default_rng(month)
    data = np.array([400, 700, 500, 3500])[:, None, None] + rng.normal(0, 30, (4, SIDE, SIDE))
    if patch:  # bare concrete: bright in every band, no vegetation
        data[:, 40:56, 40:56] = np.array([2600, 2700, 2800, 2900])[:, None, None]
    bands = ["blue", "green", "red", "nir"]
    if cloud is not None:  # bright and flat, flagged by the producer's alpha band
        data[(slice(None), *cloud)] = 7000
        alpha = np.full((1, SIDE, SIDE), 255)
        alpha[(slice(None), *cloud)] = 0
        data, bands = np.concatenate([data, alpha]), [*bands, "alpha"]
    tmp = settings.data_dir / f"t{month}.tif"
    transform = from_origin(ORIGIN[0], ORIGIN[1], PIXEL, PIXEL)
    profile = {"driver": "GTiff", "width": SIDE, "height": SIDE, "count": len(bands)}
    with rasterio.open(
        tmp, "w", **profile, dtype="uint16", crs="EPSG:32651", transform=transform
    ) as dst:
        dst.write(data.clip(0, 10_000).astype(np.uint16))
        dst.descriptions = tuple(bands)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    target = settings.data_dir / object_key(digest)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(target)
    extent = SIDE * PIXEL
    scene = Scene(
        kind=SceneKind.rs_tile,
        sha256=digest,
        storage_uri=object_key(digest),
        size_bytes=target.stat().st_size,
        media_type="image/tiff",
        acquired_at=datetime(2025, month, 16, 2, 30, tzinfo=UTC),
        status=SceneStatus.received,
        crs="EPSG:32651",
        width=SIDE,
        height=SIDE,
        bands=["blue", "green", "red", "nir"],
        geom=lonlat_box(ORIGIN[0], ORIGIN[1] - extent, ORIGIN[0] + extent, ORIGIN[1]),
    )
    session.add(scene)
    session.flush()
    return scene


def analyse(session: Session, settings: Settings, scene: Scene) -> None:
    job = ClaimedJob(1, scene.id, "analyse_tile", 1, 5, "w", scene.acquired_at)
    outcome = analyse_tile(read_tile_inputs(session, job, settings), settings)
    write_tile_outcome(session, job, settings, outcome)


def test_a_new_building_in_farmland_is_found_against_the_earlier_tile(
    db_session: Session, settings: Settings
) -> None:
    farmland = lonlat_box(ORIGIN[0], ORIGIN[1] - 192, ORIGIN[0] + 192, ORIGIN[1])
    add_layer_version(db_session, LayerKind.permanent_basic_farmland, [farmland])
    first = store_tile(db_session, settings, 3, patch=False)
    analyse(db_session, settings, first)
    assert first.status == SceneStatus.analysed  # the first look has nothing to compare with
    second = store_tile(db_session, settings, 6, patch=True)
    analyse(db_session, settings, second)
    assert second.status == SceneStatus.analysed
    found = db_session.scalars(select(Detection).where(Detection.scene_id == second.id)).all()
    assert len(found) == 1 and found[0].reference_scene_id == first.id
    assert found[0].case_id is not None and 700 < found[0].area_m2 < 1400  # painted 1024 m²
    kinds = db_session.scalars(select(Evidence.kind).where(Evidence.case_id == found[0].case_id))
    assert sorted(kinds) == ["chip_after", "chip_before"]
    analyse(db_session, settings, second)  # a re-run finds the scene done
    assert len(db_session.scalars(select(Detection)).all()) == 1
    parcel = db_session.scalars(select(LayerFeature)).one()
    assert last_observed(parcel.id, session=db_session) == {"remote_sensing": second.acquired_at}


def test_a_building_put_up_under_a_cloud_is_found_on_the_next_clear_tile(
    db_session: Session, settings: Settings
) -> None:
    farmland = lonlat_box(ORIGIN[0], ORIGIN[1] - 192, ORIGIN[0] + 192, ORIGIN[1])
    add_layer_version(db_session, LayerKind.permanent_basic_farmland, [farmland])
    clear = store_tile(db_session, settings, 3, patch=False)
    analyse(db_session, settings, clear)
    clouded = store_tile(db_session, settings, 4, patch=True, cloud=(slice(20, 76), slice(20, 76)))
    analyse(db_session, settings, clouded)
    assert clouded.status == SceneStatus.analysed
    assert not db_session.scalars(select(Detection)).all()  # hidden: nothing to see yet
    latest = store_tile(db_session, settings, 6, patch=True)
    job = ClaimedJob(1, latest.id, "analyse_tile", 1, 5, "w", latest.acquired_at)
    inputs = read_tile_inputs(db_session, job, settings)
    assert inputs.older_paths, "the tile before the reference should fill its cloud"
    # Against the clouded tile alone the building stands on both dates where they compare.
    pairwise = analyse_tile(dataclasses.replace(inputs, older_paths=()), settings)
    assert not [change for change in pairwise.changes if not change.benign]
    write_tile_outcome(db_session, job, settings, analyse_tile(inputs, settings))
    found = db_session.scalars(select(Detection).where(Detection.scene_id == latest.id)).all()
    assert len(found) == 1 and found[0].reference_scene_id == clouded.id
    assert found[0].case_id is not None and 700 < found[0].area_m2 < 1400  # painted 1024 m²
