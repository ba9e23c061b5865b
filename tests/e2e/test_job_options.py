"""Job options end to end (design.md §8 "More job options"): defaults, dry run, the error-rate
breaker and ``"outcome_events": false``, over HTTP, in file imports and on ``bulk.requests``,
against the real service. Every place a record's fate is kept is read back: the entity table,
the ledger, the job's counts, ``bulk.outcomes`` and ``bulk.jobs``.
"""

from __future__ import annotations

import csv
import io
import uuid
from typing import Any

import psycopg
import pytest

from domain.codec import load_codec
from domain.entities import default_schemas_dir
from tests.support.http import poll
from tests.support.imports import MAPPING, csv_text, imported, start, uploaded
from tests.support.jobs import a_worker_held
from tests.support.kafka import (
    avro_customer,
    chunk,
    dead_letters,
    headers_of,
    publish_chunks,
    read_to_end,
)
from tests.support.outcomes import outcome_events
from tests.support.records import customer, customers, unique_prefix

pytestmark = pytest.mark.e2e

ASYNC = "/api/v1/customers/bulk/async"
SYNC = "/api/v1/customers/bulk"
ROWS = 60_000


def rows_of(settings: Any, tenant_id: str, keys: list[str]) -> dict[str, dict[str, Any]]:
    with psycopg.connect(settings.libpq_url) as conn:
        found = conn.execute(
            "SELECT external_id, company, phone, addresses FROM customers "
            "WHERE tenant_id = %s AND external_id = ANY(%s)",
            [tenant_id, keys],
        ).fetchall()
    return {k: {"company": c, "phone": p, "addresses": a} for k, c, p, a in found}


def ledger(settings: Any, job_id: str) -> dict[int, tuple[str, str | None]]:
    with psycopg.connect(settings.libpq_url) as conn:
        found = conn.execute(
            "SELECT index, status, error_code FROM record_outcomes WHERE job_id = %s", [job_id]
        ).fetchall()
    return {int(i): (s, c) for i, s, c in found}


def results(tenant: Any, job_id: str) -> dict[int, tuple[str, str]]:
    answer = tenant.api.get(f"/api/v1/jobs/{job_id}/results?format=csv")
    assert answer.status == 200, answer.body
    reader = csv.DictReader(io.StringIO(answer.body.decode("utf-8-sig")))
    return {int(r["index"]): (r["status"], r["errorCode"]) for r in reader}


def job_events(settings: Any, job_id: str) -> list[str]:
    """The statuses ``bulk.jobs`` carried for the job, read from the start."""
    codec = load_codec(default_schemas_dir(), "bulk.jobs")
    events = [codec.decode(m.value()) for m in read_to_end(settings, settings.topics.jobs)]
    return [e["status"] for e in events if e["job_id"] == job_id]


def refusal(answer: Any) -> list[tuple[str, str | None]]:
    assert answer.status == 422, (answer.status, answer.body)
    return [(e["errorCode"], e.get("field")) for e in answer.json()["errors"]]


# --- defaults ---------------------------------------------------------------------------------


def test_defaults_fill_absent_and_null_fields_and_never_create_an_address(tenant, settings):
    prefix = unique_prefix()
    no_type = customer(
        f"{prefix}-0", addresses=[{"line1": "1 Rue", "city": "Lyon", "country": "FR"}]
    )
    no_addresses = customer(f"{prefix}-1", company=None)
    del no_addresses["addresses"]
    own_values = customer(f"{prefix}-2", company="Own Ltd", phone="+1 555 0100")
    body = {
        "records": [no_type, no_addresses, own_values],
        "defaults": {"company": "ACME", "phone": "+44 20 7946 0958", "addresses.0.type": "work"},
    }
    answer = tenant.api.post(SYNC, body)
    assert answer.status == 200, answer.body
    job = answer.json()
    assert job["status"] == "COMPLETED", job
    assert job["defaults"] == body["defaults"]
    stored = rows_of(settings, tenant.tenant_id, [f"{prefix}-{i}" for i in range(3)])
    assert stored[f"{prefix}-0"]["company"] == "ACME"
    assert stored[f"{prefix}-0"]["addresses"][0]["type"] == "work"  # required, from the default
    assert stored[f"{prefix}-1"]["company"] == "ACME"
    assert stored[f"{prefix}-1"]["addresses"] is None  # no address was created for the default
    assert stored[f"{prefix}-2"]["company"] == "Own Ltd"
    assert stored[f"{prefix}-2"]["phone"] == "+1 555 0100"


