"""A file import from the dashboard: upload, a preview of the columns with the default mapping
filled in, a mapping the user changes, and the import it starts — checked in the page and in
the database (the stored mapping and the rows written)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.support.browser import (
    DESKTOP,
    PHONE,
    check_layout,
    job_row,
    log_in,
    query,
    screenshot,
    serious_accessibility_findings,
)
from tests.support.records import unique_prefix

COLUMNS = ["externalId", "FirstName", "Surname", "email", "Company Name", "Notes"]
ROWS = 250
DEFAULTS = {  # what the service maps by name (case-insensitive); the rest starts unmapped
    "externalId": "externalId",
    "FirstName": "firstName",
    "Surname": "",
    "email": "email",
    "Company Name": "",
    "Notes": "",
}
CHANGED = {
    "externalId": "externalId",
    "FirstName": "firstName",
    "Surname": "lastName",
    "email": None,
    "Company Name": "company",
    "Notes": None,
}


def people_csv(prefix: str) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for i in range(ROWS):
        writer.writerow(
            [f"{prefix}-{i}", "Ada", f"Lovelace-{i}", f"a{i}@example.com", "Analytical", "n/a"]
        )
    return out.getvalue().encode()


def mapping_inputs(page: Page) -> dict[str, str]:
    inputs = page.locator("table.mapping-table input")
    return {str(field.get_attribute("data-column")): field.input_value() for field in inputs.all()}


def test_a_file_is_uploaded_mapped_by_hand_and_imported(
    open_tab_on, tenant, settings, tmp_path: Path, screenshots: Path
):
    prefix = unique_prefix()
    data = tmp_path / "people.csv"
    data.write_bytes(people_csv(prefix))
    tab = open_tab_on(DESKTOP)
    page = tab.page
    log_in(tab, tenant.api_key)
    page.get_by_role("navigation").get_by_role("link", name="Import a file").click()
    expect(page.get_by_label("Entity")).to_have_value("customers")
    page.get_by_label("Operation").select_option("insert")
    page.get_by_label("File", exact=True).set_input_files(data)

    expect(page.get_by_role("heading", name="Columns and fields")).to_be_visible()
    expect(page.locator("table.mapping-table tbody tr")).to_have_count(len(COLUMNS))
    assert mapping_inputs(page) == DEFAULTS
    warning = page.locator("#mapping-missing")
    expect(warning).to_have_text("Required and not mapped: lastName.")
    expect(page.locator(".facts")).to_contain_text("people.csv")
    [(file_id, columns)] = query(
        settings,
        "SELECT file_id::text, profile->'columns' FROM files WHERE tenant_id = %s",
        tenant.tenant_id,
    )
    assert columns == COLUMNS

    page.get_by_label("Surname").fill("lastName")
    page.get_by_label("email").fill("")
    page.get_by_label("Company Name").fill("company")
    expect(warning).to_have_text("")
    assert mapping_inputs(page) == {c: t or "" for c, t in CHANGED.items()}
    check_layout(page)
    assert serious_accessibility_findings(page) == []
    screenshot(page, screenshots, "import-mapping-desktop")

    page.get_by_role("button", name="Start import").click()
    expect(page.get_by_role("heading", name="customers · insert")).to_be_visible()
    job_id = page.locator("code").inner_text()
    expect(page.locator(".status")).to_have_text("completed", timeout=120_000)
    expect(page.locator("#job-progress-text")).to_have_text(f"{ROWS:,} of {ROWS:,}")

    stored = job_row(settings, job_id)
    assert (stored["status"], stored["successful"], stored["total"]) == ("COMPLETED", ROWS, ROWS)
    [(source, options, imported_file)] = query(
        settings,
        "SELECT j.source, i.options, i.file_id::text FROM jobs j JOIN imports i USING (job_id) "
        "WHERE j.job_id = %s",
        job_id,
    )
    assert (source, imported_file) == ("file", file_id)
    mappings = options if isinstance(options, dict) else json.loads(options)
    assert mappings["field_mappings"] == CHANGED
    written = query(
        settings,
        "SELECT external_id, first_name, last_name, email, company FROM customers "
        "WHERE tenant_id = %s ORDER BY external_id",
        tenant.tenant_id,
    )
    assert len(written) == ROWS
    assert written[0] == (f"{prefix}-0", "Ada", "Lovelace-0", None, "Analytical")
    assert {row[3] for row in written} == {None}, "the e-mail column was skipped"


def test_a_mapping_the_service_refuses_is_explained_and_the_page_fits_a_phone(
    open_tab_on, tenant, settings, tmp_path: Path, screenshots: Path
):
    data = tmp_path / "people.csv"
    data.write_bytes(people_csv(unique_prefix()))
    tab = open_tab_on(PHONE)
    page = tab.page
    log_in(tab, tenant.api_key, "#/import")
    page.get_by_label("File", exact=True).set_input_files(data)
    expect(page.locator("table.mapping-table tbody tr")).to_have_count(len(COLUMNS))
    page.get_by_label("Surname").fill("lastName")
    page.get_by_label("Notes").fill("nickname")  # no such field
    check_layout(page)
    page.get_by_role("button", name="Start import").click()
    problem = page.locator("#start-problem")
    expect(problem).to_contain_text("'nickname' is not a field of customers")
    expect(problem).to_be_in_viewport()
    check_layout(page)
    assert serious_accessibility_findings(page) == []
    screenshot(page, screenshots, "import-mapping-phone")
    jobs = query(settings, "SELECT count(*) FROM jobs WHERE tenant_id = %s", tenant.tenant_id)
    assert jobs == [(0,)], "nothing was started"
