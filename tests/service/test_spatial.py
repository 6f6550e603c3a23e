"""The spatial query layer answers bbox and intersects queries exactly, on SQLite and PostGIS."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from pyproj import Transformer
from shapely.geometry import MultiPolygon, Polygon, box
from shapely.geometry.base import BaseGeometry
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from models import Case, Layer, LayerFeature, LayerVersion
from models.layer import LayerKind
from service.spatial import BBox, area_m2, bbox_clause, iter_intersecting, m2_to_mu

SEEN = datetime(2026, 5, 1, 8, 30, tzinfo=UTC)

# A query box of about 1 km × 1.1 km in Hangzhou, and shapes placed around it.
QUERY = BBox(120.10, 30.10, 120.11, 30.11)
INSIDE = box(120.102, 30.102, 120.103, 30.103)
OVERLAPPING_EDGE = box(120.109, 30.105, 120.112, 30.106)
FAR_AWAY = box(120.30, 30.30, 120.301, 30.301)
# Wraps around the south-west corner of QUERY: its bbox covers QUERY's corner, its area does not.
L_SHAPE = Polygon(
    [
        (120.08, 30.08),
        (120.105, 30.08),
        (120.105, 30.09),
        (120.09, 30.09),
        (120.09, 30.105),
        (120.08, 30.105),
    ]
)
# A thin diagonal strip passing ~70 m outside QUERY's south-east corner; its bbox covers it.
DIAGONAL = Polygon(
    [(120.106, 30.095), (120.1165, 30.1055), (120.1170, 30.1050), (120.1065, 30.0945)]
)


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def _case(code: str, geom: BaseGeometry) -> Case:
    return Case(code=code, first_seen_at=SEEN, last_seen_at=SEEN, geom=geom)


def _add_cases(session: Session, shapes: dict[str, BaseGeometry]) -> dict[str, Case]:
    cases = {code: _case(code, geom) for code, geom in shapes.items()}
    session.add_all(cases.values())
    session.flush()
    return cases


def _bbox_codes(session: Session, bbox: BBox) -> set[str]:
    statement = select(Case.code).where(bbox_clause(Case, bbox, _dialect(session)))
    return set(session.scalars(statement))


def _intersecting_codes(
    session: Session, geom: BaseGeometry, *, limit: int | None = None
) -> list[str]:
    statement = select(Case).order_by(Case.id)
    return [c.code for c in iter_intersecting(session, statement, Case, geom, limit=limit)]


def test_shapes_are_placed_as_the_tests_assume() -> None:
    # Guards the fixtures themselves: the decoys must be bbox hits and exact misses.
    query = QUERY.geometry
    for decoy in (L_SHAPE, DIAGONAL):
        assert BBox.of(decoy).geometry.intersects(query)
        assert not decoy.intersects(query)
    assert INSIDE.within(query)
    assert OVERLAPPING_EDGE.intersects(query) and not OVERLAPPING_EDGE.within(query)


def test_bbox_clause_finds_exactly_the_rows_whose_bboxes_overlap(db_session: Session) -> None:
    _add_cases(
        db_session,
        {
            "inside": INSIDE,
            "edge": OVERLAPPING_EDGE,
            "l-shape": L_SHAPE,
            "diagonal": DIAGONAL,
            "far": FAR_AWAY,
        },
    )

    assert _bbox_codes(db_session, QUERY) == {"inside", "edge", "l-shape", "diagonal"}
    assert _bbox_codes(db_session, BBox.of(FAR_AWAY)) == {"far"}
    assert _bbox_codes(db_session, BBox(121.0, 31.0, 121.1, 31.1)) == set()


def test_iter_intersecting_returns_only_true_intersections(db_session: Session) -> None:
    _add_cases(
        db_session,
        {
            "l-shape": L_SHAPE,
            "inside": INSIDE,
            "diagonal": DIAGONAL,
            "edge": OVERLAPPING_EDGE,
            "far": FAR_AWAY,
        },
    )

    assert _intersecting_codes(db_session, QUERY.geometry) == ["inside", "edge"]


def test_iter_intersecting_is_exact_below_the_index_precision(db_session: Session) -> None:
    # Both indexes keep float32 boxes rounded outward (~1 m here); 1 cm away is a miss.
    gap = 1e-7
    _add_cases(db_session, {"near-miss": box(120.11 + gap, 30.104, 120.111, 30.105)})

    assert _intersecting_codes(db_session, QUERY.geometry) == []


def test_limit_counts_exact_matches_not_index_candidates(db_session: Session) -> None:
    # The decoys come first in id order, so a limit applied to candidates would return them
    # (or, after exact filtering, nothing).
    decoys = {f"decoy-{i}": L_SHAPE for i in range(5)}
    matches = {
        f"match-{i}": box(120.101 + i * 0.001, 30.101, 120.1015 + i * 0.001, 30.1015)
        for i in range(4)
    }
    _add_cases(db_session, decoys | matches)

    assert _intersecting_codes(db_session, QUERY.geometry, limit=2) == ["match-0", "match-1"]
    assert _intersecting_codes(db_session, QUERY.geometry, limit=10) == list(matches)


def test_iter_intersecting_keeps_the_statements_other_filters(db_session: Session) -> None:
    _add_cases(db_session, {"inside": INSIDE, "edge": OVERLAPPING_EDGE})
    statement = select(Case).where(Case.code != "inside")

    found = iter_intersecting(db_session, statement, Case, QUERY.geometry)

    assert [c.code for c in found] == ["edge"]


def test_queries_follow_a_case_that_moves_or_is_deleted(db_session: Session) -> None:
    cases = _add_cases(db_session, {"mover": INSIDE, "stayer": OVERLAPPING_EDGE})
    assert _bbox_codes(db_session, QUERY) == {"mover", "stayer"}

    cases["mover"].geom = FAR_AWAY
    db_session.flush()
    assert _bbox_codes(db_session, QUERY) == {"stayer"}
    assert _bbox_codes(db_session, BBox.of(FAR_AWAY)) == {"mover"}
    assert _intersecting_codes(db_session, FAR_AWAY) == ["mover"]

    cases["mover"].geom = INSIDE
    db_session.flush()
    assert _intersecting_codes(db_session, QUERY.geometry) == ["mover", "stayer"]

    db_session.delete(cases["stayer"])
    db_session.flush()
    assert _bbox_codes(db_session, QUERY) == {"mover"}
    assert _intersecting_codes(db_session, QUERY.geometry) == ["mover"]


def test_sqlite_rtree_holds_one_current_entry_per_row(db_session: Session) -> None:
    if _dialect(db_session) != "sqlite":
        pytest.skip("the R*Tree exists on SQLite only")
    cases = _add_cases(db_session, {"mover": INSIDE, "gone": OVERLAPPING_EDGE})
    mover_id, gone_id = cases["mover"].id, cases["gone"].id

    cases["mover"].geom = FAR_AWAY
    db_session.delete(cases["gone"])
    db_session.flush()

    entries = db_session.execute(
        text("SELECT id, minx, miny, maxx, maxy FROM case_rtree WHERE id IN (:a, :b)"),
        {"a": mover_id, "b": gone_id},
    ).all()
    assert len(entries) == 1
    entry_id, *bounds = entries[0]
    assert entry_id == mover_id
    # float32 storage, rounded outward: within metres of the new bounds, far from the old ones.
    assert bounds == pytest.approx(FAR_AWAY.bounds, abs=1e-4)


def test_orm_sets_bbox_columns_on_insert_and_update(db_session: Session) -> None:
    case = _add_cases(db_session, {"c": L_SHAPE})["c"]
    assert (case.minx, case.miny, case.maxx, case.maxy) == L_SHAPE.bounds

    case.geom = DIAGONAL
    db_session.flush()
    db_session.expire(case)
    assert (case.minx, case.miny, case.maxx, case.maxy) == DIAGONAL.bounds


def test_geometry_round_trips_as_multipolygon(db_session: Session) -> None:
    case = _add_cases(db_session, {"c": L_SHAPE})["c"]
    db_session.expire(case)

    assert isinstance(case.geom, MultiPolygon)
    assert case.geom.equals(L_SHAPE)


def test_layer_features_are_indexed_like_cases(db_session: Session) -> None:
    layer = Layer(kind=LayerKind.permanent_basic_farmland, name="永久基本农田")
    db_session.add(layer)
    db_session.flush()
    version = LayerVersion(
        layer_id=layer.id,
        version="2026-05",
        valid_from=SEEN,
        source="test",
        checksum="0" * 64,
        feature_count=2,
    )
    db_session.add(version)
    db_session.flush()
    for ref, geom in (("field", INSIDE), ("l-shape", L_SHAPE)):
        db_session.add(
            LayerFeature(layer_version_id=version.id, source_ref=ref, geom=geom, area_m2=0.0)
        )
    db_session.flush()
    dialect = _dialect(db_session)

    by_bbox = select(LayerFeature.source_ref).where(bbox_clause(LayerFeature, QUERY, dialect))
    exact = iter_intersecting(db_session, select(LayerFeature), LayerFeature, QUERY.geometry)

    assert set(db_session.scalars(by_bbox)) == {"field", "l-shape"}
    assert [f.source_ref for f in exact] == ["field"]


def _square_in_lonlat(side_m: float) -> Polygon:
    """A square of `side_m` metres built in CGCS2000 / 3-degree Gauss-Kruger CM 120E."""
    x0, y0 = 519_000.0, 3_347_000.0  # near Hangzhou
    to_lonlat = Transformer.from_crs("EPSG:4549", "EPSG:4326", always_xy=True)
    corners = [(x0, y0), (x0 + side_m, y0), (x0 + side_m, y0 + side_m), (x0, y0 + side_m)]
    return Polygon([to_lonlat.transform(x, y) for x, y in corners])


def test_area_of_a_known_square_in_m2_and_mu() -> None:
    square = _square_in_lonlat(100.0)

    m2 = area_m2(square, "EPSG:4549")

    assert m2 == pytest.approx(10_000.0, abs=0.5)
    assert m2_to_mu(m2) == pytest.approx(15.0, abs=1e-3)


def test_area_survives_storage(db_session: Session) -> None:
    case = _add_cases(db_session, {"c": _square_in_lonlat(100.0)})["c"]
    db_session.expire(case)

    assert area_m2(case.geom, "EPSG:4549") == pytest.approx(10_000.0, abs=0.5)


@pytest.mark.parametrize(
    ("bounds", "problem"),
    [
        ((120.2, 30.1, 120.1, 30.2), "west east swapped"),
        ((120.1, 30.2, 120.2, 30.1), "south north swapped"),
        ((30.1, 120.1, 30.2, 120.2), "lat/lon given as lon/lat"),
        ((-181.0, 30.0, 120.0, 31.0), "longitude below -180"),
        ((120.0, 30.0, 181.0, 31.0), "longitude above 180"),
        ((120.0, -91.0, 121.0, 30.0), "latitude below -90"),
        ((120.0, 30.0, 121.0, 90.5), "latitude above 90"),
        ((math.nan, 30.0, 121.0, 31.0), "not a number"),
    ],
)
def test_bbox_rejects_swapped_or_out_of_range_coordinates(
    bounds: tuple[float, float, float, float], problem: str
) -> None:
    with pytest.raises(ValueError, match=r"is not minx,miny,maxx,maxy in lon/lat degrees"):
        BBox(*bounds)


def test_bbox_accepts_a_point_sized_box_and_the_whole_world() -> None:
    assert BBox(120.1, 30.1, 120.1, 30.1).as_tuple() == (120.1, 30.1, 120.1, 30.1)
    assert BBox(-180, -90, 180, 90).geometry.area == pytest.approx(360 * 180)
