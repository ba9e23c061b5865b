"""Fix and retry, end to end: ``POST /jobs/{id}/retry`` and ``POST /imports`` with ``retry_of``.

A retry is a child job of a terminal job's failed and skipped records; the parent never
changes. The round trip a user makes with a spreadsheet is driven with Python's csv module:
download the failure report, fix the failing cells, upload it, import it naming the parent.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest

from tests.e2e.test_jobs_cli import cli, finished
from tests.support.imports import db, uploaded
from tests.support.jobs import a_worker_held
from tests.support.records import customer, unique_prefix

pytestmark = pytest.mark.e2e

ASYNC = "/api/v1/customers/bulk/async"
REPORT_COLUMNS = ["index", "externalId", "errorCode", "failureReason", "record"]
PHONE = "+44 20 7946 0958"
FORMULA = "=cmd|' /C calc'!A0"
SUM = "+SUM(A1)"
HEADER = ["Customer No", "Given Name", "Surname", "Phone", "Street", "City", "Country", "Kind"]
MAPPING = {
    "Customer No": "externalId",
    "Given Name": "firstName",
    "Surname": "lastName",
    "Phone": "phone",
    "Street": "addresses.0.line1",
    "City": "addresses.0.city",
    "Country": "addresses.0.country",
    "Kind": "addresses.0.type",
}


def retry(tenant: Any, job_id: str, body: Any = None, **kwargs: Any) -> Any:
    return tenant.api.post(f"/api/v1/jobs/{job_id}/retry", body, **kwargs)


def first_error(answer: Any) -> dict[str, Any]:
    return dict(answer.json()["errors"][0])


def finished_job(tenant: Any, records: list[dict[str, Any]]) -> dict[str, Any]:
    answer = tenant.api.post(ASYNC, {"records": records})
    assert answer.status == 202, answer.body
    return tenant.api.wait_terminal(answer.json()["job_id"])


def submitted(settings: Any, job_id: str) -> list[tuple[int, str | None, str]]:
    """(index, key, status) of every record of the job, from the ledger."""
    rows = db(
        settings,
        "SELECT index, key, status FROM record_outcomes WHERE job_id = %s ORDER BY index",
        job_id,
    )
    return [(int(i), k, s) for i, k, s in rows]


# --- a JSON job -----------------------------------------------------------------------------------


def test_a_retry_sends_the_failed_records_again_in_order_and_codes_narrow_it(
    tenant, make_tenant, settings
):
    prefix = unique_prefix()
    taken = [customer(f"{prefix}-taken-{i}") for i in range(2)]
    assert tenant.api.post("/api/v1/customers/bulk", {"records": taken}).status == 200
    moon = [{"type": "moon", "line1": "1 Crater", "city": "Tycho", "country": "GB"}]
    records = [
        customer(f"{prefix}-ok-0"),
        taken[0],  # DuplicateKey
        customer(f"{prefix}-moon", addresses=moon),  # InvalidReference
        taken[1],  # DuplicateKey
        customer(f"{prefix}-ok-1"),
    ]
    parent = finished_job(tenant, records)
    assert (parent["status"], parent["failed"]) == ("COMPLETED_WITH_ERRORS", 3)
    assert parent["parent_job_id"] is None

    narrowed = retry(tenant, parent["job_id"], {"codes": ["InvalidReference"]})
    assert narrowed.status == 202, narrowed.body
    child = narrowed.json()
    assert narrowed.headers["Location"] == f"/api/v1/jobs/{child['job_id']}"
    assert (child["parent_job_id"], child["total"]) == (parent["job_id"], 1)
    assert (child["entity"], child["operation"]) == ("customers", "insert")
    done = tenant.api.wait_terminal(child["job_id"])
    assert [(e["index"], e["external_id"], e["errorCode"]) for e in done["errors"]] == [
        (0, f"{prefix}-moon", "InvalidReference")
    ]

    everything = retry(tenant, parent["job_id"], headers={"Content-Length": "0"})
    assert everything.status == 202, everything.body
    second = tenant.api.wait_terminal(everything.json()["job_id"])
    assert second["total"] == 3
    assert [(i, k) for i, k, _ in submitted(settings, second["job_id"])] == [
        (0, taken[0]["externalId"]),
        (1, f"{prefix}-moon"),
        (2, taken[1]["externalId"]),
    ]
    kept = db(
        settings,
        "SELECT record FROM record_outcomes WHERE job_id = %s AND index = 1",
        second["job_id"],
    )
    assert kept[0][0]["addresses"][0]["type"] == "moon", "the record as submitted"

    listed = tenant.api.get(f"/api/v1/jobs?parent_job_id={parent['job_id']}&limit=1").json()
    assert [j["job_id"] for j in listed["jobs"]] == [second["job_id"]], "newest first"
    rest = tenant.api.get(
        f"/api/v1/jobs?parent_job_id={parent['job_id']}&cursor={listed['next_cursor']}"
    ).json()
    assert [j["job_id"] for j in rest["jobs"]] == [child["job_id"]]
    assert rest["next_cursor"] is None
    again = tenant.api.get(f"/api/v1/jobs/{parent['job_id']}").json()
    assert again == parent, "the parent never changes"

    other = make_tenant()
    assert retry(other, parent["job_id"]).status == 404
    assert other.api.get(f"/api/v1/jobs?parent_job_id={parent['job_id']}").json()["jobs"] == []


def test_retry_refuses_bad_codes_and_jobs_with_nothing_to_retry(tenant):
    prefix = unique_prefix()
    clean = finished_job(tenant, [customer(f"{prefix}-0")])
    assert clean["status"] == "COMPLETED"
    nothing = retry(tenant, clean["job_id"])
    assert (nothing.status, first_error(nothing)["errorCode"]) == (422, "NothingToRetry")

    unknown = retry(tenant, clean["job_id"], {"codes": ["DuplicateKey", "Duplicate"]})
    assert unknown.status == 422
    error = first_error(unknown)
    assert (error["errorCode"], error["field"]) == ("InvalidParameter", "codes.1")
    assert "'Duplicate'" in error["message"]
    empty = retry(tenant, clean["job_id"], {"codes": []})
    assert (empty.status, first_error(empty)["field"]) == (422, "codes")
    broken = tenant.api.request(
        "POST",
        f"/api/v1/jobs/{clean['job_id']}/retry",
        data=b'{"codes": [',
        headers={"Content-Type": "application/json"},
    )
    assert (broken.status, first_error(broken)["errorCode"]) == (422, "InvalidJson")

    failing = finished_job(tenant, [customer(f"{prefix}-0")])  # DuplicateKey
    other_code = retry(tenant, failing["job_id"], {"codes": ["InvalidReference"]})
    assert other_code.status == 422
    assert first_error(other_code)["errorCode"] == "NothingToRetry"
    assert "DuplicateKey (1)" in first_error(other_code)["message"]

    malformed = tenant.api.get("/api/v1/jobs?parent_job_id=not-a-job")
    assert (malformed.status, first_error(malformed)["errorCode"]) == (422, "InvalidParameter")


def test_a_job_still_running_cannot_be_retried(tenant, settings):
    with a_worker_held(settings, tenant) as held_job:
        running = retry(tenant, held_job)
        assert running.status == 409, running.body
        assert first_error(running)["errorCode"] == "JobNotTerminal"
        imported = tenant.api.post("/api/v1/imports", {"file_id": "0" * 32, "retry_of": held_job})
        assert imported.status == 422, "a JSON job has no failure report to import"
        assert "not a file import" in first_error(imported)["message"]


# --- a file import, fixed in a spreadsheet --------------------------------------------------------


def customers_file(prefix: str) -> bytes:
    rows = [
        [f"{prefix}-0", "Ada", "Lovelace", PHONE, "1 Sq", "London", "GB", "home"],
        [f"{prefix}-1", "Grace", "Hopper", PHONE, "2 Sq", "London", "XX", "home"],  # country
        [f"{prefix}-2", FORMULA, "Formula", "", "3 Sq", "London", "ZZ", "home"],  # country
        [f"{prefix}-3", SUM, "Sum", PHONE, "4 Sq", "London", "GB", "moon"],  # address type
        [f"{prefix}-4", "Alan", "Turing", "", "5 Sq", "London", "GB", "work"],
    ]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(HEADER)
    writer.writerows(rows)
    return out.getvalue().encode()


def fixed(report: str) -> bytes:
    """What a user does in a spreadsheet: set every failing row's country and type right."""
    rows = list(csv.reader(io.StringIO(report)))
    header = rows[0]
    country, kind = header.index("Country"), header.index("Kind")
    for row in rows[1:]:
        row[country], row[kind] = "GB", "home"
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue().encode()


