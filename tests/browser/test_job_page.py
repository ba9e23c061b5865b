"""One job's page in a real browser: its bar moves live and finishes, its error breakdown and
first errors match the ledger, its report downloads, and it cancels a running job — each seen
in the page and checked in the database.

Where a test must see a job mid-way it holds the pipeline: one record's batch waits on a row
the test keeps uncommitted (the job cannot finish), and the workers are SIGSTOPped while the
test compares the page with the job row (the counts cannot move).
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from tests.support.browser import (
    DESKTOP,
    PHONE,
    check_layout,
    job_row,
    log_in,
    outcome_counts,
    query,
    screenshot,
    serious_accessibility_findings,
    workers_paused,
)
from tests.support.http import poll
from tests.support.imports import uploaded
from tests.support.jobs import a_batch_held_on, a_worker_held
from tests.support.kafka import job_partition, owned_partitions
from tests.support.records import customers, unique_prefix

ASYNC = "/api/v1/customers/bulk/async"
TOTAL = 20_000


def submit(tenant: Any, records: list[dict[str, Any]]) -> str:
    answer = tenant.api.post(ASYNC, {"records": records})
    assert answer.status == 202, answer.body
    return str(answer.json()["job_id"])


def shown_progress(page: Page) -> tuple[int, int]:
    """(value, max) of the job's progress bar, as the page shows it."""
    value, maximum = page.get_by_role("progressbar", name="Progress of the job").evaluate(
        "bar => [bar.value, bar.max]"
    )
    return int(value), int(maximum)


