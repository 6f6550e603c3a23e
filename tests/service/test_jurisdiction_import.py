"""Administrative areas are upserted by code and linked to parents; refused files change nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from shapely.geometry import MultiPolygon, box
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from models import Jurisdiction
from models.jurisdiction import JurisdictionLevel
from scripts.cli import app
from service.db import create_db_engine
from service.geodata import GeodataError
from service.jurisdictions.importer import import_jurisdictions
from service.settings import Settings
from service.spatial import area_m2
from tests.conftest import migrate
from tests.service.test_geodata import BOW_TIE, feature, projected, write_geojson, write_polygons

SETTINGS = Settings()
DISTRICT = box(120.0, 30.1, 120.2, 30.3)
WEST_TOWN = box(120.0, 30.1, 120.1, 30.3)
EAST_TOWN = box(120.1, 30.1, 120.2, 30.3)


def district_file(tmp_path: Path) -> Path:
    return write_geojson(
        tmp_path / "district.geojson", [feature(DISTRICT, code="330106", name="西湖区")]
    )


def towns_file(tmp_path: Path, *, east_parent: str = "330106") -> Path:
    return write_geojson(
        tmp_path / "towns.geojson",
        [
            feature(WEST_TOWN, code="330106001", name="West", parent_code="330106"),
            feature(EAST_TOWN, code="330106002", name="East", parent_code=east_parent),
        ],
    )


def by_code(session: Session) -> dict[str, Jurisdiction]:
    return {j.code: j for j in session.scalars(select(Jurisdiction))}


def count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Jurisdiction)) or 0)


def test_townships_are_linked_to_their_district(db_session: Session, tmp_path: Path) -> None:
    import_jurisdictions(
        district_file(tmp_path),
        session=db_session,
        settings=SETTINGS,
        level=JurisdictionLevel.district,
    )

    result = import_jurisdictions(
        towns_file(tmp_path),
        session=db_session,
        settings=SETTINGS,
        level=JurisdictionLevel.township,
    )

    stored = by_code(db_session)
    west = stored["330106001"]
    assert (west.name, west.level, west.parent_id) == (
        "West",
        JurisdictionLevel.township,
        stored["330106"].id,
    )
    assert stored["330106"].parent_id is None
    assert isinstance(west.geom, MultiPolygon) and west.geom.equals(WEST_TOWN)
    assert west.area_m2 == pytest.approx(area_m2(WEST_TOWN, SETTINGS.area_crs))
    assert 200e6 < west.area_m2 < 220e6  # ~9.6 km × 22 km
    assert (result.created, result.updated, result.with_parent) == (2, 0, 2)


def test_parents_may_come_from_the_same_file(db_session: Session, tmp_path: Path) -> None:
    path = write_geojson(
        tmp_path / "all.geojson",
        [
            feature(WEST_TOWN, code="t1", name="West", parent_code="d1"),
            feature(DISTRICT, code="d1", name="District", parent_code=None),
        ],
    )

    import_jurisdictions(path, session=db_session, settings=SETTINGS, level=JurisdictionLevel.city)

    stored = by_code(db_session)
    assert stored["t1"].parent_id == stored["d1"].id


def test_reimporting_a_code_updates_it(db_session: Session, tmp_path: Path) -> None:
    import_jurisdictions(
        district_file(tmp_path),
        session=db_session,
        settings=SETTINGS,
        level=JurisdictionLevel.district,
    )
    grown = write_geojson(
        tmp_path / "district_2024.geojson",
        [feature(box(120.0, 30.1, 120.3, 30.3), code="330106", name="西湖区 (2024)")],
    )

    result = import_jurisdictions(
        grown, session=db_session, settings=SETTINGS, level=JurisdictionLevel.district
    )

    (only,) = by_code(db_session).values()
    assert (result.created, result.updated) == (0, 1)
    assert only.name == "西湖区 (2024)"
    assert only.geom.bounds == (120.0, 30.1, 120.3, 30.3)
    assert (only.minx, only.maxx) == (120.0, 120.3)  # the bbox index follows the new shape


def test_an_unknown_parent_is_refused_by_name_and_nothing_is_stored(
    db_session: Session, tmp_path: Path
) -> None:
    import_jurisdictions(
        district_file(tmp_path),
        session=db_session,
        settings=SETTINGS,
        level=JurisdictionLevel.district,
    )
    before = count(db_session)

    with pytest.raises(
        GeodataError, match=r"feature #1 \(fid 1\) \(330106002\) names parent '999'"
    ):
        import_jurisdictions(
            towns_file(tmp_path, east_parent="999"),
            session=db_session,
            settings=SETTINGS,
            level=JurisdictionLevel.township,
        )

    assert count(db_session) == before


def test_duplicate_codes_and_missing_fields_are_refused(
    db_session: Session, tmp_path: Path
) -> None:
    twice = write_geojson(
        tmp_path / "twice.geojson",
        [feature(WEST_TOWN, code="t1", name="a"), feature(EAST_TOWN, code="t1", name="b")],
    )
    with pytest.raises(GeodataError, match=r"feature #1 .* repeats code 't1' of feature #0"):
        import_jurisdictions(
            twice, session=db_session, settings=SETTINGS, level=JurisdictionLevel.village
        )
    with pytest.raises(GeodataError, match=r"no field 'xzqdm' for the code.*--code-field"):
        import_jurisdictions(
            twice,
            session=db_session,
            settings=SETTINGS,
            level=JurisdictionLevel.village,
            code_field="xzqdm",
        )
    assert count(db_session) == 0


def test_a_repaired_shapefile_in_metres_is_imported(db_session: Session, tmp_path: Path) -> None:
    path = write_polygons(
        tmp_path / "villages.shp",
        [projected(BOW_TIE, 4549)],
        crs="EPSG:4549",
        properties={"XZQDM": [330106001001], "XZQMC": ["Bow tie village"]},
    )

    result = import_jurisdictions(
        path,
        session=db_session,
        settings=SETTINGS,
        level=JurisdictionLevel.village,
        code_field="XZQDM",
        name_field="XZQMC",
    )

    (only,) = by_code(db_session).values()
    assert result.repaired == 1
    assert only.code == "330106001001"
    assert only.geom.is_valid and len(only.geom.geoms) == 2


def test_the_cli_imports_levels_in_order_and_refuses_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    migrate(url)
    monkeypatch.setenv("TIANXUN_DATABASE_URL", url)
    runner = CliRunner()

    district = runner.invoke(
        app, ["jurisdictions", "import", str(district_file(tmp_path)), "--level", "district"]
    )
    orphan = runner.invoke(
        app,
        [
            "jurisdictions",
            "import",
            str(towns_file(tmp_path, east_parent="999")),
            "--level",
            "township",
        ],
    )

    assert district.exit_code == 0, district.output
    assert (
        "imported 1 district jurisdictions (1 new, 0 updated, 0 with a parent)" in district.output
    )
    assert orphan.exit_code == 1
    assert "names parent '999', which is not imported" in orphan.output
    engine = create_db_engine(url)
    try:
        with Session(engine) as session:
            assert set(by_code(session)) == {"330106"}
    finally:
        engine.dispose()
