"""Hostile input end to end: whatever a careless or malicious sender puts in, the answer is a
clear error — a 4xx with the error body, a failed record with its code (and field, and line), or
a dead-lettered message with its reason — never a 5xx, a stuck job or a stalled partition.

After every case, canary jobs (one per bulk.requests partition, with keys on every bulk.records
partition) must complete: one bad input must never stop anyone else.
"""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from domain.codec import load_codec
from domain.entities import default_schemas_dir
from storage.db import create_tenant, sync_engine
from tests.conftest import FAULT_INJECTION_KEY
from tests.support import xlsx
from tests.support.http import Api, Response, poll
from tests.support.kafka import (
    PRODUCT_BRANCH,
    Canaries,
    avro_customer,
    chunk,
    dead_letters,
    headers_of,
    publish,
    publish_chunks,
)
from tests.support.outcomes import outcome_events
from tests.support.records import customer, customers, product, unique_prefix

ASYNC = "/api/v1/customers/bulk/async"
PRODUCTS = "/api/v1/products/bulk/async"
LIVE = ("PENDING", "READY", "STARTED")


@pytest.fixture(scope="module")
def canaries(settings, service) -> Canaries:
    from domain.entities import DEFAULT_REFERENCE_TYPES

    engine = sync_engine(settings.sqlalchemy_url)
    created = create_tenant(engine, "canaries", DEFAULT_REFERENCE_TYPES)
    engine.dispose()
    return Canaries(settings, created.tenant_id, Api(service.base_url, created.api_key))


@pytest.fixture(autouse=True)
def other_jobs_still_complete(canaries: Canaries) -> Iterator[None]:
    yield
    canaries.fly()


def no_job_left_behind(api: Api, timeout: float = 60) -> list[dict[str, Any]]:
    """Every job of the tenant, once none is live any more."""

    def settled() -> list[dict[str, Any]] | None:
        jobs = api.get("/api/v1/jobs?limit=200").json()["jobs"]
        return None if any(job["status"] in LIVE for job in jobs) else jobs or [{}]

    jobs = poll(settled, timeout, "every job of the tenant to end")
    return [job for job in jobs if job]


def the_error(answer: Response) -> dict[str, Any]:
    assert answer.status < 500, answer.body
    return answer.json()["errors"][0]


# --- HTTP: JSON bodies ------------------------------------------------------------------------


def body(*records: Any, **more: Any) -> bytes:
    return json.dumps({"records": list(records), **more}).encode()


