"""Every case endpoint × every role × a case inside and outside the caller's jurisdictions.

A case outside the caller's reach must not show by id (404, exactly like a missing case),
nor in lists, bbox queries, OGC items, exports or statistics.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from httpx import Response

from tests.service.api.conftest import World
from tests.service.cases.photo_files import field_photo

ROLES = ["admin", "monitor", "inspector_a", "inspector_b", "analyst", "ingest", None]
BOTH = "120.0,30.0,120.4,30.4"  # a bbox holding both cases
# What each role may see of the two cases: "in" lies in township A1, "out" in district B.
REACH: dict[str | None, set[str] | int] = {
    "admin": {"in", "out"},
    "monitor": {"in"},
    "inspector_a": {"in"},
    "inspector_b": {"out"},
    "analyst": {"in"},
    "ingest": 403,
    None: 401,
}
WRITERS = {"admin", "monitor", "inspector_a", "inspector_b"}


def call(world: World, who: str | None, method: str, url: str, **kwargs: Any) -> Response:
    headers = {**(world.auth(who) if who else {}), **kwargs.pop("headers", {})}
    return world.http.request(method, url, headers=headers, **kwargs)


def case_id(world: World, place: str) -> int:
    return world.case_ids[0 if place == "in" else 1]


def expected_by_id(who: str | None, place: str, allowed: int, *, writes: bool = False) -> int:
    reach = REACH[who]
    if isinstance(reach, int):
        return reach
    if writes and who not in WRITERS:
        return 403
    return allowed if place in reach else 404


@pytest.mark.parametrize("who", ROLES)
@pytest.mark.parametrize("place", ["in", "out"])
@pytest.mark.parametrize(
    ("method", "path", "body", "allowed", "writes"),
    [
        ("GET", "/v1/cases/{id}", None, 200, False),
        ("GET", "/collections/cases/items/{id}", None, 200, False),
        # A stale If-Match: a caller who may touch the case learns only that it is stale (412).
        ("POST", "/v1/cases/{id}/transitions", {"to": "dismissed", "reason_code": "duplicate"},
         412, True),
        ("POST", "/v1/cases/{id}/comments", {"text": "seen from the road"}, 201, True),
    ],
)  # fmt: skip
def test_one_case_by_id(
    world: World,
    who: str | None,
    place: str,
    method: str,
    path: str,
    body: dict[str, str] | None,
    allowed: int,
    writes: bool,
) -> None:
    url = path.format(id=case_id(world, place))
    response = call(world, who, method, url, json=body, headers={"If-Match": '"999"'})
    assert response.status_code == expected_by_id(who, place, allowed, writes=writes), response.text
    if response.status_code == 404:
        assert "not found among the cases you can see" in response.json()["detail"]


@pytest.fixture(scope="module")
def photo_urls(world: World) -> dict[str, str]:
    """One field photo on each of the two cases, attached by the admin: where each is served."""
    urls = {}
    for seed, place in enumerate(("in", "out")):
        response = call(
            world, "admin", "POST", f"/v1/cases/{case_id(world, place)}/evidence",
            content=field_photo(seed=seed), headers={"Content-Type": "image/jpeg"},
        )  # fmt: skip
        assert response.status_code == 201, response.text
        urls[place] = response.headers["location"]
    return urls


@pytest.mark.parametrize("who", ROLES)
@pytest.mark.parametrize("place", ["in", "out"])
def test_evidence_upload_and_download(
    world: World, photo_urls: dict[str, str], who: str | None, place: str
) -> None:
    photo = field_photo(seed=100 + 2 * ROLES.index(who) + (place == "out"))
    uploaded = call(
        world, who, "POST", f"/v1/cases/{case_id(world, place)}/evidence",
        content=photo, headers={"Content-Type": "image/jpeg"},
    )  # fmt: skip
    assert uploaded.status_code == expected_by_id(who, place, 201, writes=True), uploaded.text
    served = call(world, who, "GET", photo_urls[place])
    assert served.status_code == expected_by_id(who, place, 200), served.text
    for response in (uploaded, served):
        if response.status_code == 404:
            assert "not found among the cases you can see" in response.json()["detail"]


def _seen_ids(response: Response, kind: str) -> set[int]:
    if kind == "page":
        return {item["id"] for item in response.json()["items"]}
    if kind == "features":
        return {feature["id"] for feature in response.json()["features"]}
    rows = csv.DictReader(io.StringIO(response.text))
    return {int(row["id"]) for row in rows}


@pytest.mark.parametrize("who", ROLES)
@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("/v1/cases", "page"),
        (f"/v1/cases?bbox={BOTH}", "page"),
        ("/v1/cases?f=geojson", "features"),
        ("/collections/cases/items", "features"),
        (f"/collections/cases/items?bbox={BOTH}&datetime=2024-01-01/..", "features"),
        ("/v1/cases/export.csv", "csv"),
        (f"/v1/cases/export.geojson?bbox={BOTH}", "features"),
    ],
)
def test_lists_bbox_and_exports_show_only_cases_in_reach(
    world: World, who: str | None, url: str, kind: str
) -> None:
    response = call(world, who, "GET", url)
    reach = REACH[who]
    if isinstance(reach, int):
        assert response.status_code == reach
        return
    assert response.status_code == 200, response.text
    ours = {case_id(world, p): p for p in ("in", "out")}
    seen = {ours[i] for i in _seen_ids(response, kind) if i in ours}
    assert seen == reach
    if who != "admin":  # scoped callers see nothing beyond their own area at all
        assert _seen_ids(response, kind) <= {case_id(world, p) for p in reach}


@pytest.mark.parametrize("who", ROLES)
def test_statistics_count_only_cases_in_reach(world: World, who: str | None) -> None:
    response = call(world, who, "GET", "/v1/cases/statistics")
    reach = REACH[who]
    if isinstance(reach, int):
        assert response.status_code == reach
        return
    stats = response.json()
    codes = {"in": world.codes["A1"], "out": world.codes["B"]}
    counted = {place for place, code in codes.items() if code in stats["by_jurisdiction"]}
    assert counted == reach
    if who != "admin":
        assert stats["total"] == len(reach)
        assert stats["by_jurisdiction"] == {codes[p]: 1 for p in reach}


def test_an_unreachable_case_looks_exactly_like_a_missing_one(world: World) -> None:
    outside = call(world, "inspector_a", "GET", f"/v1/cases/{case_id(world, 'out')}")
    missing = call(world, "inspector_a", "GET", "/v1/cases/999999999")
    assert outside.status_code == missing.status_code == 404
    strip = str(case_id(world, "out"))
    assert outside.json()["detail"].replace(strip, "N") == missing.json()["detail"].replace(
        "999999999", "N"
    )


def test_filtering_by_another_jurisdiction_reveals_nothing(world: World) -> None:
    other = call(
        world, "inspector_a", "GET", "/v1/cases", params={"jurisdiction": world.codes["B"]}
    )
    unknown = call(world, "inspector_a", "GET", "/v1/cases", params={"jurisdiction": "NO-SUCH"})
    assert other.status_code == unknown.status_code == 422
    assert other.json()["detail"].replace(world.codes["B"], "X") == unknown.json()[
        "detail"
    ].replace("NO-SUCH", "X")
    stats = call(
        world, "inspector_a", "GET", "/v1/cases/statistics?jurisdiction=" + world.codes["B"]
    )
    assert stats.status_code == 422


def test_a_monitor_reaches_sub_areas_through_its_district(world: World) -> None:
    mine = call(world, "monitor", "GET", "/v1/cases", params={"jurisdiction": world.codes["A1"]})
    assert [c["id"] for c in mine.json()["items"]] == [case_id(world, "in")]
