"""The page itself: served by the gateway with its own assets (small, typed, under a policy that
allows only this origin), and an API key that is typed once per tab, kept in sessionStorage and
never put in a URL."""

from __future__ import annotations

from playwright.sync_api import expect

from api.dashboard import CONTENT_SECURITY_POLICY
from tests.support.browser import DESKTOP, PHONE, check_layout, log_in
from tests.support.http import Api

ASSET_BUDGET_BYTES = 300 * 1024
KEY_NAME = "bulk-ingest.api-key"


def test_the_page_and_its_assets_are_public_typed_and_same_origin_only(service):
    api = Api(service.base_url)
    page = api.get("/")
    assert page.status == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert page.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "default-src 'none'" in CONTENT_SECURITY_POLICY
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    for name, content_type in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("icon.svg", "image/svg+xml"),
    ]:
        answer = api.get(f"/assets/{name}")
        assert answer.status == 200, name
        assert answer.headers["Content-Type"] == content_type
        assert answer.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    for missing in ("nope.js", "..%2Fdashboard.py", "index.html", "%2E%2E%2Fapp.py"):
        answer = api.get(f"/assets/{missing}")
        assert answer.status == 404, missing
        assert answer.json()["errors"][0]["errorCode"] == "NotFound"


def test_the_page_loads_under_300_kb_from_the_gateway_alone(open_tab_on):
    tab = open_tab_on(DESKTOP)
    sizes: dict[str, int] = {}
    tab.page.on("response", lambda answer: sizes.__setitem__(answer.url, len(answer.body())))
    tab.page.goto(tab.url())
    expect(tab.page.get_by_label("API key")).to_be_visible()
    tab.page.wait_for_load_state("networkidle")
    assets = {url: size for url, size in sizes.items() if "/api/" not in url}
    assert any(url.endswith("/assets/app.js") for url in assets)
    total = sum(assets.values())
    print(f"dashboard assets: {len(assets)} files, {total} bytes")
    assert total <= ASSET_BUDGET_BYTES, assets
    assert all(url.startswith(tab.base_url) for url in tab.requested)


def test_the_key_is_asked_once_per_tab_and_never_travels_in_a_url(open_tab_on, tenant):
    tab = open_tab_on(PHONE)
    page = tab.page
    page.goto(tab.url())
    check_layout(page)
    page.get_by_label("API key").fill("bik_not-a-real-key")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("does not know this key")
    assert page.evaluate(f"sessionStorage.getItem('{KEY_NAME}')") is None

    page.get_by_label("API key").fill(tenant.api_key)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Jobs", exact=True)).to_be_visible()
    assert page.evaluate(f"sessionStorage.getItem('{KEY_NAME}')") == tenant.api_key
    assert page.evaluate(f"localStorage.getItem('{KEY_NAME}')") is None
    check_layout(page)

    page.reload()  # the same tab keeps the key
    expect(page.get_by_role("heading", name="Jobs", exact=True)).to_be_visible()
    page.goto(tab.url("#/import"))
    expect(page.get_by_role("heading", name="Import a file")).to_be_visible()

    other = open_tab_on(DESKTOP)  # another tab asks again
    other.page.goto(other.url())
    expect(other.page.get_by_label("API key")).to_be_visible()

    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_label("API key")).to_be_visible()
    assert page.evaluate(f"sessionStorage.getItem('{KEY_NAME}')") is None
    assert tab.requested, "the tab made requests"
    assert not [url for url in tab.requested if tenant.api_key in url]


def test_a_second_login_in_the_same_tab_is_not_needed_after_navigation(open_tab_on, tenant):
    tab = open_tab_on(DESKTOP)
    log_in(tab, tenant.api_key)
    tab.page.goto(tab.url("#/import"))
    expect(tab.page.get_by_label("API key")).to_have_count(0)
    expect(tab.page.get_by_role("heading", name="Import a file")).to_be_visible()