HTTP_CASES = [
    (
        "nul-in-a-name",
        ASYNC,
        body(customer("k", firstName="A\u0000b")),
        "InvalidFormat",
        0,
        "firstName",
    ),
    (
        "lone-surrogate",
        ASYNC,
        body(customer("k", lastName="\ud800")),
        "InvalidFormat",
        0,
        "lastName",
    ),
    (
        "surrogate-in-an-address",
        ASYNC,
        body(
            customer(
                "k", addresses=[{"type": "home", "line1": "1", "city": "\udfff", "country": "GB"}]
            )
        ),
        "InvalidFormat",
        0,
        "addresses.0.city",
    ),
    ("nul-in-the-key", ASYNC, body(customer("k\u0000")), "InvalidFormat", 0, "externalId"),
    (
        "newline-in-the-key",
        ASYNC,
        body(customer("k-1"), customer("k\n2")),
        "InvalidFormat",
        1,
        "externalId",
    ),
    ("zero-width-in-the-key", ASYNC, body(customer("k\u200b")), "InvalidFormat", 0, "externalId"),
    ("bom-in-the-key", ASYNC, body(customer("\ufeffk")), "InvalidFormat", 0, "externalId"),
    (
        "bidi-override-in-the-key",
        ASYNC,
        body(customer("k\u202e1")),
        "InvalidFormat",
        0,
        "externalId",
    ),
    (
        "price-of-401-digits",
        PRODUCTS,
        b'{"records": [{"sku": "s", "name": "n", "currency": "EUR", "price": '
        + b"9" * 401
        + b"}]}",
        "InvalidValue",
        0,
        "price",
    ),
    (
        "price-beyond-2^53",
        PRODUCTS,
        body(product("s", price=2**53 + 1)),
        "InvalidValue",
        0,
        "price",
    ),
    (
        "price-NaN",
        PRODUCTS,
        b'{"records": [{"sku": "s", "name": "n", "currency": "EUR", "price": NaN}]}',
        "InvalidValue",
        0,
        "price",
    ),
    (
        "price-Infinity",
        PRODUCTS,
        b'{"records": [{"sku": "s", "name": "n", "currency": "EUR", "price": -Infinity}]}',
        "InvalidValue",
        0,
        "price",
    ),
    (
        "price-1e999",
        PRODUCTS,
        b'{"records": [{"sku": "s", "name": "n", "currency": "EUR", "price": 1e999}]}',
        "InvalidValue",
        0,
        "price",
    ),
    (
        "number-of-5000-digits",
        PRODUCTS,
        b'{"records": [{"price": ' + b"7" * 5000 + b"}]}",
        "InvalidJson",
        None,
        None,
    ),
    ("100000-nested-brackets", ASYNC, b"[" * 100_000, "InvalidJson", None, None),
    (
        "nested-objects",
        ASYNC,
        b'{"records": ' + b'{"a":' * 50_000 + b"1" + b"}" * 50_000 + b"}",
        "InvalidJson",
        None,
        None,
    ),
    (
        "duplicate-key-in-a-record",
        ASYNC,
        b'{"records": [{"externalId": "a", "firstName": "A", "firstName": "B", "lastName": "L"}]}',
        "InvalidJson",
        None,
        None,
    ),
    (
        "duplicate-records-member",
        ASYNC,
        b'{"records": [], "records": [{"externalId": "a"}]}',
        "InvalidJson",
        None,
        None,
    ),
    (
        "invalid-utf8",
        ASYNC,
        b'{"records": [{"externalId": "\xff\xfe"}]}',
        "InvalidJson",
        None,
        None,
    ),
    ("record-is-a-string", ASYNC, body(customer("k"), "not a record"), "InvalidFieldType", 1, None),
    ("record-is-an-array", ASYNC, body([customer("k")]), "InvalidFieldType", 0, None),
    ("record-is-null", ASYNC, body(None), "InvalidFieldType", 0, None),
    (
        "nesting-deeper-than-the-schema",
        ASYNC,
        body(customer("k", addresses=[[[[{"city": "x"}]]]])),
        "InvalidFieldType",
        0,
        "addresses.0",
    ),
    (
        "a-name-that-is-an-object",
        ASYNC,
        body(customer("k", firstName={"a": {"b": ["c"]}})),
        "InvalidFieldType",
        0,
        "firstName",
    ),
    (
        "a-megabyte-name",
        ASYNC,
        body(customer("k", firstName="x" * 1_000_000)),
        "InvalidFormat",
        0,
        "firstName",
    ),
    (
        "eleven-addresses",
        ASYNC,
        body(customer("k", addresses=[customer("x")["addresses"][0]] * 11)),
        "InvalidFormat",
        0,
        "addresses",
    ),
    (
        "tag-that-is-a-number",
        PRODUCTS,
        body(product("s", tags=[1])),
        "InvalidFieldType",
        0,
        "tags.0",
    ),
    ("body-is-an-array", ASYNC, b"[]", "InvalidFieldType", None, None),
    (
        "webhook-with-a-nul",
        ASYNC,
        body(customer("k"), webhook_url="https://example.com/\u0000"),
        "InvalidWebhookUrl",
        None,
        "webhook_url",
    ),
    (
        "operation-is-an-object",
        ASYNC,
        body(customer("k"), operation={"$ne": "insert"}),
        "InvalidOperation",
        None,
        "operation",
    ),
]


@pytest.mark.parametrize(
    ("path", "raw", "code", "index", "field"),
    [case[1:] for case in HTTP_CASES],
    ids=[case[0] for case in HTTP_CASES],
)
def test_hostile_json_is_a_precise_422_and_nothing_is_kept(tenant, path, raw, code, index, field):
    answer = tenant.api.request(
        "POST", path, data=raw, headers={"Content-Type": "application/json"}
    )
    assert answer.status == 422, answer.body[:500]
    error = the_error(answer)
    assert (error["errorCode"], error.get("index"), error.get("field")) == (code, index, field)
    assert error["message"] and error["moreInfo"].endswith(code.lower())
    assert tenant.api.get("/api/v1/jobs").json()["jobs"] == []


