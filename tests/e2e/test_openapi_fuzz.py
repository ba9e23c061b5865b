"""Schemathesis against a live gateway: every operation of the OpenAPI document but the ones
listed in :data:`EXCLUDED`, every check it has, a fixed seed, derandomized, a fixed number of
examples per operation. A 5xx, a status code or header the document does not list, a body that
does not match its schema, a schema-invalid request accepted or a schema-valid one refused
fails the test, with schemathesis' report (and a curl line per failure) in the message.

The gateway is a process of its own beside the session's (same database, broker and workers),
with ``BULK_INGEST_SYNC_TIMEOUT_SECONDS`` at 2, so a sync request it cannot finish answers
``202`` quickly instead of holding the run for 30 s, and small record limits.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bulk_ingest.processes import spawn
from bulk_ingest.settings import Settings
from domain.entities import DEFAULT_REFERENCE_TYPES, FORMATS, INVISIBLE_CATEGORIES
from domain.record_schema import format_pattern
from storage.db import create_tenant, sync_engine
from tests.support.http import Api, poll

pytestmark = pytest.mark.e2e

PORT_OFFSET = 60
SEED = 20261201
MAX_EXAMPLES = 25
SYNC_TIMEOUT_SECONDS = 2.0
MAX_ASYNC_RECORDS = 5
MAX_SYNC_RECORDS = 3
"""Small limits: the document states the deployment's (``maxItems`` of ``records``), so the
fuzzer tries the limit and one past it without building bodies of 50,000 records."""
BUDGET_SECONDS = 420

EXCLUDED: dict[tuple[str, str], str] = {
    ("GET", "/api/v1/jobs/events"): "an event stream that never ends on its own: a request "
    "would only end at the time-out (its answers are checked by tests/e2e/test_live_progress.py)",
    ("GET", "/api/v1/jobs/{job_id}/events"): "an event stream (ends only with its job)",
    ("GET", "/metrics"): "Prometheus text for scrapers, no input to fuzz",
    ("GET", "/docs"): "a static web page, no input to fuzz",
    ("GET", "/docs/assets/{name}"): "the page's static files (tests/e2e/test_openapi_served.py)",
    ("GET", "/"): "the dashboard's static page, no input to fuzz",
    ("GET", "/assets/{name}"): "the dashboard's static files",
}
"""Operations not fuzzed, each with the reason."""


class _Gone(BaseHTTPRequestHandler):
    """A webhook receiver that answers 410 Gone: the dispatcher stops retrying at once."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(410)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def safe_webhook() -> Iterator[str]:
    """The only webhook_url the fuzzer sends: a fuzzed URL of a public host would make the
    consumers call it. Loopback is allowed in the test settings; this receiver answers 410."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Gone)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/bulk-ingest-fuzz"
    server.shutdown()
    server.server_close()


UNDECIDABLE_422: dict[str, str] = {
    "upload_file": "whether bytes are a readable CSV, NDJSON, XLSX or ZIP is not a schema's to say",
    "start_import": "the file named must exist (an upload of this tenant), the mapping fit its "
    "header, the encoding be one Python knows",
    "list_jobs": "a cursor must be one a page of ours handed out",
    "redeliver_job_webhook": "the job must have a webhook_url",
    "retry_job": "the job must have failed or skipped records with the codes asked for "
    "(NothingToRetry)",
    "revert_job": "the job must have written rows: not a dry run, not a revert (NothingToRevert)",
}
"""Operations whose schema-valid requests may still be refused (422) for what the request
names rather than for its shape; positive_data_acceptance takes 422 from these only."""


@pytest.fixture
def fuzz_gateway(settings: Settings, service: Any) -> Iterator[str]:
    port = settings.http_port + PORT_OFFSET
    fuzzed = settings.with_overrides(
        http_port=port,
        sync_timeout_seconds=SYNC_TIMEOUT_SECONDS,
        max_async_records=MAX_ASYNC_RECORDS,
        max_sync_records=MAX_SYNC_RECORDS,
    )
    process = spawn("gateway", fuzzed, service.log_dir, name="gateway-fuzz")
    base = f"http://{settings.http_host}:{port}"

    def healthy() -> bool:
        assert process.alive(), process.log_tail()
        try:
            return Api(base).get("/healthz", timeout=5, conform=False).status == 200
        except OSError:
            return False

    try:
        poll(healthy, 60, "the fuzzed gateway to answer")
        yield base
    finally:
        process.stop()
        tail = process.log_tail(60)
        if "Traceback" in tail:
            print(f"--- fuzzed gateway log\n{tail}")


KEY_FORMAT = "bulk-ingest-key"
HOOKS = f"""\
import schemathesis
from hypothesis import strategies as st

