"""``/docs`` in a real browser: Swagger UI renders every operation (and the webhook) of the
served document from the gateway's own assets, and a key typed into "Authorize" lists the
tenant's jobs through "Try it out" — the jobs the database holds for that tenant."""

from __future__ import annotations

import json

from playwright.sync_api import expect

from tests.support.browser import DESKTOP, query
from tests.support.http import Api
from tests.support.records import customers, unique_prefix

ASYNC = "/api/v1/customers/bulk/async"
METHODS = {"get", "put", "post", "delete", "patch"}


def test_the_docs_page_renders_every_operation_and_tries_one_out(
    open_tab_on, service, tenant, settings
) -> None:
    document = Api(service.base_url).get("/api/v1/openapi.json").json()
    operations = [
        (method, path)
        for paths in (document["paths"], document["webhooks"])
        for path, item in paths.items()
        for method in item
        if method in METHODS
    ]
    accepted = tenant.api.post(ASYNC, {"records": customers(unique_prefix(), 3)})
    assert accepted.status == 202, accepted.body
    tab = open_tab_on(DESKTOP)
    page = tab.page

    page.goto(tab.url("docs"))
    expect(page.locator(".opblock")).to_have_count(len(operations))
    expect(page.locator(".info .title")).to_contain_text(document["info"]["title"])

    page.locator(".scheme-container button.authorize").click()
    page.locator(".auth-container input").fill(tenant.api_key)
    page.locator(".auth-btn-wrapper button.authorize").click()
    page.locator(".auth-btn-wrapper button.btn-done").click()
    operation = page.locator("#operations-jobs-list_jobs")
    operation.locator(".opblock-summary").click()
    operation.locator("button.try-out__btn").click()
    operation.locator("button.execute").click()
    answer = operation.locator(".live-responses-table tbody")
    expect(answer.locator(".response-col_status").first).to_have_text("200")
    shown = json.loads(answer.locator(".response-col_description pre").first.inner_text())

    stored = query(
        settings,
        "SELECT job_id::text FROM jobs WHERE tenant_id = %s ORDER BY created_at DESC, job_id DESC",
        tenant.tenant_id,
    )
    assert [job["job_id"] for job in shown["jobs"]] == [job_id for (job_id,) in stored]
    assert accepted.json()["job_id"] in {job["job_id"] for job in shown["jobs"]}
    assert tab.off_site == [] and tab.page_errors == []