def test_a_bom_inside_a_name_is_stored_as_sent(tenant, settings):
    key = f"{unique_prefix()}-bom"
    answer = tenant.api.post(
        "/api/v1/customers/bulk", {"records": [customer(key, firstName="\ufeffAda")]}
    )
    assert answer.status == 200 and answer.json()["status"] == "COMPLETED", answer.body
    with psycopg.connect(settings.libpq_url) as conn:
        stored = conn.execute(
            "SELECT first_name FROM customers WHERE tenant_id = %s AND external_id = %s",
            [tenant.tenant_id, key],
        ).fetchone()
    assert stored == ("\ufeffAda",)


def test_unknown_paths_and_methods_answer_404_and_405_with_the_error_body(tenant, service):
    anonymous = Api(service.base_url)
    for answer in (
        anonymous.get("/nope"),
        anonymous.get("/documentation"),  # /docs is the API docs page now
        tenant.api.post("/api/v1/jobs/x/cancel", {}),
        tenant.api.get("/api/v1/nope/deeper"),
    ):
        assert answer.status == 404, answer.body
        assert answer.headers["Content-Type"].startswith("application/json")
        assert the_error(answer)["errorCode"] == "NotFound"
    wrong = tenant.api.request("DELETE", "/api/v1/jobs")
    assert wrong.status == 405, wrong.body
    error = the_error(wrong)
    assert error["errorCode"] == "MethodNotAllowed" and "DELETE is not allowed" in error["message"]
    assert "GET" in wrong.headers["Allow"]


# --- Kafka: request chunks from producers ------------------------------------------------------


def job_of(tenant, job_id: str, timeout: float = 60) -> dict[str, Any]:
    """The job once registered and terminal."""
    poll(lambda: tenant.api.get(f"/api/v1/jobs/{job_id}").status == 200, timeout, "the job")
    return tenant.api.wait_terminal(job_id, timeout)


def ledger_codes(settings, job_id: str) -> list[tuple[int, str, str | None]]:
    with psycopg.connect(settings.libpq_url) as conn:
        return conn.execute(
            "SELECT index, status, error_code FROM record_outcomes WHERE job_id = %s "
            "ORDER BY index",
            [job_id],
        ).fetchall()


def job_row_exists(settings, job_id: str) -> bool:
    with psycopg.connect(settings.libpq_url) as conn:
        return conn.execute("SELECT 1 FROM jobs WHERE job_id = %s", [job_id]).fetchone() is not None


def records(prefix: str, count: int) -> list[dict[str, Any]]:
    return [avro_customer(f"{prefix}-{i}") for i in range(count)]


@pytest.mark.parametrize(
    ("changes", "reason", "detail"),
    [
        ({"tenant_id": "not-a-uuid"}, "invalid-chunk", "tenant_id must be a UUID"),
        ({"entity": "spaceships"}, "invalid-chunk", "entity 'spaceships' is not one of"),
        ({"tenant_id": str(uuid.uuid4())}, "unknown-tenant", "does not exist"),
        ({"webhook_url": "gopher://x"}, "invalid-chunk", "scheme must be http or https"),
        ({"total": 10**12}, "invalid-chunk", "total must be between 1 and"),
    ],
    ids=["tenant-not-a-uuid", "unknown-entity", "unknown-tenant", "bad-webhook", "absurd-total"],
)
def test_a_chunk_with_a_bad_envelope_is_dead_lettered_and_registers_nothing(
    tenant, settings, changes, reason, detail
):
    job_id = str(uuid.uuid4())
    publish_chunks(
        settings,
        job_id,
        {**chunk(tenant.tenant_id, job_id, records(unique_prefix(), 2)), **changes},
    )
    (letter,) = dead_letters(settings, job_id.encode())
    headers = headers_of(letter)
    assert headers["dlq.reason"] == reason and detail in headers["dlq.detail"]
    assert headers["dlq.topic"] == settings.topics.requests
    assert not job_row_exists(settings, job_id)


NOT_PROCESSED = "RecordNotProcessed"