schemathesis.openapi.format(
    {KEY_FORMAT!r},
    st.text(st.characters(exclude_categories={sorted(INVISIBLE_CATEGORIES)!r}), min_size=1),
)
"""
"""The key format for the fuzzer: text drawn from the code points the key format takes, by
Unicode category, as validation judges them (:mod:`domain.entities`)."""


def fuzzed_document(base: str, webhook: str) -> dict[str, Any]:
    """The served document with two changes for the fuzzer.

    - Every ``webhook_url`` is pinned to ``webhook`` (:func:`safe_webhook`).
    - A key's ``pattern`` (the exact class of visible code points, ~700 ranges: schemathesis
      builds a regex strategy per value drawn, about a second per record) becomes the format
      :data:`KEY_FORMAT`, drawn from the same code points by category (:data:`HOOKS`). Negative
      cases then break a key by type or length only; that the pattern and validation agree on
      every code point is ``tests/unit/test_openapi.py``'s.
    """
    document = Api(base).get("/api/v1/openapi.json").json()
    key_pattern = format_pattern(FORMATS["key"])
    for schema in document["components"]["schemas"].values():
        properties = schema.get("properties", {})
        if "webhook_url" in properties:
            properties["webhook_url"] = {"type": ["string", "null"], "enum": [webhook, None]}
        for value in properties.values():
            if value.get("pattern") == key_pattern:
                del value["pattern"]
                value["format"] = KEY_FORMAT
        _without_required_defaults(schema, document)
    assert key_pattern not in json.dumps(document, ensure_ascii=False)
    return document


def _without_required_defaults(schema: dict[str, Any], document: dict[str, Any]) -> None:
    """A bulk request's ``defaults`` without the paths of required fields: a default may
    supply a field its records leave out, which the record schema (``required``) cannot say,
    so a fuzzer's record missing it would be refused by the schema and accepted by us. That a
    default fills a required field is ``tests/e2e/test_job_options.py``'s."""
    defaults = schema.get("properties", {}).get("defaults")
    if not defaults or "patternProperties" not in defaults:
        return  # not a bulk request (an import's defaults are not held to one entity)
    component = schema["properties"]["records"]["items"]["$ref"].rsplit("/", 1)[1]
    record = document["components"]["schemas"][component]
    for name in record.get("required", []):
        defaults["properties"].pop(name, None)
    for pattern in list(defaults["patternProperties"]):
        array, field = pattern[1:].split("\\.")[0], pattern[:-1].rsplit("\\.", 1)[1]
        if field in record["properties"][array]["items"].get("required", []):
            del defaults["patternProperties"][pattern]


NO_COVERAGE_PHASE = (
    "the bulk operations: the coverage phase walks every boundary of every field of a record "
    "(~1,100 requests per operation, ~100 s each here); their fuzzing phase covers both modes "
    "within the budget, and tests/unit/test_openapi.py holds the record schemas and basic "
    "validation to the same answer for every field"
)


def bulk_operations(document: dict[str, Any]) -> list[str]:
    return [
        operation["operationId"]
        for operations in document["paths"].values()
        for operation in operations.values()
        if "bulk" in operation.get("tags", ())
    ]


