"""The printable case report: opened from the panel, filled through the API, printed to PDF."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pypdf
from shapely.geometry import mapping, shape

from models import Case, Detection, LayerHit
from models.detection import ChangeType, DetectionSource, Screening
from models.layer import LayerKind
from service.db import create_db_engine, create_session_factory, transaction
from tests.browser.conftest import LiveService
from tests.browser.test_one_map import open_case, sign_in

OVERLAP_M2 = 1234.5


def add_detection_on_farmland(service: LiveService, case_id: int) -> None:
    """A detection of the case in the 'after' scene that overlaps district A's farmland."""
    engine = create_db_engine(service.settings.database_url)
    with transaction(create_session_factory(engine)) as session:
        case = session.get_one(Case, case_id)
        detection = Detection(
            scene_id=service.world.scene_ids["after"], source=DetectionSource.remote_sensing,
            detector_version="test-1", object_index=case_id, change_type=ChangeType.building,
            confidence=0.8, area_m2=1600.0, observed_at=case.first_seen_at,
            screening=Screening.suspected_violation, case_id=case_id, geom=case.geom.geoms[0],
        )  # fmt: skip
        session.add(detection)
        session.flush()
        session.add(
            LayerHit(
                detection_id=detection.id,
                layer_version_id=service.world.other_ids["layer_versions"][0],
                layer_feature_id=service.world.other_ids["layer_features"][0],
                layer_kind=LayerKind.permanent_basic_farmland.value,
                overlap_m2=OVERLAP_M2,
                overlap_mu=OVERLAP_M2 / 666.67,
            )
        )
    engine.dispose()


def test_the_report_opens_from_the_panel_and_prints_with_map_images_and_coordinates(
    live_service: LiveService, new_page: Callable[[], Any], tmp_path: Path
) -> None:
    case_id = live_service.world.case_ids["a2"]
    add_detection_on_farmland(live_service, case_id)
    headers = {"Authorization": f"Bearer {live_service.world.keys['inspector_a']}"}
    detail = httpx.get(f"{live_service.url}/v1/cases/{case_id}", headers=headers).json()
    outline = shape(detail["geometry"])

    page = new_page()
    sign_in(page, live_service, "inspector_a")
    open_case(page, case_id)
    with page.expect_popup() as opened:
        page.click("#open-report")  # the new tab shares the signed-in key of this one
    report = opened.value
    report.wait_for_selector("body[data-loaded='true']")
    assert report.url == f"{live_service.url}/cases/{case_id}/report"
    assert report.locator("#report-error").count() == 0

    text = report.locator("#report").inner_text()
    assert f"Case {detail['code']}" in text
    lon, lat = report.evaluate("() => window.tianxun.report.centroid")
    assert abs(lon - outline.centroid.x) < 1e-9 and abs(lat - outline.centroid.y) < 1e-9
    assert f"{outline.centroid.x:.6f}° E, {outline.centroid.y:.6f}° N" in text
    corners = report.evaluate("() => window.tianxun.report.vertices.map(v => [v.lon, v.lat])")
    assert corners == [list(xy) for xy in outline.geoms[0].exterior.coords[:-1]]
    for x, y in corners:
        assert f"{x:.6f}" in text and f"{y:.6f}" in text  # every corner is listed
    assert report.locator("svg.outline path").count() == 1  # the outline drawing
    assert f"permanent basic farmland\t{live_service.world.other_ids['layer_versions'][0]}" in text
    assert f"{OVERLAP_M2 / 666.67:.2f}" in text
    assert "building by remote sensing" in text and "opened" in text  # the timeline
    sizes = report.eval_on_selector_all(
        ".figures img", "images => images.map(i => [i.className, i.naturalWidth])"
    )
    assert sizes == [["before", 384], ["after", 384]]
    report.screenshot(path=str(tmp_path / "report.png"), full_page=True)

    pdf_path = tmp_path / "report.pdf"
    report.pdf(path=str(pdf_path), format="A4", print_background=True)
    pdf = pypdf.PdfReader(io.BytesIO(pdf_path.read_bytes()))
    assert len(pdf.pages) >= 1
    # Text extraction depends on how Chromium subsets the fonts the machine has (glyphs without a
    # Unicode map come back as NULs), so the printout is checked by what does not: its title,
    # its paper size and the before/after images on it.
    assert detail["code"] in pdf.metadata.title
    for page in pdf.pages:
        width, height = float(page.mediabox.width), float(page.mediabox.height)
        assert abs(width - 595.3) < 1 and abs(height - 841.9) < 1  # A4 in points
    assert sum(len(page.images) for page in pdf.pages) >= 2
    report.emulate_media(media="print")
    assert report.locator("#print-report").is_hidden()  # the button stays off paper


def test_a_report_without_a_key_asks_for_one_and_an_unknown_case_says_so(
    live_service: LiveService, new_page: Callable[[], Any]
) -> None:
    page = new_page()
    page.goto(f"{live_service.url}/cases/999999/report")
    page.wait_for_selector("#key-dialog[open]")
    page.fill("#api-key", live_service.world.keys["inspector_a"])
    page.click("#key-submit")
    page.wait_for_selector("body[data-loaded='true']")
    assert "cannot be shown" in page.locator("#report-error").inner_text()
    other = live_service.world.case_ids["b1"]  # district B: not the inspector's to see
    page.goto(f"{live_service.url}/cases/{other}/report")
    page.wait_for_selector("body[data-loaded='true']")
    assert "cannot be shown" in page.locator("#report-error").inner_text()


def test_a_case_of_places_apart_reports_when_each_began(
    live_service: LiveService, new_page: Callable[[], Any]
) -> None:
    case_id = live_service.world.case_ids["a3"]
    engine = create_db_engine(live_service.settings.database_url)
    with transaction(create_session_factory(engine)) as session:
        case = session.get_one(Case, case_id)
        outline = mapping(case.geom.geoms[0])
        case.onset_parts = [
            place(outline, "2024-03-01", "2024-01-05", "2024-02-04", "2024-02-04"),
            place(outline, "2024-08-01", "2024-06-03", "2024-07-03", None),
        ]
    engine.dispose()

    page = new_page()
    sign_in(page, live_service, "inspector_a")
    page.goto(f"{live_service.url}/cases/{case_id}/report")
    page.wait_for_selector("body[data-loaded='true']")

    rows = page.locator("#report table").first.locator("tbody tr").all_inner_texts()
    assert [row.split("\t") for row in rows] == [
        ["1", "2024-03-01 00:00 UTC", "2024-01-05 00:00 UTC", "2024-02-04 00:00 UTC",
         "2024-02-04 00:00 UTC"],
        ["2", "2024-08-01 00:00 UTC", "2024-06-03 00:00 UTC", "2024-07-03 00:00 UTC", "—"],
    ]  # fmt: skip
    assert "When each place began" in page.locator("#report").inner_text()


def place(
    outline: dict[str, Any], first_seen: str, after: str, before: str, likeliest: str | None
) -> dict[str, Any]:
    def utc(day: str | None) -> str | None:
        return f"{day}T00:00:00+00:00" if day else None

    return {
        "outline": outline,
        "first_seen": utc(first_seen),
        "last_unchanged": utc(after),
        "first_visible": utc(before),
        "likeliest_onset": utc(likeliest),
    }
