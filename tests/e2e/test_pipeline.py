"""The ingestion pipeline end to end: HTTP against real gateway and worker subprocesses."""

from __future__ import annotations

import psycopg
import pytest

from tests.support.http import Api
from tests.support.records import customer, customers, product, unique_prefix

ASYNC = "/api/v1/customers/bulk/async"
SYNC = "/api/v1/customers/bulk"


def _rows(settings, table: str, tenant_id: str, key_column: str = "external_id") -> dict:
    with psycopg.connect(settings.libpq_url) as conn:
        rows = conn.execute(
            f"SELECT {key_column}, first_name FROM {table} WHERE tenant_id = %s"
            if table == "customers"
            else f"SELECT {key_column}, price FROM {table} WHERE tenant_id = %s",
            [tenant_id],
        ).fetchall()
    return dict(rows)


def _ledger_stats(settings, job_id: str) -> tuple[int, int]:
    with psycopg.connect(settings.libpq_url) as conn:
        return conn.execute(
            "SELECT count(*), count(DISTINCT index) FROM record_outcomes WHERE job_id = %s",
            [job_id],
        ).fetchone()


def test_5000_customers_with_3_semantic_failures(tenant, settings):
    prefix = unique_prefix()
    records = customers(prefix, 5000)
    records[17]["addresses"][0]["type"] = "moon"
    records[2500]["importantDates"][0]["date"] = "2023-02-30"
    records[4999]["addresses"][0]["country"] = "XX"

    accepted = tenant.api.post(ASYNC, {"records": records})
    assert accepted.status == 202, accepted.body
    job = accepted.json()
    assert accepted.headers["Location"] == f"/api/v1/jobs/{job['job_id']}"
    assert job["status"] in ("PENDING", "READY", "STARTED") and job["total"] == 5000

    done = tenant.api.wait_terminal(job["job_id"])
    assert done["status"] == "COMPLETED_WITH_ERRORS"
    assert (done["total"], done["processed"], done["successful"], done["failed"]) == (
        5000,
        5000,
        4997,
        3,
    )
    assert [(e["index"], e["errorCode"], e["external_id"]) for e in done["errors"]] == [
        (17, "InvalidReference", f"{prefix}-17"),
        (2500, "InvalidValue", f"{prefix}-2500"),
        (4999, "InvalidValue", f"{prefix}-4999"),
    ]
    assert done["report_url"].endswith("/report") and done["completed_at"]
    stored = _rows(settings, "customers", tenant.tenant_id)
    assert len(stored) == 4997
    assert f"{prefix}-17" not in stored and f"{prefix}-0" in stored
    assert _ledger_stats(settings, job["job_id"]) == (5000, 5000)


def test_insert_of_existing_keys_fails_every_record(tenant):
    prefix = unique_prefix()
    first = tenant.api.post(SYNC, {"records": customers(prefix, 20)})
    assert first.status == 200 and first.json()["status"] == "COMPLETED"
    again = tenant.api.post(SYNC, {"records": customers(prefix, 20)})
    body = again.json()
    assert body["status"] == "FAILED" and body["failed"] == 20
    assert {r["errorCode"] for r in body["results"]} == {"DuplicateKey"}


def test_same_key_twice_in_one_insert_job_fails_the_later_one(tenant):
    prefix = unique_prefix()
    records = [customer(f"{prefix}-a"), customer(f"{prefix}-b"), customer(f"{prefix}-a")]
    body = tenant.api.post(SYNC, {"records": records}).json()
    assert [r["status"] for r in body["results"]] == ["CREATED", "CREATED", "FAILED"]
    assert body["results"][2]["errorCode"] == "DuplicateKey"


def test_update_of_missing_key_is_record_not_found(tenant):
    prefix = unique_prefix()
    body = tenant.api.put(SYNC, {"records": customers(prefix, 3)}).json()
    assert body["operation"] == "update" and body["status"] == "FAILED"
    assert {r["errorCode"] for r in body["results"]} == {"RecordNotFound"}


