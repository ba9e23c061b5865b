"""Fixtures of the dashboard tests: one headless Chromium for the session, a fresh tab per use
that may reach only the gateway, and the folder screenshots go to.

Screenshots go to a temporary folder; ``BULK_INGEST_SCREENSHOTS_DIR=docs/screenshots
./dev test tests/browser`` writes them where the README shows them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Playwright, sync_playwright

from bulk_ingest.settings import REPO_ROOT
from tests.support.browser import DESKTOP, Tab, launch_chromium, open_tab

OpenTab = Callable[..., Tab]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests are e2e tests, and run last: Playwright's sync API keeps its event loop
    set on the main thread while its driver lives (the session), and tests after it that run
    their own loop (``asyncio.run``, pytest-asyncio) would find it running."""
    browser_dir = Path(__file__).parent
    in_browser = [item for item in items if browser_dir in Path(str(item.fspath)).parents]
    for item in in_browser:
        item.add_marker(pytest.mark.e2e)
    others = [item for item in items if item not in in_browser]
    items[:] = others + in_browser


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def chromium(playwright: Playwright) -> Iterator[Browser]:
    browser = launch_chromium(playwright)
    yield browser
    browser.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wanted = os.environ.get("BULK_INGEST_SCREENSHOTS_DIR")
    if not wanted:
        return tmp_path_factory.mktemp("screenshots")
    folder = Path(wanted) if Path(wanted).is_absolute() else REPO_ROOT / wanted
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def open_tab_on(chromium: Browser, service) -> Iterator[OpenTab]:  # type: ignore[no-untyped-def]
    """``open_tab_on(viewport)``: a new tab (its own context: its own sessionStorage). After the
    test, no tab may have tried to reach another host or thrown a script error."""
    tabs: list[Tab] = []

    def open_one(viewport: dict[str, int] = DESKTOP) -> Tab:
        tab = open_tab(chromium, service.base_url, viewport)
        tabs.append(tab)
        return tab

    yield open_one
    try:
        for tab in tabs:
            assert tab.off_site == [], "the page tried to reach another host"
            assert tab.page_errors == [], "the page threw"
    finally:
        for tab in tabs:
            tab.close()