def test_the_bar_of_a_20000_record_job_moves_live_and_finishes(
    open_tab_on, tenant, settings, service, screenshots: Path
):
    records = customers(unique_prefix(), TOTAL)
    tab = open_tab_on(DESKTOP)
    page = tab.page
    log_in(tab, tenant.api_key)
    text = page.locator("#job-progress-text")
    with a_batch_held_on(settings, tenant.tenant_id, records[TOTAL * 3 // 5]["externalId"]) as held:
        with workers_paused(service):
            job_id = submit(tenant, records)
            page.goto(tab.url(f"#/jobs/{job_id}"))
            expect(text).to_have_text(f"0 of {TOTAL:,}")
            assert shown_progress(page) == (0, TOTAL)
            assert job_row(settings, job_id)["processed"] == 0

        poll(held, 120, "a batch of the job to wait on the held key", interval=0.05)
        poll(lambda: job_row(settings, job_id)["processed"] > 0, 120, "other batches written")
        with workers_paused(service):  # the job row stands still: the page must catch up to it
            stored = job_row(settings, job_id)
            assert 0 < stored["processed"] < TOTAL and stored["status"] == "STARTED"
            expect(text).to_have_text(f"{stored['processed']:,} of {TOTAL:,}")
            assert shown_progress(page) == (stored["processed"], TOTAL)
            expect(page.locator(".status")).to_have_text("started")
            expect(page.locator("#job-pace")).to_have_text(re.compile(r"^[\d,]+ records/s"))
            expect(page.get_by_role("button", name="Cancel job")).to_be_visible()
            screenshot(page, screenshots, "job-running-desktop")

    expect(page.locator(".status")).to_have_text("completed", timeout=120_000)
    expect(text).to_have_text(f"{TOTAL:,} of {TOTAL:,}")
    assert shown_progress(page) == (TOTAL, TOTAL)
    expect(page.locator("#job-pace")).to_have_text("")
    expect(page.get_by_role("button", name="Download report (CSV)")).to_be_visible()
    expect(page.locator("#codes-title + p")).to_have_text("No failed or skipped records.")
    stored = job_row(settings, job_id)
    assert stored == {
        "status": "COMPLETED",
        "total": TOTAL,
        "processed": TOTAL,
        "successful": TOTAL,
        "failed": 0,
        "skipped": 0,
    }
    assert outcome_counts(settings, job_id) == {("CREATED", None): TOTAL}


# --- error breakdown and report -------------------------------------------------------------------

HEADER = [
    "externalId",
    "firstName",
    "lastName",
    "email",
    "addresses.0.type",
    "addresses.0.line1",
    "addresses.0.city",
    "addresses.0.country",
]
ROWS = 400
FAULTS = {  # every n-th row gets this fault (the first match wins)
    9: ("email", "not-an-email"),  # InvalidFormat
    23: ("lastName", ""),  # MissingRequiredField
    31: ("addresses.0.country", "ZZ"),  # InvalidValue
    47: ("addresses.0.type", "castle"),  # InvalidReference
}


def faulty_customers_csv(prefix: str) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, HEADER, lineterminator="\n")
    writer.writeheader()
    for i in range(ROWS):
        row = {
            "externalId": f"{prefix}-{i}",
            "firstName": "Grace",
            "lastName": f"Hopper-{i}",
            "email": f"g{i}@example.com",
            "addresses.0.type": "home",
            "addresses.0.line1": f"{i} Navy Yard",
            "addresses.0.city": "Arlington",
            "addresses.0.country": "US",
        }
        for every, (column, value) in FAULTS.items():
            if i % every == every - 1:
                row[column] = value
                break
        if i in (100, 200):  # the same key again: DuplicateKey on insert
            row["externalId"] = f"{prefix}-0"
        writer.writerow(row)
    return out.getvalue().encode()


def imported_with_errors(tenant: Any) -> dict[str, Any]:
    profile = uploaded(tenant.api, faulty_customers_csv(unique_prefix()))
    answer = tenant.api.post(
        "/api/v1/imports",
        {"file_id": profile["file_id"], "entity": "customers", "operation": "insert"},
    )
    assert answer.status == 202, answer.body
    done = tenant.api.wait_terminal(answer.json()["job_id"], timeout=120)
    assert done["status"] == "COMPLETED_WITH_ERRORS", done
    return done


def stored_failures(settings: Any, job_id: str) -> list[tuple[int, str]]:
    rows = query(
        settings,
        "SELECT index, error_code FROM record_outcomes WHERE job_id = %s "
        "AND status IN ('FAILED', 'SKIPPED') ORDER BY index",
        job_id,
    )
    return [(int(index), str(code)) for index, code in rows]


def test_the_error_breakdown_first_errors_and_downloads_match_the_ledger(
    open_tab_on, tenant, settings, screenshots: Path
):
    done = imported_with_errors(tenant)
    job_id = done["job_id"]
    failures = stored_failures(settings, job_id)
    by_code: dict[str, int] = {}
    for _, code in failures:
        by_code[code] = by_code.get(code, 0) + 1
    assert set(by_code) == {
        "InvalidFormat",
        "MissingRequiredField",
        "InvalidValue",
        "InvalidReference",
        "DuplicateKey",
    }

    for name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        tab = open_tab_on(viewport)
        page = tab.page
        log_in(tab, tenant.api_key, f"#/jobs/{job_id}")
        expect(page.locator(".status")).to_have_text("completed with errors")
        chart = page.locator("table.bars tbody tr")
        expect(chart).to_have_count(len(by_code))
        shown = {
            row.locator("th").inner_text(): int(row.locator(".value").inner_text().replace(",", ""))
            for row in chart.all()
        }
        assert shown == by_code
        codes_in_order = [row.get_attribute("data-code") for row in chart.all()]
        assert codes_in_order == sorted(by_code, key=lambda code: -by_code[code])
        widths = chart.locator(".fill").evaluate_all("bars => bars.map(b => b.offsetWidth)")
        assert widths == sorted(widths, reverse=True) and widths[0] > widths[-1] > 0

        first = page.locator("table.errors tbody tr")
        expect(first).to_have_count(min(100, len(failures)))
        cells = first.first.locator("td")
        assert cells.nth(0).inner_text().endswith(str(failures[0][0]))
        assert cells.nth(3).inner_text().endswith(failures[0][1])
        shown_lines = first.locator("td[data-label='Line']").all_inner_texts()
        assert all(re.search(r"\d+$", line) for line in shown_lines), "file rows have lines"

        check_layout(page)
        assert serious_accessibility_findings(page) == []
        screenshot(page, screenshots, f"job-errors-{name}")

    with page.expect_download() as report_download:
        page.get_by_role("button", name="Download report (CSV)").click()
    report = report_download.value
    assert report.suggested_filename == f"job-{job_id}-report.csv"
    rows = list(csv.DictReader(io.StringIO(Path(report.path()).read_text(encoding="utf-8-sig"))))
    assert [(int(row["index"]), row["errorCode"]) for row in rows] == failures
    expect(page.locator("#job-notice")).to_have_text(f"Downloaded job-{job_id}-report.csv.")

    with page.expect_download() as results_download:
        page.get_by_role("button", name="Download results (ZIP)").click()
    with zipfile.ZipFile(results_download.value.path()) as archive:
        [member] = archive.namelist()
        lines = archive.read(member).decode("utf-8-sig").splitlines()
    assert len(lines) == 1 + ROWS, "a header and one line per record"


# --- cancel ---------------------------------------------------------------------------------------


def _diagnosis(settings: Any, service: Any, job_id: str) -> str:
    """What a stuck cancel test needs to be understood from CI's output alone."""
    owners = owned_partitions(settings)
    return (
        f"job row: {job_row(settings, job_id)}\n"
        f"its progress partition: {job_partition(settings, job_id)}\n"
        f"the group's partitions: {owners}\nrestarts: {service.restarts}\n{service.logs()}"
    )


def test_a_running_job_is_cancelled_from_its_page(open_tab_on, tenant, settings, service):
    # One worker is held, so the big job's batches on its partitions are certainly unwritten
    # at the cancel, and the cancel ends the job without waiting for them.
    restarts = len(service.restarts)
    records = customers(unique_prefix(), TOTAL)
    tab = open_tab_on(PHONE)
    page = tab.page
    log_in(tab, tenant.api_key)
    with a_worker_held(settings, tenant) as blocker_id:
        job_id = submit(tenant, records)
        try:
            poll(lambda: job_row(settings, job_id)["processed"] > 0, 120, "other batches written")
        except AssertionError as error:  # once, in CI, for a cause its output did not show
            raise AssertionError(f"{error}\n{_diagnosis(settings, service, job_id)}") from None
        page.goto(tab.url(f"#/jobs/{job_id}"))
        expect(page.locator(".status")).to_have_text("started")
        page.get_by_role("button", name="Cancel job").click()
        confirm = page.get_by_role("alertdialog")
        expect(confirm).to_contain_text("Cancel this job?")
        check_layout(page)
        assert serious_accessibility_findings(page) == []
        page.get_by_role("button", name="Yes, cancel the job").click()
        expect(page.locator("#job-notice")).to_have_text(
            "Cancel requested: records not written yet will be skipped."
        )
        [(requested,)] = query(
            settings, "SELECT cancel_requested_at FROM jobs WHERE job_id = %s", job_id
        )
        assert requested is not None
        expect(page.locator(".status")).to_have_text("cancelled", timeout=120_000)
        stored = job_row(settings, job_id)
        assert job_row(settings, blocker_id)["processed"] == 0, "the worker was held throughout"
        assert service.restarts[restarts:] == [], "held, not restarted by its stall watchdog"

    assert stored["status"] == "CANCELLED"
    assert stored["processed"] == TOTAL == stored["successful"] + stored["skipped"]
    assert stored["skipped"] > 0 and stored["failed"] == 0
    poll(lambda: job_row(settings, blocker_id)["successful"] == 1, 120, "the held job to finish")
    assert outcome_counts(settings, job_id) == {
        ("CREATED", None): stored["successful"],
        ("SKIPPED", "JobCancelled"): stored["skipped"],
    }
    expect(page.locator("#job-progress-text")).to_have_text(f"{TOTAL:,} of {TOTAL:,}")
    bar = page.locator("table.bars tbody tr")
    expect(bar).to_have_count(1)
    expect(bar.locator("th")).to_have_text("JobCancelled")
    expect(bar.locator(".value")).to_have_text(f"{stored['skipped']:,}")
    expect(page.get_by_role("button", name="Cancel job")).to_have_count(0)
    check_layout(page)