def test_upsert_updates_existing_rows_and_reports_unchanged(tenant, settings):
    prefix = unique_prefix()
    tenant.api.post(SYNC, {"records": customers(prefix, 10)})
    changed = customers(prefix, 10)
    for record in changed[:4]:
        record["firstName"] = "Grace"
    changed.append(customer(f"{prefix}-new"))
    body = tenant.api.post(SYNC, {"records": changed, "operation": "upsert"}).json()
    assert body["status"] == "COMPLETED"
    statuses = [r["status"] for r in body["results"]]
    assert statuses == ["UPDATED"] * 4 + ["UNCHANGED"] * 6 + ["CREATED"]
    stored = _rows(settings, "customers", tenant.tenant_id)
    assert stored[f"{prefix}-0"] == "Grace" and stored[f"{prefix}-9"] == "Ada"


def test_sync_bulk_returns_results_in_input_order(tenant):
    prefix = unique_prefix()
    answer = tenant.api.post(SYNC, {"records": customers(prefix, 100)})
    assert answer.status == 200
    body = answer.json()
    assert body["status"] == "COMPLETED"
    assert [r["index"] for r in body["results"]] == list(range(100))
    assert [r["external_id"] for r in body["results"]] == [f"{prefix}-{i}" for i in range(100)]
    assert all(r["status"] == "CREATED" and r["id"] for r in body["results"])


def test_sync_bulk_over_1000_records_points_to_async(tenant):
    answer = tenant.api.post(SYNC, {"records": customers(unique_prefix(), 1001)})
    assert answer.status == 422
    error = answer.json()["errors"][0]
    assert error["errorCode"] == "MaxRecordsExceeded" and "/bulk/async" in error["message"]


BAD_REQUESTS = [
    ({"records": []}, "EmptyRequest", None, "records"),
    ({"records": [{"externalId": "x", "lastName": "L"}]}, "MissingRequiredField", 0, "firstName"),
    ({"records": [customer("x", firstName=5)]}, "InvalidFieldType", 0, "firstName"),
    ({"records": [customer("x", email="not-an-email")]}, "InvalidFormat", 0, "email"),
    ({"records": [customer("x", shoeSize=44)]}, "UnknownField", 0, "shoeSize"),
    ({"records": [customer("x")], "operation": "merge"}, "InvalidOperation", None, "operation"),
    (
        {"records": [customer("x")], "webhook_url": "ftp://x"},
        "InvalidWebhookUrl",
        None,
        "webhook_url",
    ),
]


@pytest.mark.parametrize(
    ("body", "code", "index", "field"), BAD_REQUESTS, ids=[c for _, c, _, _ in BAD_REQUESTS]
)
def test_each_basic_error_is_a_422_naming_index_and_field(
    tenant, settings, body, code, index, field
):
    answer = tenant.api.post(ASYNC, body)
    assert answer.status == 422, answer.body
    error = answer.json()["errors"][0]
    assert error["errorCode"] == code and error["message"] and error["moreInfo"]
    assert error.get("index") == index and error.get("field") == field
    listed = tenant.api.get("/api/v1/jobs").json()["jobs"]
    assert listed == []  # nothing was kept


