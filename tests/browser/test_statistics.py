"""The statistics view: charts of the caller's cases with the numbers the world implies."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import LiveService
from tests.browser.test_live import move
from tests.browser.test_one_map import sign_in

DAY_HOURS = 24.0


def chart(page: Any, name: str) -> dict[str, Any]:
    """Labels and datasets of one chart instance, and how much of its canvas is painted."""
    return page.evaluate(
        """(name) => {
             const chart = window.tianxun.charts[name];
             const canvas = chart.canvas;
             const pixels = canvas.getContext('2d')
               .getImageData(0, 0, canvas.width, canvas.height).data;
             let painted = 0;
             for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) painted++;
             return {
               labels: chart.data.labels,
               data: chart.data.datasets.map((d) => d.data),
               painted: painted / (canvas.width * canvas.height),
             };
           }""",
        name,
    )


def test_the_statistics_view_charts_status_type_area_month_time_and_shares(
    live_service: LiveService, new_page: Callable[[], Any], tmp_path: Path
) -> None:
    ids = live_service.world.case_ids  # district A: a1..a3, all new, first seen 30 days ago
    move(live_service, "monitor_a", ids["a1"], "dispatched")
    move(live_service, "inspector_a", ids["a1"], "verifying")
    move(live_service, "inspector_a", ids["a1"], "confirmed")
    move(live_service, "monitor_a", ids["a2"], "dismissed")

    page = new_page()
    sign_in(page, live_service, "monitor_a")
    page.click("#show-stats")
    page.wait_for_selector("#stats-view[data-loaded='true']")
    assert not page.locator("#stats-view").is_hidden()
    assert "3 cases" in page.locator("#stats-summary").inner_text()

    status = chart(page, "status")
    assert status["labels"] == ["new", "confirmed", "dismissed"]  # in workflow order
    assert status["data"] == [[1, 1, 1]]
    assert status["painted"] > 0.01  # bars and axes were drawn, not just an empty canvas
    kind = chart(page, "type")
    assert (kind["labels"], kind["data"]) == (["building"], [[3]])
    area = chart(page, "jurisdiction")
    assert len(area["labels"]) == 1 and area["labels"][0].startswith("A-")
    assert area["data"] == [[3]]
    month = chart(page, "month")
    assert sum(month["data"][0]) == 3 and all(len(m) == 7 for m in month["labels"])

    time = chart(page, "time")
    medians, p90s = time["data"]
    in_state = dict(zip(time["labels"], zip(medians, p90s, strict=True), strict=True))
    assert set(in_state) == {"new", "dispatched", "verifying"}  # completed stays only
    median_new, p90_new = in_state["new"]
    assert 30 * DAY_HOURS - 1 < median_new <= p90_new < 30 * DAY_HOURS + 1  # both left "new"
    assert in_state["dispatched"][0] < 1 and in_state["verifying"][0] < 1  # moved at once

    shares = chart(page, "shares")
    assert dict(zip(shares["labels"], shares["data"][0], strict=True)) == pytest.approx(
        {"confirmed": 33.3, "dismissed": 33.3, "rectified": 0.0, "reopened": 0.0}
    )
    page.screenshot(path=str(tmp_path / "statistics.png"), full_page=True)

    # Shown statistics follow the live feed: a case dispatched elsewhere moves a bar.
    page.wait_for_selector("#live-state[data-state='open']")
    move(live_service, "monitor_a", ids["a3"], "dispatched")
    page.wait_for_function(
        "() => (window.tianxun.charts.status?.data.labels || []).includes('dispatched')"
    )
    status = chart(page, "status")
    assert status["labels"] == ["dispatched", "confirmed", "dismissed"]
    assert status["data"] == [[1, 1, 1]]

    page.click("#show-stats")  # back to the map
    assert page.locator("#stats-view").is_hidden()
