"""10,000 cases in view: the page loads and draws them all; the first render time is recorded.

The time is measured and written next to the screenshot (and as a junit property), not
asserted: it depends on the machine. The goal is a first render within 2 s. Zoomed out the
page loads points only (~1.5 MB for 10,000 cases); outlines come for the view once zoomed in.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert
from sqlalchemy.orm import Session

from models import Case
from models.base import utcnow
from models.case import CaseStatus
from models.geo import bbox_values
from tests.browser.conftest import LiveService, make_service
from tests.browser.test_one_map import sign_in
from tests.service.web.world import DISTRICTS, MapWorld, build_world, case_box

pytestmark = pytest.mark.slow
MANY = 10_000
STATUSES = list(CaseStatus)


def build_crowded_world(session: Session, data_dir: Path) -> MapWorld:
    """The small world plus 10,000 cases on a 100 × 100 grid over district A."""
    world = build_world(session, data_dir)
    west, south, east, north = DISTRICTS["A"].bounds
    seen = utcnow() - timedelta(days=3)
    rows = []
    for index in range(MANY):
        row, column = divmod(index, 100)
        geom = case_box(
            west + (column + 0.5) * (east - west) / 100, south + (row + 0.5) * (north - south) / 100
        )
        rows.append(
            {
                "code": f"M-{uuid.uuid4().hex[:12]}",
                "status": STATUSES[index % len(STATUSES)],
                "version": 1,
                "priority": index % 101,
                "geom": geom,
                **bbox_values(geom),
                "area_m2": 100.0,
                "change_types": ["hardening"],
                "sources": ["remote_sensing"],
                "first_seen_at": seen,
                "last_seen_at": seen,
                "jurisdiction_id": world.jurisdiction_ids["A"],
            }
        )
    session.execute(insert(Case), rows)
    return world


@pytest.fixture(scope="module")
def crowded_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    service, stop = make_service(tmp_path_factory.mktemp("crowded"), build_crowded_world)
    yield service
    stop()


def test_ten_thousand_cases_are_all_drawn_and_the_first_render_is_recorded(
    crowded_service: LiveService,
    new_page: Callable[[], Any],
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    page = new_page()
    sign_in(page, crowded_service, "monitor_a")
    total = MANY + 3  # build_world's three cases in district A
    assert page.locator("#case-count").get_attribute("data-count") == str(total)
    first_render_ms = page.evaluate("() => window.tianxun.firstRenderMs")
    drawn = page.evaluate("() => window.tianxun.renderedCaseCount()")
    # Zoomed out only points travel: no outline has been asked for yet.
    assert page.evaluate("() => window.tianxun.outlines.size") == 0
    points = page.evaluate(
        """() => performance.getEntriesByType('resource')
             .filter((e) => e.name.includes('/v1/map/case-points.geojson'))
             .map((e) => [e.encodedBodySize, Math.round(e.responseEnd - e.startTime)])[0]"""
    )
    page.screenshot(path=str(tmp_path / "ten-thousand-cases.png"))
    # The page stays usable: a pan and a zoom past the outline zoom finish, the outlines of
    # the cases around the view arrive, and the map settles again.
    settle_ms = page.evaluate(
        """async () => {
             const state = window.tianxun, map = state.map, started = performance.now();
             map.panBy([200, 120], {duration: 0});
             map.zoomTo(Math.max(map.getZoom() + 1, 16.5), {duration: 0});
             await state.outlinesLoaded;
             await new Promise((resolve) => { map.once('idle', resolve); map.triggerRepaint(); });
             return Math.round(performance.now() - started);
           }"""
    )
    outlines_drawn = len(page.evaluate("() => window.tianxun.renderedCaseIds()"))
    page.screenshot(path=str(tmp_path / "ten-thousand-cases-zoomed.png"))
    measured = {"cases": total, "drawn": drawn, "first_render_ms": first_render_ms}
    measured |= {"case_points_bytes": points[0], "case_points_ms": points[1]}
    measured |= {"pan_zoom_settle_ms": settle_ms, "outlines_drawn": outlines_drawn}
    (tmp_path / "first-render.json").write_text(json.dumps(measured, indent=2))
    for name, value in measured.items():
        record_property(name, value)
    assert drawn == total  # the opening view holds them all, singly or in clusters
    assert first_render_ms > 0
    assert outlines_drawn > 100  # zoomed in, the cases in view are drawn as outlines