def test_invalid_json_unknown_entity_and_max_records(tenant):
    raw = tenant.api.request(
        "POST", ASYNC, data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert raw.status == 422 and raw.json()["errors"][0]["errorCode"] == "InvalidJson"
    unknown = tenant.api.post("/api/v1/spaceships/bulk/async", {"records": [{}]})
    assert unknown.json()["errors"][0]["errorCode"] == "UnknownEntity"
    too_many = tenant.api.post(ASYNC, {"records": [{}] * 50_001})
    assert (
        too_many.status == 422 and too_many.json()["errors"][0]["errorCode"] == "MaxRecordsExceeded"
    )


def test_errors_are_capped_at_100_first_encountered_first(tenant):
    records = [{"externalId": f"x{i}"} for i in range(80)]  # two missing fields each
    errors = tenant.api.post(ASYNC, {"records": records}).json()["errors"]
    assert len(errors) == 100
    assert errors[0]["index"] == 0 and errors[-1]["index"] == 49


def test_tenant_isolation_and_authentication(make_tenant, service):
    alice, bob = make_tenant(), make_tenant()
    job = alice.api.post(ASYNC, {"records": customers(unique_prefix(), 2)}).json()
    assert bob.api.get(f"/api/v1/jobs/{job['job_id']}").status == 404
    assert all(j["job_id"] != job["job_id"] for j in bob.api.get("/api/v1/jobs").json()["jobs"])
    anonymous = Api(service.base_url)
    missing = anonymous.get(f"/api/v1/jobs/{job['job_id']}")
    assert missing.status == 401 and missing.json()["errors"][0]["errorCode"] == "Unauthorized"
    wrong = Api(service.base_url, "bik_not-a-key").get("/api/v1/jobs")
    assert wrong.status == 401


def test_idempotency_key_replays_and_rejects_a_different_body(tenant):
    prefix = unique_prefix()
    headers = {"Idempotency-Key": f"order-{prefix}"}
    body = {"records": customers(prefix, 5)}
    first = tenant.api.post(ASYNC, body, headers=headers)
    replay = tenant.api.post(ASYNC, body, headers=headers)
    assert first.status == replay.status == 202
    assert replay.json()["job_id"] == first.json()["job_id"]
    assert replay.headers.get("Idempotent-Replayed") == "true"
    other = tenant.api.post(ASYNC, {"records": customers(prefix, 6)}, headers=headers)
    assert other.status == 409 and other.json()["errors"][0]["errorCode"] == "IdempotencyKeyReused"
    assert tenant.api.wait_terminal(first.json()["job_id"])["successful"] == 5


def test_products_flow_through_the_same_pipeline(tenant, settings):
    prefix = unique_prefix()
    records = [product(f"{prefix}-{i}") for i in range(30)]
    records[4]["currency"] = "XYZ"
    body = tenant.api.post("/api/v1/products/bulk", {"records": records}).json()
    assert body["status"] == "COMPLETED_WITH_ERRORS" and body["failed"] == 1
    assert body["errors"][0]["index"] == 4 and body["errors"][0]["errorCode"] == "InvalidValue"
    upsert = [product(f"{prefix}-{i}", price=10.5) for i in range(3)]
    again = tenant.api.post(
        "/api/v1/products/bulk", {"records": upsert, "operation": "upsert"}
    ).json()
    assert [r["status"] for r in again["results"]] == ["UPDATED"] * 3
    assert _rows(settings, "products", tenant.tenant_id, "sku")[f"{prefix}-0"] == 10.5


def test_job_listing_is_newest_first_with_a_cursor(tenant):
    ids = [
        tenant.api.post(ASYNC, {"records": customers(unique_prefix(), 1)}).json()["job_id"]
        for _ in range(3)
    ]
    page = tenant.api.get("/api/v1/jobs?limit=2").json()
    assert [j["job_id"] for j in page["jobs"]] == ids[::-1][:2]
    rest = tenant.api.get(f"/api/v1/jobs?limit=2&cursor={page['next_cursor']}").json()
    assert [j["job_id"] for j in rest["jobs"]] == [ids[0]] and rest["next_cursor"] is None


def test_a_body_over_the_limit_is_a_clear_413(tenant, settings):
    body = b'{"records": [' + b" " * settings.max_body_bytes + b"]}"
    answer = tenant.api.request(
        "POST", ASYNC, data=body, headers={"Content-Type": "application/json"}
    )
    assert answer.status == 413
    error = answer.json()["errors"][0]
    assert error["errorCode"] == "PayloadTooLarge" and "split" in error["message"]
