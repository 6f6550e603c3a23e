"""Ground truth: violations and benign events with type, onset and exact polygons in the world."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import shapely
from shapely.geometry import box, shape

from simulator import WorldParams, build_world
from simulator.events import BENIGN_TYPES, VIOLATION_TYPES
from tests.simulator.worlds import TINY


def _features(path: Path) -> list[dict]:
    return json.loads(path.read_text())["features"]


def _check_onsets(features: list[dict], world: dict) -> None:
    dates = [date.fromisoformat(e["date"]) for e in world["epochs"]]
    for feature in features:
        props = feature["properties"]
        epoch, onset = props["epoch"], date.fromisoformat(props["onset"])
        assert 1 <= epoch < len(dates)
        assert dates[epoch - 1] < onset <= dates[epoch], props


def test_violations_have_a_type_an_onset_and_lie_within_the_world(
    tiny_world_dir: Path, tiny_world_json: dict
) -> None:
    violations = _features(tiny_world_dir / "truth" / "violations.geojson")
    world_box = box(*tiny_world_json["bounds_lonlat"])

    assert {f["properties"]["type"] for f in violations} == set(VIOLATION_TYPES)
    _check_onsets(violations, tiny_world_json)
    for feature in violations:
        geom = shape(feature["geometry"])
        assert geom.is_valid and world_box.contains(geom)
        assert feature["properties"]["area_m2"] > 20


def test_violations_sit_on_farmland_and_lookalikes_inside_approved_land(
    tiny_world_dir: Path,
) -> None:
    violations = _features(tiny_world_dir / "truth" / "violations.geojson")
    approved = shapely.union_all(
        [
            shape(f["geometry"])
            for f in _features(tiny_world_dir / "layers" / "approved_construction.geojson")
        ]
    )
    farmland = shapely.union_all(
        [
            shape(f["geometry"])
            for f in _features(tiny_world_dir / "layers" / "cultivated_land.geojson")
        ]
    )
    legal = [f for f in violations if f["properties"]["in_approved"]]
    illegal = [f for f in violations if not f["properties"]["in_approved"]]

    assert len(legal) == TINY.approved_builds and illegal
    for feature in legal:
        assert approved.buffer(1e-7).contains(shape(feature["geometry"]))
    for feature in illegal:
        geom = shape(feature["geometry"])
        assert not geom.intersects(approved)
        assert farmland.buffer(1e-7).contains(geom)


def test_benign_events_are_typed_dated_and_inside_the_world(
    tiny_world_dir: Path, tiny_world_json: dict
) -> None:
    benign = _features(tiny_world_dir / "truth" / "benign.geojson")
    world_box = box(*tiny_world_json["bounds_lonlat"])

    assert benign
    assert {f["properties"]["type"] for f in benign} <= set(BENIGN_TYPES)
    _check_onsets(benign, tiny_world_json)
    assert all(world_box.contains(shape(f["geometry"])) for f in benign)


def test_a_year_of_epochs_shows_every_kind_of_benign_change() -> None:
    world = build_world(WorldParams(seed=5, area_km2=1.0, epochs=12, cameras=0))

    assert {b.type for b in world.benign} == set(BENIGN_TYPES)


def test_monthly_epochs_over_two_years_repeat_the_seasons() -> None:
    world = build_world(WorldParams(seed=5, area_km2=1.0, epochs=24, years=2, year=2023, cameras=0))

    gaps = {(b - a).days for a, b in zip(world.dates, world.dates[1:], strict=False)}
    assert world.dates[0] == date(2023, 1, 15) and world.dates[-1].year == 2024
    assert gaps <= {30, 31}
    seasonal = [i for i, p in enumerate(world.landscape.parcels) if p.crop != "vegetable"]
    first_year, second_year = world.states[seasonal, :12], world.states[seasonal, 12:]
    assert (first_year == second_year).mean() > 0.9
    assert {b.type for b in world.benign if b.onset_epoch >= 12} >= {"harvest", "paddy_flooding"}


def test_growing_violations_widen_and_never_shrink() -> None:
    world = build_world(WorldParams(seed=5, area_km2=1.0, epochs=12, cameras=0))
    grown = [v for v in world.violations if v.type == "excavation" and v.onset_epoch < 10]

    assert grown
    for v in grown:
        areas = [e.area for e in v.extents[v.onset_epoch :]]
        assert areas == sorted(areas) and areas[-1] > areas[0]
        assert all(v.geom.buffer(1e-6).contains(e) for e in v.extents if e is not None)


def test_layers_and_jurisdictions_are_lonlat_geojson_with_codes(
    tiny_world_dir: Path, tiny_world_json: dict
) -> None:
    world_box = box(*tiny_world_json["bounds_lonlat"]).buffer(1e-6)
    for kind in (
        "cultivated_land",
        "permanent_basic_farmland",
        "urban_development_boundary",
        "approved_construction",
        "facility_agriculture",
        "blue_line",
    ):
        collection = json.loads((tiny_world_dir / "layers" / f"{kind}.geojson").read_text())
        assert collection["type"] == "FeatureCollection"
        for feature in collection["features"]:
            lon, lat = shape(feature["geometry"]).representative_point().coords[0]
            assert 119 < lon < 121 and 29 < lat < 31
    townships = _features(tiny_world_dir / "jurisdictions" / "township.geojson")
    villages = _features(tiny_world_dir / "jurisdictions" / "village.geojson")
    codes = {f["properties"]["code"] for f in townships}
    assert len(townships) == 2 and villages
    assert all(f["properties"]["parent_code"] in codes for f in villages)
    assert all(world_box.contains(shape(f["geometry"])) for f in townships + villages)
    covered = shapely.union_all([shape(f["geometry"]) for f in villages]).area
    township_area = shapely.union_all([shape(f["geometry"]) for f in townships]).area
    assert abs(covered - township_area) / township_area < 1e-6  # villages tile the townships