def test_bad_options_are_refused_before_anything_is_kept(tenant):
    records = [customer(f"{unique_prefix()}-0")]
    cases = [
        ({"defaults": {"email": "not-an-email"}}, [("InvalidFormat", "defaults.email")]),
        ({"defaults": {"nickname": "x"}}, [("UnknownField", "defaults.nickname")]),
        ({"max_error_rate": 1.5}, [("InvalidValue", "max_error_rate")]),
        ({"max_error_rate": 0.1, "min_records": 0}, [("InvalidValue", "min_records")]),
        ({"min_records": 10}, [("InvalidValue", "min_records")]),
        ({"dry_run": "yes"}, [("InvalidFieldType", "dry_run")]),
        ({"outcome_events": "no"}, [("InvalidFieldType", "outcome_events")]),
    ]
    for options, expected in cases:
        assert refusal(tenant.api.post(ASYNC, {"records": records, **options})) == expected
    # A record that needs a default the request does not give still fails as usual.
    untyped = customer(
        f"{unique_prefix()}-1", addresses=[{"line1": "1", "city": "X", "country": "FR"}]
    )
    assert refusal(tenant.api.post(ASYNC, {"records": [untyped]})) == [
        ("MissingRequiredField", "addresses.0.type")
    ]
    assert tenant.api.get("/api/v1/jobs").json()["jobs"] == []  # nothing was kept


def test_an_import_leaves_a_required_field_to_its_default(tenant, settings):
    prefix = unique_prefix()
    header = ["externalId", "firstName", "lastName", "Street", "City", "Country"]
    rows = [[f"{prefix}-{i}", "Zoë", f"Müller-{i}", f"{i} Rue", "Paris", "FR"] for i in range(20)]
    out = io.StringIO()
    csv.writer(out).writerows([header, *rows])
    file = uploaded(tenant.api, out.getvalue().encode())
    mappings = {
        "Street": "addresses.0.line1",
        "City": "addresses.0.city",
        "Country": "addresses.0.country",
    }
    unmapped = start(tenant.api, file["file_id"], field_mappings=mappings)
    assert refusal(unmapped) == [("MissingRequiredField", "addresses.0.type")]
    bad_default = start(
        tenant.api, file["file_id"], field_mappings=mappings, defaults={"addresses.0.type": 3}
    )
    assert refusal(bad_default) == [("InvalidFieldType", "defaults.addresses.0.type")]
    job = imported(
        tenant.api,
        file["file_id"],
        field_mappings=mappings,
        defaults={"addresses.0.type": "billing", "company": "Imported SA"},
    )
    assert (job["status"], job["successful"]) == ("COMPLETED", 20), job
    stored = rows_of(settings, tenant.tenant_id, [r[0] for r in rows])
    assert {r["addresses"][0]["type"] for r in stored.values()} == {"billing"}
    assert {r["company"] for r in stored.values()} == {"Imported SA"}


# --- outcome events ---------------------------------------------------------------------------


def test_outcome_events_false_sends_no_record_events_but_job_events(tenant, settings):
    prefix = unique_prefix()
    quiet = tenant.api.post(ASYNC, {"records": customers(prefix, 300), "outcome_events": False})
    loud = tenant.api.post(ASYNC, {"records": customers(f"{prefix}-l", 300)})
    assert quiet.status == loud.status == 202
    quiet_job = tenant.api.wait_terminal(quiet.json()["job_id"])
    loud_job = tenant.api.wait_terminal(loud.json()["job_id"])
    assert quiet_job["status"] == loud_job["status"] == "COMPLETED"
    assert quiet_job["outcome_events"] is False
    assert len(rows_of(settings, tenant.tenant_id, [f"{prefix}-{i}" for i in range(300)])) == 300
    assert len(ledger(settings, quiet_job["job_id"])) == 300
    bootstrap, topic = settings.kafka_bootstrap, settings.topics.outcomes
    # The reader is proven on the job beside it: all 300 of its events are there.
    assert len(outcome_events(bootstrap, topic, loud_job["job_id"], 300)) == 300
    assert outcome_events(bootstrap, topic, quiet_job["job_id"], 0, timeout=10) == {}
    assert "COMPLETED" in poll(
        lambda: (found := job_events(settings, quiet_job["job_id"])) and found, 30, "job events"
    )


# --- dry run ----------------------------------------------------------------------------------