@pytest.mark.parametrize(
    ("changes", "detail", "status", "codes"),
    [
        (
            {"chunk_index": 1, "chunk_count": 1},
            "chunk_index 1 is not below chunk_count 1",
            "FAILED",
            [NOT_PROCESSED] * 3,
        ),
        (
            {"total": 2},
            "records 0..2 do not fit a job of 2 records",
            "FAILED",
            [NOT_PROCESSED] * 2,
        ),
        (
            # Its records claim indexes -1..1: 0 and 1 fail with it, index 2 never arrives.
            {"first_index": -1},
            "first_index must not be negative",
            "INTERNAL_FAILURE",
            [NOT_PROCESSED, NOT_PROCESSED, "RecordNotReceived"],
        ),
    ],
    ids=["index-past-count", "total-smaller-than-sent", "negative-first-index"],
)
def test_a_chunk_with_bad_bookkeeping_fails_its_records_and_its_job_ends(
    tenant, settings, changes, detail, status, codes
):
    job_id = str(uuid.uuid4())
    publish_chunks(
        settings, job_id, chunk(tenant.tenant_id, job_id, records(unique_prefix(), 3), **changes)
    )
    (letter,) = dead_letters(settings, job_id.encode())
    assert headers_of(letter)["dlq.reason"] == "invalid-chunk-bookkeeping"
    assert detail in headers_of(letter)["dlq.detail"]
    job = job_of(tenant, job_id, timeout=90)
    total = len(codes)
    assert (job["status"], job["total"], job["processed"], job["failed"]) == (
        status,
        total,
        total,
        total,
    )
    assert detail in job["errors"][0]["message"]
    assert [code for _, _, code in ledger_codes(settings, job_id)] == codes


def test_a_job_whose_last_chunk_never_comes_ends_internal_failure(tenant, settings):
    """total says 6, chunk 0 of 2 carries 3, chunk 1 never comes: the sweeper ends the job."""
    job_id = str(uuid.uuid4())
    first = chunk(tenant.tenant_id, job_id, records(unique_prefix(), 3), total=6, chunk_count=2)
    publish_chunks(settings, job_id, first)
    job = job_of(tenant, job_id, timeout=90)
    assert (job["status"], job["total"], job["processed"], job["successful"], job["failed"]) == (
        "INTERNAL_FAILURE",
        6,
        6,
        3,
        3,
    )
    assert "RecordNotReceived" in job["failure_reason"]
    assert ledger_codes(settings, job_id)[3:] == [
        (i, "FAILED", "RecordNotReceived") for i in (3, 4, 5)
    ]
    # A late chunk changes nothing: its records find their outcomes in the ledger.
    late = chunk(
        tenant.tenant_id,
        job_id,
        records(unique_prefix(), 3),
        total=6,
        chunk_count=2,
        chunk_index=1,
        first_index=3,
    )
    publish_chunks(settings, job_id, late)
    canary = Canaries(settings, tenant.tenant_id, tenant.api)
    canary.fly()  # the late chunk was read (same partition, earlier offset)
    assert tenant.api.get(f"/api/v1/jobs/{job_id}").json() == job
    assert ledger_codes(settings, job_id)[3:] == [
        (i, "FAILED", "RecordNotReceived") for i in (3, 4, 5)
    ]


def test_a_job_whose_gateway_died_while_publishing_ends_internal_failure(tenant, settings):
    """The job row was committed, then the gateway died before publishing (the row is written
    here as that gateway left it): the sweeper ends it, every record RecordNotReceived."""
    job_id = str(uuid.uuid4())
    with psycopg.connect(settings.libpq_url) as conn:
        conn.execute(
            "INSERT INTO jobs (job_id, tenant_id, entity, operation, source, status, total) "
            "VALUES (%s, %s, 'customers', 'insert', 'api', 'PENDING', 5)",
            [job_id, tenant.tenant_id],
        )
    job = tenant.api.wait_terminal(job_id, timeout=90)
    assert (job["status"], job["total"], job["processed"], job["failed"]) == (
        "INTERNAL_FAILURE",
        5,
        5,
        5,
    )
    assert ledger_codes(settings, job_id) == [(i, "FAILED", "RecordNotReceived") for i in range(5)]


