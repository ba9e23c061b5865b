"""What the dashboard reads besides jobs: the error breakdown by code and the entities' field
paths, against the real gateway and the ledger."""

from __future__ import annotations

import psycopg
import pytest

from tests.support.records import customers, unique_prefix

pytestmark = pytest.mark.e2e


def test_error_codes_count_the_ledger(tenant, make_tenant, settings):
    records = customers(unique_prefix(), 400)
    for i in (3, 50, 99):
        records[i]["addresses"][0]["type"] = "moon"
    records[120]["addresses"][0]["country"] = "XX"
    accepted = tenant.api.post("/api/v1/customers/bulk/async", {"records": records})
    job_id = accepted.json()["job_id"]
    tenant.api.wait_terminal(job_id)
    answer = tenant.api.get(f"/api/v1/jobs/{job_id}/error-codes")
    with psycopg.connect(settings.libpq_url) as conn:
        stored = conn.execute(
            "SELECT error_code, count(*) FROM record_outcomes WHERE job_id = %s "
            "AND error_code IS NOT NULL GROUP BY error_code",
            [job_id],
        ).fetchall()
    assert answer.status == 200
    codes = answer.json()["codes"]
    assert {c["errorCode"]: c["count"] for c in codes} == dict(stored)
    assert sum(c["count"] for c in codes) == 4
    assert [c["count"] for c in codes] == sorted((c["count"] for c in codes), reverse=True)
    assert make_tenant().api.get(f"/api/v1/jobs/{job_id}/error-codes").status == 404


def test_entities_are_listed_and_described(tenant):
    listed = tenant.api.get("/api/v1/entities")
    assert listed.status == 200
    names = [e["name"] for e in listed.json()["entities"]]
    assert names == sorted(names) and {"customers", "products"} <= set(names)
    customers_ = tenant.api.get("/api/v1/entities/customers").json()
    assert customers_["key"] == "externalId"
    key = next(f for f in customers_["fields"] if f["path"] == "externalId")
    assert (key["type"], key["required"]) == ("string", True)
    assert "1-64 characters" in key["rules"]
    unknown = tenant.api.get("/api/v1/entities/planets")
    assert unknown.status == 404
    assert unknown.json()["errors"][0]["errorCode"] == "UnknownEntity"
    anonymous = tenant.api.get("/api/v1/entities", headers={"Authorization": ""})
    assert anonymous.status == 401
