"""Listing, filtering, paging, GeoJSON / OGC output, exports and statistics of cases."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from shapely.geometry import box, shape

from models import Case
from models.case import CaseStatus, ConfidenceLevel
from service.db import transaction
from tests.service.api.conftest import AREAS, World
from tests.service.cases.moves import transition_case

S = CaseStatus
NEAR = box(120.08, 30.15, 120.081, 30.151)  # still in township A1, away from the others
MARCH = datetime(2023, 3, 1, 8, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def cases(world: World) -> dict[str, int]:
    """Named cases in township A1 (the monitor of district A sees them all)."""
    named = {
        "base": world.case_ids[0],  # new, building, remote sensing, priority 50, 2024-06-01
        "big": world.add_case(
            priority=80, confidence_level=ConfidenceLevel.high,
            last_seen_at=datetime(2024, 6, 20, tzinfo=UTC),
        ),
        "pond": world.add_case(
            status=S.verifying, change_types=["pond"], sources=["camera"], priority=20,
            geom=NEAR, first_seen_at=datetime(2024, 7, 10, tzinfo=UTC),
            last_seen_at=datetime(2024, 7, 15, tzinfo=UTC),
        ),
        "late": world.add_case(
            status=S.dismissed, escalated=True, first_seen_at=datetime(2024, 8, 1, tzinfo=UTC),
            last_seen_at=datetime(2024, 8, 1, tzinfo=UTC),
        ),
    }  # fmt: skip
    named["kept"] = world.add_case(first_seen_at=MARCH, last_seen_at=MARCH)
    named["dropped"] = world.add_case(first_seen_at=MARCH, last_seen_at=MARCH)
    _walk(world, named["kept"], [(S.dispatched, 2), (S.verifying, 5), (S.confirmed, 29)])
    _walk(world, named["dropped"], [(S.dispatched, 4), (S.verifying, 6), (S.dismissed, 7)])
    return named


def _walk(world: World, case_id: int, steps: list[tuple[CaseStatus, int]]) -> None:
    """Move a case through `steps` (status, hours after opening) with the workflow's table."""
    with transaction(world.factory) as session:
        case = session.get(Case, case_id)
        assert case is not None
        for status, hours in steps:
            transition_case(
                case, status, session=session, settings=world.settings, actor="test",
                role="inspector", reason="pre_existing" if status == S.dismissed else None,
                at=MARCH + timedelta(hours=hours),
            )  # fmt: skip


def listed(world: World, cases: dict[str, int], **params: object) -> set[str]:
    response = world.http.get("/v1/cases", params=params, headers=world.auth("monitor"))
    assert response.status_code == 200, response.text
    names = {v: k for k, v in cases.items()}
    return {names[item["id"]] for item in response.json()["items"]}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"status": "verifying"}, {"pond"}),
        ({"status": ["new", "verifying"]}, {"base", "big", "pond"}),
        ({"type": "pond"}, {"pond"}),
        ({"source": "camera"}, {"pond"}),
        ({"priority_min": 60}, {"big"}),
        ({"priority_max": 30}, {"pond"}),
        ({"confidence_level": "high"}, {"big"}),
        ({"escalated": "true"}, {"late"}),
        ({"datetime": "2024-07-01/2024-07-31"}, {"pond"}),
        ({"datetime": "2024-07-20T00:00:00Z/.."}, {"late"}),
        ({"datetime": "../2023-03-31"}, {"kept", "dropped"}),
        ({"datetime": "2024-06-10T00:00:00+08:00"}, {"big"}),  # an instant inside its span
        ({"bbox": "120.079,30.149,120.082,30.152"}, {"pond"}),
        ({"bbox": "120.079,30.149,120.082,30.152", "type": "building"}, set()),
    ],
)
def test_filters_narrow_the_list(
    world: World, cases: dict[str, int], params: dict[str, object], expected: set[str]
) -> None:
    assert listed(world, cases, **params) == expected


def test_the_jurisdiction_filter_includes_sub_areas(world: World, cases: dict[str, int]) -> None:
    assert listed(world, cases, jurisdiction=world.codes["A"]) == set(cases)


def test_pages_follow_the_next_link_until_every_case_was_seen_once(
    world: World, cases: dict[str, int]
) -> None:
    url, seen, pages = "/v1/cases?limit=2", [], 0
    while url:
        page = world.http.get(url, headers=world.auth("monitor")).json()
        seen += [(item["last_seen_at"], item["id"]) for item in page["items"]]
        url = next((link["href"] for link in page["links"] if link["rel"] == "next"), "")
        pages += 1
    assert sorted(i for _, i in seen) == sorted(cases.values())
    assert seen == sorted(seen, reverse=True)  # most recently seen first
    assert pages == 3