def test_overlapping_chunks_never_write_an_index_twice(tenant, settings):
    job_id = str(uuid.uuid4())
    prefix = unique_prefix()
    publish_chunks(
        settings,
        job_id,
        chunk(tenant.tenant_id, job_id, records(prefix, 3), total=4, chunk_count=2),
        chunk(
            tenant.tenant_id,
            job_id,
            records(f"{prefix}x", 3),
            total=4,
            chunk_count=2,
            chunk_index=1,
            first_index=1,
        ),
    )
    (letter,) = dead_letters(settings, job_id.encode())
    assert "overlaps chunk 0 (records 0..2)" in headers_of(letter)["dlq.detail"]
    job = job_of(tenant, job_id)
    assert (job["status"], job["processed"], job["successful"], job["failed"]) == (
        "COMPLETED_WITH_ERRORS",
        4,
        3,
        1,
    )
    assert ledger_codes(settings, job_id) == [
        (0, "CREATED", None),
        (1, "CREATED", None),
        (2, "CREATED", None),
        (3, "FAILED", "RecordNotProcessed"),
    ]


def test_a_forged_chunk_naming_another_tenants_job_leaves_that_job_untouched(
    tenant, make_tenant, settings
):
    victim_job = str(uuid.uuid4())
    prefix = unique_prefix()
    publish_chunks(
        settings,
        victim_job,
        chunk(tenant.tenant_id, victim_job, records(prefix, 2), total=4, chunk_count=2),
    )
    poll(lambda: len(ledger_codes(settings, victim_job)) == 2, 60, "the victim's first chunk")
    attacker = make_tenant()
    forged = chunk(
        attacker.tenant_id,
        victim_job,
        records(f"{prefix}f", 2),
        total=4,
        chunk_count=2,
        chunk_index=1,
        first_index=2,
    )
    publish_chunks(settings, victim_job, forged)
    (letter,) = dead_letters(settings, victim_job.encode())
    assert headers_of(letter)["dlq.reason"] == "chunk-mismatch"
    assert "another tenant_id" in headers_of(letter)["dlq.detail"]
    assert tenant.api.get(f"/api/v1/jobs/{victim_job}").json()["status"] in LIVE
    assert attacker.api.get(f"/api/v1/jobs/{victim_job}").status == 404
    assert len(ledger_codes(settings, victim_job)) == 2  # nothing failed, nothing written
    real = chunk(
        tenant.tenant_id,
        victim_job,
        records(prefix, 4)[2:],
        total=4,
        chunk_count=2,
        chunk_index=1,
        first_index=2,
    )
    publish_chunks(settings, victim_job, real)
    job = job_of(tenant, victim_job)
    assert (job["status"], job["successful"]) == ("COMPLETED", 4)


def test_records_of_a_chunk_claiming_to_come_from_the_gateway_are_validated_anyway(
    tenant, settings
):
    job_id = str(uuid.uuid4())
    prefix = unique_prefix()
    batch = [
        avro_customer(f"{prefix}-0"),
        avro_customer(f"{prefix}-1", firstName="A\u0000b"),
        avro_customer(f"{prefix}-\u200b"),
        (
            PRODUCT_BRANCH,
            {
                "sku": "s",
                "name": "n",
                "price": float("nan"),
                "currency": "EUR",
                "active": True,
                "tags": None,
            },
        ),
    ]
    publish_chunks(settings, job_id, chunk(tenant.tenant_id, job_id, batch, source="api"))
    job = job_of(tenant, job_id)
    assert (job["source"], job["status"], job["successful"], job["failed"]) == (
        "kafka",
        "COMPLETED_WITH_ERRORS",
        1,
        3,
    )
    assert [(e["index"], e["errorCode"], e.get("field")) for e in job["errors"]] == [
        (1, "InvalidFormat", "firstName"),
        (2, "InvalidFormat", "externalId"),
        (3, "MissingRequiredField", "externalId"),
    ]
    report = tenant.api.get(f"/api/v1/jobs/{job_id}/report")
    assert report.status == 200 and "\ufffd" in report.body.decode()  # the NUL, made storable


def test_undecodable_messages_on_every_topic_are_dead_lettered(tenant, settings):
    requests = load_codec(default_schemas_dir(), "bulk.requests")
    framed = requests.encode(chunk(tenant.tenant_id, str(uuid.uuid4()), records("x", 1)))
    corrupt = framed[:10] + b"\xff" * 5  # the right fingerprint, a body that is not Avro
    cases = [
        (settings.topics.requests, corrupt, "corrupt-body"),
        (settings.topics.records, b"\x00garbage", "not-single-object-encoded"),
        # The aggregator reads only the key (a job id), and this one is not.
        (settings.topics.progress, b"\xc3\x01" + b"\x00" * 8, "invalid-progress"),
        (settings.topics.imports, b"", "not-single-object-encoded"),
    ]
    for topic, payload, reason in cases:
        key = f"garbage-{uuid.uuid4()}".encode()
        publish(settings.kafka_bootstrap, topic, [payload], key)
        (letter,) = dead_letters(settings, key)
        assert headers_of(letter)["dlq.reason"] == reason and letter.value() == payload


