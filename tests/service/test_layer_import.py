"""Legal layers are imported as dated versions; a refused import changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import shapely
from shapely.geometry import box
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from models import Layer, LayerFeature, LayerVersion
from models.layer import LayerKind
from scripts.cli import app
from service.errors import ConflictError, InvalidInputError
from service.geodata import GeodataError
from service.layers.importer import import_layer, layer_versions_valid_at
from service.settings import Settings
from service.spatial import area_m2
from tests.conftest import migrate
from tests.service.test_geodata import (
    BOW_TIE,
    FIELD,
    feature,
    projected,
    star,
    write_geojson,
    write_polygons,
)

PBF = LayerKind.permanent_basic_farmland
JAN_2023 = datetime(2023, 1, 1, tzinfo=UTC)
JAN_2024 = datetime(2024, 1, 1, tzinfo=UTC)
SETTINGS = Settings(layer_max_vertices=500)
NEIGHBOUR = box(120.102, 30.200, 120.103, 30.201)


def counts(session: Session) -> tuple[int, int, int]:
    return tuple(  # type: ignore[return-value]
        session.scalar(select(func.count()).select_from(model))
        for model in (Layer, LayerVersion, LayerFeature)
    )


def good_file(tmp_path: Path, name: str = "pbf.geojson") -> Path:
    return write_geojson(
        tmp_path / name, [feature(FIELD, tbbh="T1"), feature(NEIGHBOUR, tbbh="T2")]
    )


def stored_features(session: Session, version_id: int) -> list[LayerFeature]:
    statement = (
        select(LayerFeature)
        .where(LayerFeature.layer_version_id == version_id)
        .order_by(LayerFeature.source_ref, LayerFeature.part)
    )
    return list(session.scalars(statement))


def test_a_layer_file_becomes_a_version_with_its_features(
    db_session: Session, tmp_path: Path
) -> None:
    result = import_layer(
        good_file(tmp_path),
        session=db_session,
        settings=SETTINGS,
        kind=PBF,
        version="2023",
        valid_from=JAN_2023,
    )

    version = db_session.get(LayerVersion, result.layer_version_id)
    assert version is not None
    assert (version.version, version.source, version.feature_count) == ("2023", "pbf.geojson", 2)
    assert version.valid_from == JAN_2023 and version.valid_to is None
    assert len(version.checksum) == 64
    features = stored_features(db_session, version.id)
    assert [(f.source_ref, f.part, f.properties["tbbh"]) for f in features] == [
        ("0", 0, "T1"),
        ("1", 0, "T2"),
    ]
    assert features[0].geom.equals(FIELD)
    assert features[0].area_m2 == pytest.approx(area_m2(FIELD, SETTINGS.area_crs))
    assert 9_000 < features[0].area_m2 < 11_000  # ~96 m × 111 m in Hangzhou
    assert result.features == 2 and result.parts == 2 and result.repaired == 0
    assert "2 features in 2 parts" in result.summary()


def test_a_self_intersecting_polygon_is_stored_repaired(
    db_session: Session, tmp_path: Path
) -> None:
    path = write_geojson(tmp_path / "bowtie.geojson", [feature(BOW_TIE, tbbh="X")])

    result = import_layer(path, session=db_session, settings=SETTINGS, kind=PBF, version="v1")

    (stored,) = stored_features(db_session, result.layer_version_id)
    assert result.repaired == 1
    assert stored.geom.is_valid and stored.geom.area == pytest.approx(FIELD.area / 2)


@pytest.mark.parametrize(("name", "epsg"), [("pbf.gpkg", 4549), ("pbf.shp", 32651)])
def test_geopackages_and_shapefiles_in_metres_land_in_hangzhou(
    db_session: Session, tmp_path: Path, name: str, epsg: int
) -> None:
    path = write_polygons(tmp_path / name, [projected(FIELD, epsg)], crs=f"EPSG:{epsg}")

    result = import_layer(path, session=db_session, settings=SETTINGS, kind=PBF, version="2023")

    (stored,) = stored_features(db_session, result.layer_version_id)
    assert stored.geom.symmetric_difference(FIELD).area / FIELD.area < 1e-6
    assert stored.properties == {"name": "plot 0"}


def test_a_huge_polygon_is_stored_as_parts_that_keep_ref_and_properties(
    db_session: Session, tmp_path: Path
) -> None:
    huge = star((120.1, 30.2), vertices=5_000, radius=0.02)
    path = write_geojson(tmp_path / "huge.geojson", [feature(huge, tbbh="BIG")])

    result = import_layer(path, session=db_session, settings=SETTINGS, kind=PBF, version="2023")

    parts = stored_features(db_session, result.layer_version_id)
    assert result.features == 1 and result.parts == len(parts) > 10
    assert [p.part for p in parts] == list(range(len(parts)))
    assert {(p.source_ref, p.properties["tbbh"]) for p in parts} == {("0", "BIG")}
    union = shapely.union_all([p.geom for p in parts])
    assert union.area == pytest.approx(huge.area, rel=1e-6)
    assert sum(p.area_m2 for p in parts) == pytest.approx(
        area_m2(huge, SETTINGS.area_crs), rel=1e-6
    )


def test_a_new_version_ends_the_previous_one(db_session: Session, tmp_path: Path) -> None:
    first = import_layer(
        good_file(tmp_path, "2023.geojson"),
        session=db_session,
        settings=SETTINGS,
        kind=PBF,
        version="2023",
        valid_from=JAN_2023,
    )
    second = import_layer(
        write_geojson(tmp_path / "2024.geojson", [feature(FIELD, tbbh="T1")]),
        session=db_session,
        settings=SETTINGS,
        kind=PBF,
        version="2024",
        valid_from=JAN_2024,
    )

    old = db_session.get(LayerVersion, first.layer_version_id)
    assert old is not None and old.valid_to == JAN_2024
    in_force = layer_versions_valid_at(db_session, datetime(2023, 6, 1, tzinfo=UTC))
    assert [v.id for v in in_force] == [first.layer_version_id]
    assert [v.id for v in layer_versions_valid_at(db_session, JAN_2024)] == [
        second.layer_version_id
    ]
    assert layer_versions_valid_at(db_session, datetime(2022, 12, 31, tzinfo=UTC)) == []


def test_an_older_edition_imported_late_slots_in_before_the_current_one(
    db_session: Session, tmp_path: Path
) -> None:
    current = import_layer(
        good_file(tmp_path, "2024.geojson"),
        session=db_session,
        settings=SETTINGS,
        kind=PBF,
        version="2024",
        valid_from=JAN_2024,
    )
    older = import_layer(
        write_geojson(tmp_path / "2023.geojson", [feature(FIELD)]),
        session=db_session,
        settings=SETTINGS,
        kind=PBF,
        version="2023",
        valid_from=JAN_2023,
    )

    old = db_session.get(LayerVersion, older.layer_version_id)
    assert old is not None and old.valid_to == JAN_2024
    assert [v.id for v in layer_versions_valid_at(db_session, JAN_2024)] == [
        current.layer_version_id
    ]


def test_the_same_version_again_is_a_no_op_or_a_conflict(
    db_session: Session, tmp_path: Path
) -> None:
    path = good_file(tmp_path)
    first = import_layer(path, session=db_session, settings=SETTINGS, kind=PBF, version="2023")
    before = counts(db_session)

    again = import_layer(path, session=db_session, settings=SETTINGS, kind=PBF, version="2023")

    assert again.unchanged and again.layer_version_id == first.layer_version_id
    assert "already imported" in again.summary()
    assert counts(db_session) == before
    changed = write_geojson(tmp_path / "changed.geojson", [feature(FIELD, tbbh="T9")])
    with pytest.raises(ConflictError, match=r"version 2023 was already imported from pbf\.geojson"):
        import_layer(changed, session=db_session, settings=SETTINGS, kind=PBF, version="2023")
    assert counts(db_session) == before


def test_a_refused_import_leaves_the_database_unchanged(
    db_session: Session, tmp_path: Path
) -> None:
    import_layer(
        good_file(tmp_path),
        session=db_session,
        settings=SETTINGS,
        kind=PBF,
        version="2023",
        valid_from=JAN_2023,
    )
    before = counts(db_session)
    # The bad feature comes after a full batch has been inserted.
    features = [feature(FIELD, n=i) for i in range(5)]
    features.append(feature(shapely.transform(FIELD, lambda xy: xy[:, ::-1])))
    bad = write_geojson(tmp_path / "bad.geojson", features)

    for kind in (PBF, LayerKind.blue_line):
        with pytest.raises(GeodataError, match=r"feature #5 \(fid 5\)"):
            import_layer(
                bad,
                session=db_session,
                settings=SETTINGS,
                kind=kind,
                version="2024",
                valid_from=JAN_2024,
                batch_size=2,
            )

    assert counts(db_session) == before
    (only,) = layer_versions_valid_at(db_session, JAN_2024)
    assert only.valid_to is None  # the 2023 version was not closed by the failed 2024 import


def test_a_naive_valid_from_is_refused(db_session: Session, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="no time zone"):
        import_layer(
            good_file(tmp_path),
            session=db_session,
            settings=SETTINGS,
            kind=PBF,
            version="2023",
            valid_from=datetime(2023, 1, 1),
        )


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    migrate(url)
    monkeypatch.setenv("TIANXUN_DATABASE_URL", url)
    return url


def cli_counts(url: str) -> tuple[int, int, int]:
    from service.db import create_db_engine

    engine = create_db_engine(url)
    try:
        with Session(engine) as session:
            return counts(session)
    finally:
        engine.dispose()


def test_the_cli_imports_and_refuses_with_a_message(cli_env: str, tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["layers", "import", "--kind", "permanent_basic_farmland"]

    ok = runner.invoke(
        app, [*base, str(good_file(tmp_path)), "--version", "2023", "--valid-from", "2023-01-01"]
    )
    after_ok = cli_counts(cli_env)
    empty = write_geojson(tmp_path / "empty.geojson", [])
    refused = runner.invoke(app, [*base, str(empty), "--version", "2024"])

    assert ok.exit_code == 0, ok.output
    assert "imported permanent_basic_farmland version 2023: 2 features in 2 parts" in ok.output
    assert "valid from 2023-01-01T00:00:00+00:00" in ok.output
    assert after_ok == (1, 1, 2)
    assert refused.exit_code == 1
    assert "empty.geojson contains no features" in refused.output
    assert cli_counts(cli_env) == after_ok


def test_the_cli_refuses_a_database_that_is_not_migrated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIANXUN_DATABASE_URL", f"sqlite:///{tmp_path / 'blank.db'}")

    result = CliRunner().invoke(
        app, ["layers", "import", str(good_file(tmp_path)), "--kind", "blue_line", "--version", "1"]
    )

    assert result.exit_code == 1
    assert "run `tianxun db upgrade` first" in result.output