def test_ogc_items_are_an_rfc7946_feature_collection_with_paging_links(
    world: World, cases: dict[str, int]
) -> None:
    response = world.http.get("/collections/cases/items?limit=4", headers=world.auth("monitor"))
    assert response.headers["content-type"] == "application/geo+json"
    body = response.json()
    assert body["type"] == "FeatureCollection" and body["numberReturned"] == 4
    assert {link["rel"] for link in body["links"]} == {"self", "next"}
    township = AREAS["A1"][2]
    for feature in body["features"]:
        geom = shape(feature["geometry"])
        assert township.contains(geom)  # lon/lat order: x is longitude
        assert feature["properties"]["jurisdiction"] == world.codes["A1"]
    rest = world.http.get(body["links"][1]["href"], headers=world.auth("monitor")).json()
    assert rest["numberReturned"] == len(cases) - 4
    assert [link["rel"] for link in rest["links"]] == ["self"]
    one = world.http.get(
        f"/collections/cases/items/{cases['pond']}", headers=world.auth("monitor")
    ).json()
    assert one["type"] == "Feature" and one["properties"]["change_types"] == ["pond"]


def test_the_collection_describes_its_extent_from_visible_cases(
    world: World, cases: dict[str, int]
) -> None:
    body = world.http.get("/collections/cases", headers=world.auth("monitor")).json()
    minx, miny, maxx, maxy = body["extent"]["spatial"]["bbox"][0]
    assert (minx, miny) == (120.05, 30.05) and (maxx, maxy) == (120.081, 30.151)
    assert body["extent"]["temporal"]["interval"][0][0].startswith("2023-03-01")


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"cursor": "not-a-cursor"}, "cursor is not one this service issued"),
        ({"bbox": "120,30,121"}, "bbox"),
        ({"bbox": "121,30,120,31"}, "west <= east"),
        ({"datetime": "last tuesday"}, "not RFC 3339"),
        ({"datetime": "2024-02-01/2024-01-01"}, "ends before it starts"),
        ({"limit": 0}, "limit"),
        ({"limit": 100000}, "limit"),
        ({"status": "lost"}, "status"),
    ],
)
def test_bad_parameters_are_422_saying_what_is_wrong(
    world: World, params: dict[str, object], fragment: str
) -> None:
    response = world.http.get("/v1/cases", params=params, headers=world.auth("monitor"))
    assert response.status_code == 422, response.text
    assert fragment in response.json()["detail"]


def test_the_csv_export_has_one_row_per_case_with_a_point_inside_it(
    world: World, cases: dict[str, int]
) -> None:
    response = world.http.get("/v1/cases/export.csv?type=pond", headers=world.auth("monitor"))
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [int(r["id"]) for r in rows] == [cases["pond"]]
    assert rows[0]["status"] == "verifying" and rows[0]["sources"] == "camera"
    assert NEAR.contains(
        shape({"type": "Point", "coordinates": [float(rows[0]["lon"]), float(rows[0]["lat"])]})
    )


def test_statistics_give_counts_time_in_state_and_shares(
    world: World, cases: dict[str, int]
) -> None:
    response = world.http.get(
        "/v1/cases/statistics", params={"datetime": "2023-03-01/2023-03-31"},
        headers=world.auth("analyst"),
    )  # fmt: skip
    stats = response.json()
    assert stats["total"] == 2 and stats["by_month"] == {"2023-03": 2}
    assert stats["by_status"] == {"confirmed": 1, "dismissed": 1}
    assert stats["by_jurisdiction"] == {world.codes["A1"]: 2}
    # Hours in "new": 2 and 4; in "dispatched": 3 and 2; in "verifying": 24 and 1.
    spent = stats["time_in_state"]
    assert spent["new"] == {"count": 2, "median_hours": 3.0, "p90_hours": 3.8}
    assert spent["dispatched"]["median_hours"] == 2.5
    assert spent["verifying"] == {"count": 2, "median_hours": 12.5, "p90_hours": 21.7}
    assert "confirmed" not in spent  # still there: no completed stay
    assert stats["shares"] == {
        "confirmed": 0.5,
        "dismissed": 0.5,
        "rectified": 0.0,
        "reopened": 0.0,
    }
