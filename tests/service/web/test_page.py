"""The one-map page and its static files: served by the service, nothing fetched from outside."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

from fastapi.testclient import TestClient

from service.main import create_app
from service.settings import Settings
from service.web.router import STATIC_DIR


class _References(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in {"src", "href"} and value]


def client(tmp_path: Path) -> TestClient:
    # The page and its files need no database: the app is not even started.
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'unused.db'}", _env_file=None)  # type: ignore[call-arg]
    return TestClient(create_app(settings))


def test_the_page_is_served_at_the_root_without_a_key(tmp_path: Path) -> None:
    response = client(tmp_path).get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert 'id="map"' in response.text
    assert 'id="key-dialog"' in response.text  # it asks for the key itself


def test_every_file_the_page_references_is_served_locally(tmp_path: Path) -> None:
    http = client(tmp_path)
    parser = _References()
    parser.feed(http.get("/").text)
    assert parser.urls, "the page references no files"
    for url in (u for u in parser.urls if not u.startswith("data:")):
        assert url.startswith("/static/"), f"{url} would need the internet"
        response = http.get(url)
        assert response.status_code == 200, url
        assert len(response.content) > 1000, url


def test_no_script_or_style_reaches_for_the_internet(tmp_path: Path) -> None:
    # Offline intranets: no CDN, no web fonts, no internet basemap in our own files.
    own = sorted(STATIC_DIR.glob("*.*"))
    assert {path.name for path in own} >= {"index.html", "app.js", "app.css", "report.html"}
    for path in own:
        # The SVG namespace is a name that is never fetched.
        text = path.read_text(encoding="utf-8").replace('"http://www.w3.org/2000/svg"', "")
        assert not re.search(r"https?://", text), f"{path.name} names an internet address"


def test_the_page_modules_import_only_local_files(tmp_path: Path) -> None:
    http = client(tmp_path)
    for path in STATIC_DIR.glob("*.js"):
        for module in re.findall(r'from "([^"]+)"', path.read_text(encoding="utf-8")):
            assert module.startswith("./"), f"{path.name} imports {module}"
            assert http.get(f"/static/{module[2:]}").status_code == 200, module


def test_the_case_report_page_is_served_without_a_key_and_only_for_case_ids(
    tmp_path: Path,
) -> None:
    http = client(tmp_path)
    response = http.get("/cases/12/report")
    assert response.status_code == 200
    assert 'id="report"' in response.text and 'id="key-dialog"' in response.text
    parser = _References()
    parser.feed(response.text)
    for url in (u for u in parser.urls if not u.startswith("data:")):
        assert url.startswith("/static/") and http.get(url).status_code == 200, url
    refused = http.get("/cases/twelve/report")
    assert refused.status_code == 422
    assert refused.headers["content-type"] == "application/problem+json"


def test_the_vendored_chart_library_is_the_version_its_readme_names() -> None:
    vendor = STATIC_DIR / "vendor"
    readme = (vendor / "README.md").read_text(encoding="utf-8")
    version = re.search(r"\| (\d+\.\d+\.\d+) \(npm `chart\.js`\)", readme)
    assert version is not None, "vendor/README.md must name the Chart.js version"
    header = (vendor / "chart.js" / "chart.umd.min.js").read_text(encoding="utf-8")[:200]
    assert f"Chart.js v{version.group(1)}" in header
    assert "MIT License" in (vendor / "chart.js" / "LICENSE.md").read_text(encoding="utf-8")


def test_the_vendored_map_library_is_the_version_its_readme_names() -> None:
    vendor = STATIC_DIR / "vendor"
    readme = (vendor / "README.md").read_text(encoding="utf-8")
    version = re.search(r"\| (\d+\.\d+\.\d+) \(npm", readme)
    assert version is not None, "vendor/README.md must name the MapLibre version"
    header = (vendor / "maplibre-gl" / "maplibre-gl.js").read_text(encoding="utf-8")[:300]
    assert f"v{version.group(1)}/LICENSE" in header
    assert "Redistribution" in (vendor / "maplibre-gl" / "LICENSE.txt").read_text()


def test_static_files_revalidate_with_an_etag(tmp_path: Path) -> None:
    http = client(tmp_path)
    first = http.get("/static/app.js")
    assert first.headers["content-type"].startswith(("text/javascript", "application/javascript"))
    again = http.get("/static/app.js", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304


def test_paths_outside_the_static_folder_are_not_served(tmp_path: Path) -> None:
    http = client(tmp_path)
    for path in ("/static/../router.py", "/static/%2e%2e/router.py", "/static/nope.js"):
        assert http.get(path).status_code == 404, path
