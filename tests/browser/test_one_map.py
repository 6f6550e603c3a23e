"""The one-map page in headless Chromium against a live service and a small world."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.browser.conftest import LiveService
from tests.service.cases.photo_files import field_photo

CASES_IN_A = 3  # build_world's cases in district A; one more lies in district B


def sign_in(page: Any, service: LiveService, who: str) -> None:
    page.goto(f"{service.url}/")
    page.locator("#key-dialog").wait_for(state="visible")
    page.fill("#api-key", service.world.keys[who])
    page.click("#key-submit")
    page.wait_for_selector("body[data-cases-rendered='true']")


def open_case(page: Any, case_id: int) -> None:
    """Zoom to the case (as a user would from a cluster) and click its outline."""
    page.evaluate("(id) => window.tianxun.focusCase(id)", case_id)
    point = page.evaluate("(id) => window.tianxun.pixelOfCase(id)", case_id)
    page.mouse.click(point["x"], point["y"])
    page.wait_for_selector("#case-panel[data-loaded='true']")


def test_the_map_shows_the_callers_cases_over_the_imagery(
    live_service: LiveService, new_page: Callable[[], Any], tmp_path: Path
) -> None:
    page = new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    sign_in(page, live_service, "inspector_a")

    assert page.locator("#case-count").get_attribute("data-count") == str(CASES_IN_A)
    # All drawn, singly or in a cluster; district B's case is not the inspector's to see.
    assert page.evaluate("() => window.tianxun.renderedCaseCount()") == CASES_IN_A
    page.evaluate("(id) => window.tianxun.focusCase(id, 15.5)", live_service.world.case_ids["a2"])
    rendered = page.evaluate("() => window.tianxun.renderedCaseIds()")
    expected = sorted(v for k, v in live_service.world.case_ids.items() if k.startswith("a"))
    assert rendered == expected  # zoomed in, each case is its own point
    tiles = page.evaluate(
        """() => performance.getEntriesByType('resource')
             .filter(e => e.name.includes('/v1/tiles/')).map(e => e.responseStatus)"""
    )
    assert tiles and all(status == 200 for status in tiles)  # the key reached the tile requests
    assert page.locator("#who").inner_text().endswith("(inspector)")
    page.screenshot(path=str(tmp_path / "one-map.png"))
    assert errors == []


def test_clicking_a_case_opens_its_panel_with_before_and_after_images(
    live_service: LiveService, new_page: Callable[[], Any], tmp_path: Path
) -> None:
    page = new_page()
    sign_in(page, live_service, "inspector_a")
    case_id = live_service.world.case_ids["a2"]
    open_case(page, case_id)

    title = page.locator("#case-title").inner_text()
    assert title.startswith("W-")
    assert page.locator("#case-status").inner_text() == "new"
    sizes = page.eval_on_selector_all(
        ".compare img", "images => images.map(i => [i.className, i.naturalWidth])"
    )
    assert sizes == [["before", 384], ["after", 384]]
    assert "opened" in page.locator("#case-body").inner_text()  # the history
    page.screenshot(path=str(tmp_path / "case-panel.png"))


def test_a_monitor_dispatches_a_case_from_the_panel_with_if_match(
    live_service: LiveService, new_page: Callable[[], Any], tmp_path: Path
) -> None:
    page = new_page()
    sign_in(page, live_service, "monitor_a")
    case_id = live_service.world.case_ids["a3"]
    open_case(page, case_id)
    page.click("button[data-to='dispatched']")
    page.wait_for_selector("#case-panel[data-loaded='true'] #case-status:text-is('dispatched')")
    assert "→ dispatched" in page.locator("#case-body").inner_text()

    # Another tab of another role, opened afterwards, sees the new status from the API.
    other = new_page()
    sign_in(other, live_service, "inspector_a")
    open_case(other, case_id)
    assert other.locator("#case-status").inner_text() == "dispatched"
    assert other.locator("button[data-to='verifying']").is_visible()
    other.screenshot(path=str(tmp_path / "dispatched.png"))


def test_a_wrong_key_is_refused_with_the_reason_and_asked_for_again(
    live_service: LiveService, new_page: Callable[[], Any]
) -> None:
    page = new_page()
    page.goto(f"{live_service.url}/")
    page.fill("#api-key", "tx_0000000000_not-a-real-secret")
    page.click("#key-submit")
    page.wait_for_selector("#key-dialog[open]")
    page.wait_for_function("document.querySelector('#key-error').textContent.length > 0")
    assert "not valid" in page.locator("#key-error").inner_text()


def test_field_photos_show_as_thumbnails_in_the_panel(
    live_service: LiveService, new_page: Callable[[], Any]
) -> None:
    case_id = live_service.world.case_ids["a1"]
    uploaded = httpx.post(
        f"{live_service.url}/v1/cases/{case_id}/evidence",
        content=field_photo(),
        params={"caption": "shed seen from the road"},
        headers={
            "Authorization": f"Bearer {live_service.world.keys['inspector_a']}",
            "Content-Type": "image/jpeg",
        },
    )
    assert uploaded.status_code == 201, uploaded.text
    page = new_page()
    sign_in(page, live_service, "inspector_a")
    open_case(page, case_id)
    page.wait_for_function(
        "() => [...document.querySelectorAll('.evidence img.thumb')]"
        ".some(i => i.complete && i.naturalWidth > 0)"
    )
    thumb = page.eval_on_selector(
        "img.thumb[alt='shed seen from the road']", "i => [i.naturalWidth, i.naturalHeight]"
    )
    assert thumb == [32, 64]  # the stripped copy, turned upright