def test_well_framed_internal_messages_that_make_no_sense_are_dead_lettered(tenant, settings):
    records_codec = load_codec(default_schemas_dir(), "bulk.records")
    progress_codec = load_codec(default_schemas_dir(), "bulk.progress")
    batch_key = f"batch-{uuid.uuid4()}".encode()
    batch = {
        "job_id": "not-a-job",
        "tenant_id": tenant.tenant_id,
        "entity": "customers",
        "operation": "insert",
        "total": 1,
        "part_id": "0:0",
        "records": [],
    }
    publish(
        settings.kafka_bootstrap, settings.topics.records, [records_codec.encode(batch)], batch_key
    )
    progress_key = b"not a job id \xff"
    nudge = {"job_id": "x", "tenant_id": "y", "total": 0, "part_id": "z"}
    publish(
        settings.kafka_bootstrap,
        settings.topics.progress,
        [progress_codec.encode(nudge)],
        progress_key,
    )
    (bad_batch,) = dead_letters(settings, batch_key)
    assert headers_of(bad_batch)["dlq.reason"] == "invalid-record-batch"
    assert "job_id 'not-a-job' is not a UUID" in headers_of(bad_batch)["dlq.detail"]
    (bad_nudge,) = dead_letters(settings, progress_key)
    assert headers_of(bad_nudge)["dlq.reason"] == "invalid-progress"
    jobs_codec = load_codec(default_schemas_dir(), "bulk.jobs")
    event_key = f"event-{uuid.uuid4()}".encode()
    event = {
        "job_id": "../../etc/passwd",
        "tenant_id": tenant.tenant_id,
        "entity": "customers",
        "operation": "insert",
        "source": "kafka",
        "status": "COMPLETED",
        "total": 1,
        "processed": 1,
        "successful": 1,
        "failed": 0,
        "created_at": datetime.now(UTC),
        "updated_at": datetime.now(UTC),
    }
    publish(settings.kafka_bootstrap, settings.topics.jobs, [jobs_codec.encode(event)], event_key)
    (bad_event,) = dead_letters(settings, event_key)
    assert headers_of(bad_event)["dlq.reason"] == "invalid-job-event"
    assert "is not a UUID" in headers_of(bad_event)["dlq.detail"]


# --- files: CSV, NDJSON, XLSX, ZIP ------------------------------------------------------------


def imported(api: Api, data: bytes, content_type: str, entity: str = "customers") -> dict[str, Any]:
    upload = api.request("POST", "/api/v1/files", data=data, headers={"Content-Type": content_type})
    assert upload.status == 201, upload.body
    started = api.post(
        "/api/v1/imports",
        {"file_id": upload.json()["file_id"], "entity": entity, "operation": "upsert"},
    )
    assert started.status == 202, started.body
    return api.wait_terminal(started.json()["job_id"], timeout=120)


def failures(job: dict[str, Any]) -> list[tuple[int, str, str | None, int | None]]:
    return [(e["index"], e["errorCode"], e.get("field"), e.get("line")) for e in job["errors"]]