def schemathesis_config(path: Path, document: dict[str, Any]) -> Path:
    lines = [
        "[checks.positive_data_acceptance]",
        'expected-statuses = ["2xx", "401", "404", "409"]',
        "",
        f"# No coverage phase for {NO_COVERAGE_PHASE}.",
        "[[operations]]",
        f"include-operation-id = {json.dumps(bulk_operations(document))}",
        "phases.coverage.enabled = false",
    ]
    for operation_id in UNDECIDABLE_422:
        lines += [
            "[[operations]]",
            f'include-operation-id = "{operation_id}"',
            "checks.positive_data_acceptance.expected-statuses = "
            '["2xx", "401", "404", "409", "422"]',
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_schemathesis_finds_nothing(
    fuzz_gateway: str, safe_webhook: str, settings: Settings, tmp_path: Path
) -> None:
    engine = sync_engine(settings.sqlalchemy_url)
    try:
        tenant = create_tenant(engine, "fuzz", DEFAULT_REFERENCE_TYPES)
    finally:
        engine.dispose()
    report_dir = settings.state_dir / "logs" / settings.app_id
    fuzzed = fuzzed_document(fuzz_gateway, safe_webhook)
    document = tmp_path / "openapi.json"
    document.write_text(json.dumps(fuzzed))
    config = schemathesis_config(tmp_path / "schemathesis.toml", fuzzed)
    hooks = tmp_path / "hooks.py"
    hooks.write_text(HOOKS)
    excluded = []
    for method, path in EXCLUDED:
        if path in fuzzed["paths"]:
            # Excluded by path: make sure no other method hides behind it.
            assert set(fuzzed["paths"][path]) == {method.lower()}, path
            excluded += ["--exclude-path", path]
    command = [
        str(Path(sys.executable).parent / "st"),
        "--config-file", str(config),
        "run", str(document),
        "--url", fuzz_gateway,
        "--header", f"Authorization: Bearer {tenant.api_key}",
        "--checks", "all",
        "--max-examples", str(MAX_EXAMPLES),
        "--seed", str(SEED),
        "--generation-deterministic",
        "--workers", "1",  # two hit a race in hypothesis (ast) under Python 3.11
        "--request-timeout", "15",
        "--no-color",
        "--output-truncate", "false",
        "--report", "junit",
        "--report-junit-path", str(report_dir / "schemathesis-junit.xml"),
        *excluded,
    ]  # fmt: skip
    started = time.monotonic()
    run = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=BUDGET_SECONDS,
        cwd=tmp_path,
        env={**os.environ, "SCHEMATHESIS_HOOKS": str(hooks)},
    )
    took = time.monotonic() - started
    _settle_webhooks(settings, tenant.tenant_id)
    report = report_dir / "schemathesis.txt"
    report.write_text(run.stdout + run.stderr)
    print(run.stdout[-3000:], f"\n[schemathesis took {took:.0f} s; its output: {report}]")
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-3000:]


def _settle_webhooks(settings: Settings, tenant_id: str) -> None:
    """The fuzzed jobs' webhooks meet the 410 receiver and stop; any still pending once the
    jobs have ended is given up here, so no later test pays for their retries."""
    pending = (
        "SELECT (SELECT count(*) FROM webhook_deliveries WHERE tenant_id = %(t)s "
        "AND state = 'PENDING') + (SELECT count(*) FROM jobs WHERE tenant_id = %(t)s "
        "AND completed_at IS NULL)"
    )
    with psycopg.connect(settings.libpq_url, autocommit=True) as conn:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and conn.execute(pending, {"t": tenant_id}).fetchone()[0]:
            time.sleep(0.5)  # the dispatcher polls every 0.1 s; jobs end within seconds
        conn.execute(
            "UPDATE webhook_deliveries SET state = 'FAILED', next_attempt_at = NULL "
            "WHERE tenant_id = %s AND state = 'PENDING'",
            [tenant_id],
        )


# --- what the fuzzer found, kept found ------------------------------------------------------------


def _code(answer: Any) -> tuple[int, str]:
    return answer.status, answer.json()["errors"][0]["errorCode"]


def test_the_defects_schemathesis_found_stay_fixed(tenant: Any) -> None:
    """Each was a 500 or a request the document calls invalid accepted (docs/decisions.md)."""
    api = tenant.api
    assert _code(api.get("/api/v1/jobs?status=")) == (422, "InvalidParameter")
    assert _code(api.get("/api/v1/jobs?entity=%00")) == (422, "InvalidParameter")
    cursor = base64.urlsafe_b64encode(b'["2026-01-01T00:00:00+00:00", "x"]').decode()
    assert _code(api.get(f"/api/v1/jobs?cursor={cursor}")) == (422, "InvalidParameter")
    csv = {"Content-Type": "text/csv"}
    upload = api.request("POST", "/api/v1/files?filename=a%00b", data=b"a,b\n1,2\n", headers=csv)
    assert _code(upload) == (422, "InvalidParameter")
    utf16 = b"\xff\xfe" + "name\x00,city\nAda,London\n".encode("utf-16-le")
    upload = api.request("POST", "/api/v1/files", data=utf16, headers=csv)
    assert _code(upload) == (422, "InvalidFormat")
    broken = b'--b\r\nContent-Disposition: form-data; name="\x00"\r\n\r\nx\r\n--b--\r\n'
    multipart = {"Content-Type": "multipart/form-data; boundary=b"}
    upload = api.request("POST", "/api/v1/files", data=broken, headers=multipart)
    assert _code(upload) == (422, "InvalidFormat")
    upload = api.request(
        "POST", "/api/v1/files", data=b"x", headers={"Content-Type": "multipart/form-data"}
    )
    assert _code(upload) == (422, "InvalidFormat")
    product = {"sku": "s-1", "name": "n", "price": 1, "currency": "EUR", "active": ""}
    refused = api.post("/api/v1/products/bulk/async", {"records": [product]})
    assert _code(refused) == (422, "InvalidFieldType")
