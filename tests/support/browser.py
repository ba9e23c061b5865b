"""The dashboard tests' browser: Debian's headless Chromium driven by Playwright, a tab that may
reach the gateway and nothing else, and checks a person would make of a page — nothing wider
than the screen, every control within reach, no serious accessibility finding (axe-core).

Also the one way the tests hold the pipeline still: :func:`workers_paused` SIGSTOPs the
service's worker processes (the job row's counts stop moving) and SIGCONTs them after.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, Request, Route

CHROMIUM = Path(os.environ.get("BULK_INGEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu"]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
VIEWPORTS = {"desktop": DESKTOP, "phone": PHONE}
SERIOUS = {"serious", "critical"}


def launch_chromium(playwright: Playwright) -> Browser:
    """Debian's Chromium (the ``chromium`` apt package, which ``./dev`` installs). Missing, the
    test fails: a dashboard nobody could test in a browser is not tested."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"Chromium is not at {CHROMIUM}: install Debian's chromium package "
            "(./dev test does it) or point BULK_INGEST_CHROMIUM at one",
            pytrace=False,
        )
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


@dataclass
class Tab:
    """A browser tab whose requests may reach the gateway only; everything else is aborted and
    remembered in ``off_site``, like every request URL and every script error of the page."""

    context: BrowserContext
    page: Page
    base_url: str
    off_site: list[str] = field(default_factory=list)
    requested: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def url(self, fragment: str = "") -> str:
        return f"{self.base_url}/{fragment}"

    def close(self) -> None:
        self.context.close()


def open_tab(browser: Browser, base_url: str, viewport: dict[str, int]) -> Tab:
    context = browser.new_context(viewport=viewport, accept_downloads=True)
    page = context.new_page()
    tab = Tab(context, page, base_url)

    def refuse(route: Route, request: Request) -> None:
        tab.off_site.append(request.url)
        route.abort("blockedbyclient")

    # Only what is not the gateway's is intercepted (the browser matches the pattern itself),
    # so the gateway's answers arrive as fast as they would without the test.
    context.route(re.compile(rf"^(?!{re.escape(base_url.rstrip('/'))}/)"), refuse)
    context.on("request", lambda request: tab.requested.append(request.url))
    page.on("pageerror", lambda error: tab.page_errors.append(str(error)))
    return tab


def log_in(tab: Tab, api_key: str, fragment: str = "") -> None:
    """Open the dashboard, type the key once, and wait for the jobs list."""
    page = tab.page
    page.goto(tab.url(fragment))
    page.get_by_label("API key").fill(api_key)
    page.get_by_role("button", name="Log in").click()
    page.locator("#nav").wait_for(state="visible")


# --- checks a person would make -------------------------------------------------------------------


def horizontal_overflow(page: Page) -> int:
    """How many pixels the page is wider than the window (0: nothing to scroll sideways)."""
    return int(
        page.evaluate(
            "() => Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
            " - document.documentElement.clientWidth"
        )
    )


_UNREACHABLE = """() => {
  const width = document.documentElement.clientWidth;
  const controls = document.querySelectorAll("a[href], button, input, select, textarea");
  const out = [];
  for (const control of controls) {
    if (control.closest("[hidden]") || control.getClientRects().length === 0) continue;
    const box = control.getBoundingClientRect();
    if (box.left < 0 || box.right > width + 0.5 || box.width < 1 || box.height < 1) {
      out.push(`${control.tagName} ${control.textContent.trim() || control.id}: ` +
               `${Math.round(box.left)}..${Math.round(box.right)} of ${width}`);
    }
  }
  return out;
}"""


def unreachable_controls(page: Page) -> list[str]:
    """Shown links, buttons and fields that stick out of the window sideways (or are 0 px)."""
    return list(page.evaluate(_UNREACHABLE))


def check_layout(page: Page) -> None:
    assert horizontal_overflow(page) <= 0, "the page scrolls sideways"
    assert unreachable_controls(page) == []


def serious_accessibility_findings(page: Page) -> list[str]:
    """axe-core's serious and critical violations on the page as it is now."""
    results = Axe().run(page)
    violations: list[dict[str, Any]] = results.response["violations"]
    return [
        f"{v['id']} ({v['impact']}): {v['help']} — "
        + "; ".join(node["target"][0] for node in v["nodes"][:3])
        for v in violations
        if v.get("impact") in SERIOUS
    ]


def screenshot(page: Page, folder: Path, name: str) -> Path:
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path


# --- holding the pipeline -------------------------------------------------------------------------


@contextlib.contextmanager
def workers_paused(service: Any) -> Iterator[None]:
    """Every worker of the running service SIGSTOPped (with its process group) until the block
    ends: no batch is written, no count moves. Keep the block short (a few seconds) — a broker
    that misses heartbeats long enough rebalances the group when the workers come back."""
    groups = [os.getpgid(worker.pid) for worker in service.workers if worker.alive()]
    for group in groups:
        os.killpg(group, signal.SIGSTOP)
    try:
        yield
    finally:
        for group in groups:
            os.killpg(group, signal.SIGCONT)


# --- the database ---------------------------------------------------------------------------------


def query(settings: Any, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(settings.libpq_url) as conn:
        return conn.execute(sql, list(params)).fetchall()


def job_row(settings: Any, job_id: str) -> dict[str, Any]:
    with psycopg.connect(settings.libpq_url) as conn:
        cursor = conn.execute(
            "SELECT status, total, processed, successful, failed, skipped FROM jobs "
            "WHERE job_id = %s",
            [job_id],
        )
        row = cursor.fetchone()
        assert row is not None, f"no job {job_id} in the database"
        names = [column.name for column in cursor.description or []]
    return dict(zip(names, row, strict=True))


def outcome_counts(settings: Any, job_id: str) -> dict[tuple[str, str | None], int]:
    """The ledger's outcomes of a job by (status, error code)."""
    rows = query(
        settings,
        "SELECT status, error_code, count(*) FROM record_outcomes WHERE job_id = %s "
        "GROUP BY status, error_code",
        job_id,
    )
    return {(status, code): int(n) for status, code, n in rows}