def csv_file(prefix: str, *rows: str) -> bytes:
    lines = [
        "externalId,firstName,lastName",
        f"{prefix}-a,Ada,Lovelace",
        *rows,
        f"{prefix}-z,Zoe,Last",
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


FILE_CASES = [
    (
        "csv-nul-in-a-cell",
        lambda p: csv_file(p, f"{p}-b,A\x00b,L"),
        "text/csv",
        "customers",
        (1, "InvalidFormat", "firstName", 3),
    ),
    (
        "csv-key-with-a-control-character",
        lambda p: csv_file(p, f"{p}\x01b,Bob,L"),
        "text/csv",
        "customers",
        (1, "InvalidFormat", "externalId", 3),
    ),
    (
        "csv-second-header-with-a-bom",
        lambda p: csv_file(p, "\ufeffexternalId,firstName,lastName"),
        "text/csv",
        "customers",
        (1, "InvalidFormat", "externalId", 3),
    ),
    (
        "csv-field-over-the-csv-limit",
        lambda p: csv_file(p, f'{p}-b,"{"x" * 200_000}",L'),
        "text/csv",
        "customers",
        (1, "InvalidFormat", None, 3),
    ),
    (
        "csv-line-of-two-megabytes",
        lambda p: csv_file(p, f"{p}-b," + "y" * 2_000_000),
        "text/csv",
        "customers",
        (1, "InvalidFormat", None, 3),
    ),
    (
        "csv-invalid-utf8",
        lambda p: csv_file(p)[:-2] + b"\r\n" + f"{p}-b,".encode() + b"\xff\xfe,L\r\n",
        "text/csv",
        "customers",
        (2, "InvalidFormat", None, 4),
    ),
    (
        "csv-price-of-401-digits",
        lambda p: (
            f"sku,name,price,currency\r\n{p}-a,Desk,1,EUR\r\n"
            f"{p}-b,Desk,{'9' * 401},EUR\r\n".encode()
        ),
        "text/csv",
        "products",
        (1, "InvalidValue", "price", 3),
    ),
    (
        "csv-price-1e999",
        lambda p: (
            f"sku,name,price,currency\r\n{p}-a,Desk,1,EUR\r\n{p}-b,Desk,1e999,EUR\r\n".encode()
        ),
        "text/csv",
        "products",
        (1, "InvalidValue", "price", 3),
    ),
    (
        "ndjson-line-of-ten-megabytes",
        lambda p: ndjson_file(p, '{"externalId": "' + "z" * 10_000_000 + '"}'),
        "application/x-ndjson",
        "customers",
        (1, "InvalidFormat", None, 2),
    ),
    (
        "ndjson-duplicate-keys",
        lambda p: ndjson_file(
            p, f'{{"externalId": "{p}-b", "firstName": "A", "firstName": "B", "lastName": "L"}}'
        ),
        "application/x-ndjson",
        "customers",
        (1, "InvalidJson", None, 2),
    ),
    (
        "ndjson-deep-nesting",
        lambda p: ndjson_file(p, '{"firstName": ' + "[" * 5000 + "]" * 5000 + "}"),
        "application/x-ndjson",
        "customers",
        (1, "InvalidJson", None, 2),
    ),
    (
        "ndjson-a-line-that-is-an-array",
        lambda p: ndjson_file(p, "[1, 2, 3]"),
        "application/x-ndjson",
        "customers",
        (1, "InvalidFieldType", None, 2),
    ),
    (
        "ndjson-nul-escape",
        lambda p: ndjson_file(
            p, f'{{"externalId": "{p}-b", "firstName": "A\\u0000", "lastName": "L"}}'
        ),
        "application/x-ndjson",
        "customers",
        (1, "InvalidFormat", "firstName", 2),
    ),
    (
        "ndjson-lone-surrogate-escape",
        lambda p: ndjson_file(
            p, f'{{"externalId": "{p}-b", "firstName": "A", "lastName": "\\ud800"}}'
        ),
        "application/x-ndjson",
        "customers",
        (1, "InvalidFormat", "lastName", 2),
    ),
    (
        "zip-holding-hostile-ndjson",
        lambda p: zipped(
            "people.ndjson",
            ndjson_file(p, f'{{"externalId": "{p}-b\\u0000", "firstName": "A", "lastName": "L"}}'),
        ),
        "application/zip",
        "customers",
        (1, "InvalidFormat", "externalId", 2),
    ),
]


def ndjson_file(prefix: str, line: str) -> bytes:
    first = json.dumps({"externalId": f"{prefix}-a", "firstName": "Ada", "lastName": "L"})
    last = json.dumps({"externalId": f"{prefix}-z", "firstName": "Zoe", "lastName": "L"})
    return "\n".join([first, line, last, ""]).encode()


def zipped(name: str, data: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, data)
    return out.getvalue()


@pytest.mark.parametrize(
    ("make", "content_type", "entity", "failure"),
    [case[1:] for case in FILE_CASES],
    ids=[case[0] for case in FILE_CASES],
)
def test_a_hostile_row_fails_on_its_own_with_its_line(tenant, make, content_type, entity, failure):
    job = imported(tenant.api, make(unique_prefix()), content_type, entity)
    assert job["status"] == "COMPLETED_WITH_ERRORS", job
    assert job["processed"] == job["total"] and job["failed"] == 1
    assert failures(job) == [failure]
    assert job["errors"][0]["message"].startswith(f"Line {failure[3]}: ")
    no_job_left_behind(tenant.api)


def test_xlsx_formulas_give_their_value_and_error_cells_fail_their_row(tenant, settings):
    prefix = unique_prefix()
    job = imported(
        tenant.api,
        workbook_with_formula_and_error(prefix),
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    )
    assert (job["status"], job["successful"], job["failed"]) == ("COMPLETED_WITH_ERRORS", 2, 1)
    assert failures(job) == [(1, "InvalidValue", None, 3)]
    assert "cell B3 holds the spreadsheet error #DIV/0!" in job["errors"][0]["message"]
    with psycopg.connect(settings.libpq_url) as conn:
        computed = conn.execute(
            "SELECT last_name FROM customers WHERE tenant_id = %s AND external_id = %s",
            [tenant.tenant_id, f"{prefix}-a"],
        ).fetchone()
    assert computed == ("Lovelace-2",)  # the formula's cached value, not its text


def workbook_with_formula_and_error(prefix: str) -> bytes:
    """A workbook as Excel saves it: a formula with its cached value, and an error cell."""
    t = xlsx.text_cell
    return xlsx.workbook(
        [
            [t("A1", "externalId"), t("B1", "firstName"), t("C1", "lastName")],
            [
                t("A2", f"{prefix}-a"),
                t("B2", "Ada"),
                '<c r="C2" t="str"><f>"Lovelace-"&amp;(1+1)</f><v>Lovelace-2</v></c>',
            ],
            [t("A3", f"{prefix}-b"), '<c r="B3" t="e"><f>1/0</f><v>#DIV/0!</v></c>', t("C3", "L")],
            [t("A4", f"{prefix}-c"), t("B4", "Cy"), t("C4", "L")],
        ]
    )


# --- a message no stage can process -------------------------------------------------------------


def test_a_poisoned_batch_is_dead_lettered_after_exactly_n_recorded_failures(
    tenant, settings, service
):
    """The fault-injection key (a stand-in for a bug) makes the persist stage raise on the one
    record batch that holds it: the runner records each failure in PostgreSQL, dead-letters the
    batch at the third, fails its records RecordNotProcessed, and the workers never exit."""
    workers_before = {w.role: w.pid for w in service.workers}
    records = customers(unique_prefix(), 40)
    records[7]["externalId"] = FAULT_INJECTION_KEY
    accepted = tenant.api.post(ASYNC, {"records": records})
    assert accepted.status == 202, accepted.body
    job_id = accepted.json()["job_id"]
    job = tenant.api.wait_terminal(job_id, timeout=120)

    (letter,) = dead_letters(settings, job_id.encode())
    headers = headers_of(letter)
    assert headers["dlq.reason"] == "poison" and headers["dlq.topic"] == settings.topics.records
    assert headers["dlq.attempts"] == str(settings.poison_attempts) == "3"
    assert headers["dlq.error_class"] == "InjectedFault"
    poisoned = load_codec(default_schemas_dir(), "bulk.records").decode(letter.value())
    lost = sorted(r["index"] for r in poisoned["records"])
    assert poisoned["job_id"] == job_id and 7 in lost
    with psycopg.connect(settings.libpq_url) as conn:
        recorded = conn.execute(
            "SELECT attempts, dead_lettered_at IS NOT NULL FROM message_failures WHERE topic = %s "
            'AND partition = %s AND "offset" = %s',
            [settings.topics.records, int(headers["dlq.partition"]), int(headers["dlq.offset"])],
        ).fetchall()
    assert recorded == [(3, True)]

    assert (job["status"], job["processed"], job["failed"]) == (
        "COMPLETED_WITH_ERRORS",
        40,
        len(lost),
    )
    failed = [(i, code) for i, _, code in ledger_codes(settings, job_id) if code]
    assert failed == [(i, "RecordNotProcessed") for i in lost]
    events = outcome_events(settings.kafka_bootstrap, settings.topics.outcomes, job_id, 40)
    assert sorted(events) == list(range(40))
    assert {events[i][0]["error_code"] for i in lost} == {"RecordNotProcessed"}
    assert {w.role: w.pid for w in service.workers} == workers_before  # nobody exited
    assert all(w.alive() for w in service.workers)