def test_a_fixed_failure_report_imports_with_the_parents_mapping(tenant, make_tenant, settings):
    prefix = unique_prefix()
    upload = uploaded(tenant.api, customers_file(prefix))
    started = tenant.api.post(
        "/api/v1/imports",
        {"file_id": upload["file_id"], "entity": "customers", "field_mappings": MAPPING},
    )
    assert started.status == 202, started.body
    parent = tenant.api.wait_terminal(started.json()["job_id"], timeout=120)
    assert (parent["status"], parent["failed"]) == ("COMPLETED_WITH_ERRORS", 3)

    report = tenant.api.get(f"/api/v1/jobs/{parent['job_id']}/report").body.decode("utf-8")
    rows = list(csv.reader(io.StringIO(report)))
    assert rows[0] == REPORT_COLUMNS + HEADER, "the source columns follow the report's own"
    by_key = {row[1]: dict(zip(rows[0][5:], row[5:], strict=True)) for row in rows[1:]}
    assert sorted(by_key) == [f"{prefix}-1", f"{prefix}-2", f"{prefix}-3"]
    assert by_key[f"{prefix}-1"]["Phone"] == "'" + PHONE, "escaped against formulas"
    assert by_key[f"{prefix}-2"]["Given Name"] == "'" + FORMULA

    refix = uploaded(tenant.api, fixed(report))
    answer = tenant.api.post(
        "/api/v1/imports", {"file_id": refix["file_id"], "retry_of": parent["job_id"]}
    )
    assert answer.status == 202, answer.body
    assert answer.json()["parent_job_id"] == parent["job_id"]
    child = tenant.api.wait_terminal(answer.json()["job_id"], timeout=120)
    assert (child["status"], child["total"], child["source"]) == ("COMPLETED", 3, "file")

    stored = db(
        settings,
        "SELECT external_id, first_name, phone, addresses FROM customers WHERE tenant_id = %s "
        "ORDER BY external_id",
        tenant.tenant_id,
    )
    assert [(key, name, phone) for key, name, phone, _ in stored] == [
        (f"{prefix}-0", "Ada", PHONE),
        (f"{prefix}-1", "Grace", PHONE),
        (f"{prefix}-2", FORMULA, None),
        (f"{prefix}-3", SUM, PHONE),
        (f"{prefix}-4", "Alan", None),
    ]
    addresses = {key: a[0] for key, _, _, a in stored}
    assert addresses[f"{prefix}-2"]["country"] == "GB"
    assert (addresses[f"{prefix}-3"]["type"], addresses[f"{prefix}-3"]["line1"]) == (
        "home",
        "4 Sq",
    )
    listed = tenant.api.get(f"/api/v1/jobs?parent_job_id={parent['job_id']}").json()["jobs"]
    assert [j["job_id"] for j in listed] == [child["job_id"]]
    assert tenant.api.get(f"/api/v1/jobs/{parent['job_id']}").json() == parent

    unchanged = retry(tenant, parent["job_id"])  # the converted records, sent as they were
    assert unchanged.status == 202, unchanged.body
    assert (unchanged.json()["source"], unchanged.json()["total"]) == ("api", 3)
    assert tenant.api.wait_terminal(unchanged.json()["job_id"])["status"] == "FAILED"

    other = make_tenant()
    theirs = uploaded(other.api, fixed(report))
    foreign = other.api.post(
        "/api/v1/imports", {"file_id": theirs["file_id"], "retry_of": parent["job_id"]}
    )
    assert (foreign.status, first_error(foreign)["field"]) == (422, "retry_of")
    assert "There is no job" in first_error(foreign)["message"]
    json_parent = finished_job(tenant, [customer(f"{prefix}-0")])
    not_file = tenant.api.post(
        "/api/v1/imports", {"file_id": refix["file_id"], "retry_of": json_parent["job_id"]}
    )
    assert (not_file.status, first_error(not_file)["field"]) == (422, "retry_of")
    assert json.loads(not_file.body)["errors"][0]["errorCode"] == "InvalidParameter"


def test_the_cli_retries_a_job_and_lists_its_retries(tenant, service):
    prefix = unique_prefix()
    assert finished_job(tenant, [customer(f"{prefix}-0")])["status"] == "COMPLETED"
    parent = finished_job(tenant, [customer(f"{prefix}-0"), customer(f"{prefix}-1")])
    code, out, err = finished(
        cli(
            service,
            tenant,
            "retry",
            parent["job_id"],
            "--codes",
            "DuplicateKey",
            "--wait",
            "--json",
        )
    )
    assert code == 1, err  # the duplicate fails again: the child ends FAILED
    child = json.loads(out)
    assert (child["parent_job_id"], child["status"], child["total"]) == (
        parent["job_id"],
        "FAILED",
        1,
    )
    code, out, err = finished(cli(service, tenant, "list", "--parent", parent["job_id"], "--json"))
    assert code == 0, err
    assert [j["job_id"] for j in json.loads(out)["jobs"]] == [child["job_id"]]
