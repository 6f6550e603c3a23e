"""A real uvicorn server on a free local port and Debian's headless Chromium driven by Playwright.

Browser tests skip when /usr/bin/chromium is absent (`apt-get install chromium`); Playwright's
own browser download is never used.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from service.db import create_db_engine, create_session_factory, transaction
from service.main import create_app
from service.settings import Settings
from tests.conftest import migrate
from tests.service.web.world import MapWorld, build_world

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
VIEWPORT = {"width": 1400, "height": 900}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/browser/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.browser)


class _Server(uvicorn.Server):
    """uvicorn that says when it is listening, so tests wait on an event, not a sleep."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


@dataclass
class LiveService:
    url: str
    world: MapWorld
    settings: Settings


def serve(settings: Settings) -> tuple[str, Callable[[], None]]:
    """Start the app on a free 127.0.0.1 port; returns its base URL and a stop function."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))  # the kernel picks a free port; no race with another test
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(settings), log_level="warning", lifespan="on")
    server = _Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    if not server.ready.wait(timeout=30):
        raise RuntimeError("the service did not start within 30 s")

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()

    return f"http://127.0.0.1:{port}", stop


def make_service(tmp: Path, build: Callable[[Any, Path], MapWorld]) -> tuple[LiveService, Any]:
    url = f"sqlite:///{tmp / 'map.db'}"
    migrate(url)
    settings = Settings(database_url=url, data_dir=tmp / "data", _env_file=None)  # type: ignore[call-arg]
    engine = create_db_engine(url)
    with transaction(create_session_factory(engine)) as session:
        world = build(session, settings.data_dir)
    engine.dispose()
    base, stop = serve(settings)
    return LiveService(base, world, settings), stop


@pytest.fixture(scope="module")
def chromium_path() -> Path:
    if not CHROMIUM.exists():
        pytest.skip(
            f"{CHROMIUM} is absent: install Debian's Chromium with `apt-get install chromium`"
        )
    return CHROMIUM


@pytest.fixture(scope="module")
def live_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    service, stop = make_service(tmp_path_factory.mktemp("live"), build_world)
    yield service
    stop()


@pytest.fixture(scope="module")
def browser(chromium_path: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium_path), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def new_page(browser: Any) -> Iterator[Callable[[], Any]]:
    """Pages in fresh contexts (each with its own sessionStorage, like separate tabs)."""
    contexts: list[Any] = []

    def make() -> Any:
        context = browser.new_context(viewport=VIEWPORT)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(20_000)
        return page

    yield make
    for context in contexts:
        context.close()