def test_a_dry_run_writes_nothing_and_agrees_with_the_real_run(tenant, settings):
    prefix = unique_prefix()
    existing = [customer(f"{prefix}-old-{i}") for i in range(5)]
    assert tenant.api.post(SYNC, {"records": existing}).json()["status"] == "COMPLETED"
    records = [*existing, *customers(prefix, 2_500)]
    records[40] = customer(
        f"{prefix}-bad", addresses=[{"type": "home", "line1": "1", "city": "X", "country": "XX"}]
    )
    records[2_300] = dict(records[10])  # the key of index 10 again, two chunks later
    for operation in ("insert", "upsert"):
        dry = tenant.api.post(ASYNC, {"records": records, "operation": operation, "dry_run": True})
        assert dry.status == 202, dry.body
        dry_job = tenant.api.wait_terminal(dry.json()["job_id"], timeout=180)
        assert dry_job["dry_run"] is True and dry_job["processed"] == len(records)
        dry_results = results(tenant, dry_job["job_id"])
        # 2,505 records: 5 keys exist, one has a bad country, one key comes twice.
        assert sum(1 for s, _ in dry_results.values() if s == "CREATED") == 2_498
        new_keys = [r["externalId"] for r in records[5:]]
        assert rows_of(settings, tenant.tenant_id, new_keys) == {}  # no entity row
        assert len(ledger(settings, dry_job["job_id"])) == len(records)  # the ledger is written
        assert tenant.api.get(f"/api/v1/jobs/{dry_job['job_id']}/report").status == 200
        assert (
            outcome_events(
                settings.kafka_bootstrap, settings.topics.outcomes, dry_job["job_id"], 0, timeout=5
            )
            == {}
        )
        if operation == "insert":
            assert dry_results[0] == ("FAILED", "DuplicateKey")  # an existing row
            assert dry_results[2_300] == ("FAILED", "DuplicateKey")  # repeated inside the job
            assert dry_results[40] == ("FAILED", "InvalidValue")
        else:
            assert dry_results[0][0] == "UNCHANGED"
            assert dry_results[2_300][0] == "UNCHANGED"  # same values as index 10's
    real = tenant.api.post(ASYNC, {"records": records, "operation": "upsert"})
    real_job = tenant.api.wait_terminal(real.json()["job_id"], timeout=180)
    assert results(tenant, real_job["job_id"]) == dry_results  # (index) → (status, errorCode)
    assert len(rows_of(settings, tenant.tenant_id, [r["externalId"] for r in records])) == 2_503


def test_a_dry_run_update_reports_the_missing_rows(tenant, settings):
    prefix = unique_prefix()
    assert tenant.api.post(SYNC, {"records": customers(prefix, 3)}).json()["status"] == "COMPLETED"
    records = [customer(f"{prefix}-{i}", company="Changed") for i in range(5)]
    body = {"records": records, "operation": "update", "dry_run": True}
    dry = tenant.api.post(SYNC, body).json()
    assert dry["dry_run"] is True
    assert [(r["status"], r["errorCode"]) for r in dry["results"]] == [
        ("UPDATED", None),
        ("UPDATED", None),
        ("UPDATED", None),
        ("FAILED", "RecordNotFound"),
        ("FAILED", "RecordNotFound"),
    ]
    kept = rows_of(settings, tenant.tenant_id, [f"{prefix}-{i}" for i in range(3)])
    assert {r["company"] for r in kept.values()} == {None}  # nothing was updated
    real = tenant.api.post(SYNC, {**body, "dry_run": False}).json()
    assert [(r["status"], r["errorCode"]) for r in real["results"]] == [
        (r["status"], r["errorCode"]) for r in dry["results"]
    ]


# --- the error-rate breaker -------------------------------------------------------------------


def bad_country(key: str) -> dict[str, Any]:
    return customer(key, addresses=[{"type": "home", "line1": "1", "city": "X", "country": "XX"}])


def assert_stopped_by_the_breaker(settings: Any, job: dict[str, Any], total: int) -> None:
    assert job["processed"] == job["total"] == total
    assert job["successful"] + job["failed"] + job["skipped"] == total
    assert job["skipped"] > 0, job
    assert "max_error_rate 0.2" in job["failure_reason"], job
    assert "%" in job["failure_reason"]
    stored = ledger(settings, job["job_id"])
    assert len(stored) == total
    skipped = [code for status, code in stored.values() if status == "SKIPPED"]
    assert skipped and set(skipped) == {"ErrorRateExceeded"}
    assert len(skipped) == job["skipped"]
    events = outcome_events(
        settings.kafka_bootstrap, settings.topics.outcomes, job["job_id"], total
    )
    assert sorted(events) == list(range(total))


def test_the_breaker_stops_a_job_once_its_error_rate_is_exceeded(tenant, make_tenant, settings):
    prefix = unique_prefix()
    total = 4_000
    mixed = [
        bad_country(f"{prefix}-{i}") if i % 2 else customer(f"{prefix}-{i}") for i in range(total)
    ]
    all_bad = [bad_country(f"{prefix}-b{i}") for i in range(total)]
    breaker = {"max_error_rate": 0.2, "min_records": 50}
    other = make_tenant()
    with a_worker_held(settings, tenant):  # the records on the held worker wait, unwritten
        first = tenant.api.post(ASYNC, {"records": mixed, **breaker})
        second = tenant.api.post(ASYNC, {"records": all_bad, **breaker})
        assert first.status == second.status == 202
        stopped = tenant.api.wait_terminal(first.json()["job_id"])
        failed = tenant.api.wait_terminal(second.json()["job_id"])
    assert stopped["status"] == "COMPLETED_WITH_ERRORS" and stopped["successful"] > 0
    assert failed["status"] == "FAILED" and failed["successful"] == 0
    assert_stopped_by_the_breaker(settings, stopped, total)
    assert_stopped_by_the_breaker(settings, failed, total)
    # Every other job still completes.
    done = other.api.post(SYNC, {"records": customers(unique_prefix(), 10)}).json()
    assert done["status"] == "COMPLETED"
    # The records the held worker got after the trip keep their values in the ledger, so fix
    # and retry sends the skipped records as well as the failed ones.
    kept = poll(lambda: _skipped_with_values(settings, stopped["job_id"]), 60, "late records")
    child = tenant.api.post(f"/api/v1/jobs/{stopped['job_id']}/retry")
    assert child.status == 202, child.body
    assert child.json()["total"] == stopped["failed"] + kept


def _skipped_with_values(settings: Any, job_id: str) -> int:
    with psycopg.connect(settings.libpq_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM record_outcomes WHERE job_id = %s AND status = 'SKIPPED' "
            "AND record IS NOT NULL",
            [job_id],
        ).fetchone()
    return int(row[0]) if row else 0


def test_the_breaker_stops_an_import_reading_its_file(tenant, settings):
    """60,000 rows, every second one bad: the breaker trips on the first batches, long before
    the reader (at most 20,000 rows ahead of the pipeline) reaches the end."""
    prefix = unique_prefix()
    rows = [
        [
            f"{prefix}-{i}",
            "Zoë",
            "Müller",
            "not-an-email" if i % 2 else f"p{i}@example.com",
            f"{i} Rue",
            "Paris",
            "FR",
            "home",
            "",
        ]
        for i in range(ROWS)
    ]
    file = uploaded(tenant.api, csv_text(rows).encode())
    job = imported(
        tenant.api, file["file_id"], field_mappings=MAPPING, max_error_rate=0.2, min_records=50
    )
    assert job["status"] == "COMPLETED_WITH_ERRORS", job
    assert job["processed"] == job["total"] == job["successful"] + job["failed"] + job["skipped"]
    assert "max_error_rate 0.2" in job["failure_reason"]
    stored = ledger(settings, job["job_id"])
    assert len(stored) == job["total"]
    assert {c for s, c in stored.values() if s == "SKIPPED"} <= {"ErrorRateExceeded"}
    assert job["total"] < ROWS  # it stopped reading the file


# --- on bulk.requests -------------------------------------------------------------------------


def test_kafka_producers_set_the_options_on_the_chunks(tenant, settings):
    prefix = unique_prefix()
    job_id = str(uuid.uuid4())
    records = [avro_customer(f"{prefix}-{i}") for i in range(4)]
    options = {
        "dry_run": True,
        "defaults": [{"path": "company", "value": "From Kafka"}],
        "outcome_events": False,
    }
    publish_chunks(settings, job_id, chunk(tenant.tenant_id, job_id, records, **options))
    poll(lambda: tenant.api.get(f"/api/v1/jobs/{job_id}").status == 200, 60, "the job row")
    job = tenant.api.wait_terminal(job_id)
    assert (job["status"], job["dry_run"], job["defaults"]) == (
        "COMPLETED",
        True,
        {"company": "From Kafka"},
    )
    assert rows_of(settings, tenant.tenant_id, [r["externalId"] for r in records]) == {}
    forged = str(uuid.uuid4())
    bad = chunk(tenant.tenant_id, forged, records, max_error_rate=2.0)
    publish_chunks(settings, forged, bad)
    (letter,) = dead_letters(settings, forged.encode())
    headers = headers_of(letter)
    assert headers["dlq.reason"] == "invalid-chunk"
    assert "max_error_rate must be at least 0 and below 1" in headers["dlq.detail"]
