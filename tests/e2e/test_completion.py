"""The completion side end to end: signed webhooks with durable retries, reports, result files.

Everything runs against the real service (gateway, workers, consumers as subprocesses, real
Kafka and PostgreSQL). Webhook receivers are real HTTP servers on 127.0.0.1 started here; no
test sends traffic to any other address (the private-address case is refused at submit time,
before any connection).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import io
import json
import socket
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
import pytest

from bulk_ingest.processes import spawn
from domain.report_rows import REPORT_COLUMNS, RESULTS_COLUMNS
from tests.support.http import poll

pytestmark = pytest.mark.e2e

BULK = "/api/v1/customers/bulk/async"


# --- a real webhook receiver ------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 answering ``script`` in order, then 200 to everything.

    ``decide``, when given, answers instead, seeing every request received so far.
    ``hold_first_seconds`` keeps the first request waiting that long before it is answered.
    """

    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    port: int = 0
    decide: Callable[[Received, list[Received]], int] | None = None
    hold_first_seconds: float = 0.0
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status, headers, hold = receiver._answer(
                    Received({k.lower(): v for k, v in self.headers.items()}, body, time.time())
                )
                time.sleep(hold)  # a slow receiver, for the test that kills a sender meanwhile
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the sender is gone

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def _answer(self, received: Received) -> tuple[int, dict[str, str], float]:
        with self._lock:
            self.received.append(received)
            hold = self.hold_first_seconds if len(self.received) == 1 else 0.0
            if self.decide is not None:
                return self.decide(received, self.received), {}, hold
            status, headers = self.script.pop(0) if self.script else (200, {})
            return status, headers, hold

    def count(self) -> int:
        with self._lock:
            return len(self.received)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver().start()
    yield running
    running.stop()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- helpers ----------------------------------------------------------------------------------


def customer(**fields: Any) -> dict[str, Any]:
    key = f"c-{uuid.uuid4().hex[:12]}"
    return {"externalId": key, "firstName": "Ada", "lastName": "L", **fields}


def submit(tenant: Any, records: list[dict[str, Any]], webhook_url: str | None = None) -> str:
    body: dict[str, Any] = {"records": records}
    if webhook_url:
        body["webhook_url"] = webhook_url
    answer = tenant.api.post(BULK, body)
    assert answer.status == 202, answer.body
    return str(answer.json()["job_id"])


def attempts(tenant: Any, job_id: str) -> list[dict[str, Any]]:
    answer = tenant.api.get(f"/api/v1/jobs/{job_id}/webhooks")
    assert answer.status == 200, answer.body
    return list(answer.json()["attempts"])


def wait_attempts(
    tenant: Any, job_id: str, done: Callable[[list[dict[str, Any]]], bool], what: str
) -> list[dict[str, Any]]:
    """Poll the job's attempts until ``done`` holds for them."""
    return poll(lambda: (found := attempts(tenant, job_id)) and done(found) and found, 60, what)


def finished(found: Sequence[dict[str, Any]]) -> bool:
    """The last attempt has a result (it is listed from the moment it is claimed)."""
    return found[-1]["status_code"] is not None or found[-1]["error"] is not None


def delivered(found: Sequence[dict[str, Any]]) -> bool:
    return found[-1]["status_code"] == 200


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def verify_signature(secret: str, received: Received) -> None:
    """The receiver's side of Standard Webhooks, written here from the spec, not our code."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = (
        received.headers["webhook-id"].encode()
        + b"."
        + received.headers["webhook-timestamp"].encode()
        + b"."
        + received.body
    )
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    versions = dict(s.split(",", 1) for s in received.headers["webhook-signature"].split(" "))
    assert hmac.compare_digest(versions["v1"], expected)
    assert abs(time.time() - int(received.headers["webhook-timestamp"])) < 300


# --- webhooks ---------------------------------------------------------------------------------


def test_webhook_is_retried_until_delivered_signed_with_a_stable_id(tenant, receiver):
    receiver.script = [(500, {}), (500, {})]
    job_id = submit(tenant, [customer(), customer()], receiver.url)

    found = wait_attempts(tenant, job_id, lambda a: len(a) == 3 and delivered(a), "3 attempts")
    assert [a["status_code"] for a in found] == [500, 500, 200]
    assert [a["attempt"] for a in found] == [1, 2, 3]
    assert all(a["next_attempt_at"] for a in found[:2]) and found[2]["next_attempt_at"] is None
    assert found[0]["error"].startswith("HTTP 500") and found[2]["error"] is None
    assert all(a["latency_ms"] is not None and a["latency_ms"] >= 0 for a in found)

    assert receiver.count() == 3
    ids = {r.headers["webhook-id"] for r in receiver.received}
    assert ids == {found[0]["webhook_id"]}
    for received in receiver.received:
        verify_signature(tenant.webhook_secret, received)
        assert received.headers["content-type"] == "application/json"
    assert len({r.body for r in receiver.received}) == 1  # the same event every time

    event = json.loads(receiver.received[-1].body)
    job = tenant.api.get(f"/api/v1/jobs/{job_id}").json()
    assert event["type"] == "job.completed"
    assert event["timestamp"] == job["completed_at"]
    assert event["data"] == job
    assert job["status"] == "COMPLETED"


def test_redelivery_sends_again_with_the_same_webhook_id(tenant, receiver):
    job_id = submit(tenant, [customer()], receiver.url)
    first = wait_attempts(tenant, job_id, delivered, "the first delivery")

    answer = tenant.api.post(f"/api/v1/jobs/{job_id}/webhooks/redeliver")
    assert answer.status == 202, answer.body
    state = answer.json()
    assert state["webhook_id"] == first[0]["webhook_id"]

    again = wait_attempts(tenant, job_id, lambda a: len(a) == 2 and delivered(a), "a redelivery")
    assert [a["attempt"] for a in again] == [1, 2]
    assert receiver.count() == 2
    assert {r.headers["webhook-id"] for r in receiver.received} == {state["webhook_id"]}
    verify_signature(tenant.webhook_secret, receiver.received[-1])


def test_redelivery_asked_for_during_an_attempt_follows_that_attempt(tenant):
    receiver = Receiver(hold_first_seconds=1.0).start()
    try:
        job_id = submit(tenant, [customer()], receiver.url)
        poll(receiver.count, 60, "the first attempt to reach the receiver")
        answer = tenant.api.post(f"/api/v1/jobs/{job_id}/webhooks/redeliver")
        assert answer.status == 202, answer.body
        assert answer.json()["attempts_made"] == 1  # the attempt in flight is not sent over
        found = wait_attempts(tenant, job_id, lambda a: len(a) == 2 and delivered(a), "both")
    finally:
        receiver.stop()
    assert found[0]["next_attempt_at"] is not None  # the redelivery was scheduled after it
    assert receiver.count() == 2
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 1


def test_dead_receiver_gets_the_webhook_after_the_dispatcher_is_killed(tenant, service):
    port = free_port()  # nothing listens here yet: every attempt fails to connect
    comeback = Receiver(port=port)
    job_id = submit(tenant, [customer()], comeback.url)
    # An attempt is listed from the moment it is claimed: wait for the second one's result.
    before_kill = wait_attempts(
        tenant, job_id, lambda a: len(a) >= 2 and finished(a), "two failed attempts"
    )
    assert all(a["status_code"] is None and a["error"] for a in before_kill)

    restart_consumers(service)
    killed_at = len(attempts(tenant, job_id))
    try:
        wait_attempts(
            tenant, job_id, lambda a: len(a) > killed_at, "the respawned dispatcher to retry"
        )
        comeback.start()
        found = wait_attempts(tenant, job_id, delivered, "delivery once the receiver is back")
    finally:
        comeback.stop()
    assert [a["attempt"] for a in found] == list(range(1, len(found) + 1))
    assert all(a["status_code"] is None for a in found[:-1])
    assert comeback.count() == 1
    assert comeback.received[0].headers["webhook-id"] == found[0]["webhook_id"]
    verify_signature(tenant.webhook_secret, comeback.received[0])


def test_an_attempt_cut_short_by_a_killed_dispatcher_is_made_again(tenant, service):
    receiver = Receiver(hold_first_seconds=1.0).start()
    try:
        job_id = submit(tenant, [customer()], receiver.url)
        poll(receiver.count, 60, "the first attempt to reach the receiver")
        restart_consumers(service)  # while the receiver still holds the first attempt
        found = wait_attempts(tenant, job_id, delivered, "the attempt to be made again")
    finally:
        receiver.stop()
    first, *_, last = found
    assert first["status_code"] is None and first["error"].startswith("abandoned")
    assert last["status_code"] == 200 and last["attempt"] == len(found)
    ids = {r.headers["webhook-id"] for r in receiver.received}
    assert ids == {first["webhook_id"]} and receiver.count() == len(found)


def restart_consumers(service: Any) -> None:
    """SIGKILL the consumers process, as a crash would, and start a new one."""
    [consumers] = [p for p in service.others if p.role == "consumers"]
    consumers.kill()
    service.others.remove(consumers)
    service.others.append(spawn("consumers", service.settings, service.log_dir))


def test_two_dispatchers_never_send_the_same_attempt_twice(tenant, service):
    def first_fails(received: Received, so_far: list[Received]) -> int:
        same = [r for r in so_far if r.headers["webhook-id"] == received.headers["webhook-id"]]
        return 500 if len(same) == 1 else 200

    receiver = Receiver(decide=first_fails).start()
    second = spawn("consumers", service.settings, service.log_dir, name="consumers-2")
    service.others.append(second)
    try:
        jobs = [submit(tenant, [customer()], receiver.url) for _ in range(12)]
        found = {
            job_id: wait_attempts(tenant, job_id, delivered, f"job {job_id}'s delivery")
            for job_id in jobs
        }
    finally:
        second.stop()
        service.others.remove(second)
        receiver.stop()
    sends: dict[str, int] = {}
    for received in receiver.received:
        sends[received.headers["webhook-id"]] = sends.get(received.headers["webhook-id"], 0) + 1
    for job_id, made in found.items():
        assert [(a["attempt"], a["status_code"]) for a in made] == [(1, 500), (2, 200)], job_id
        assert sends[made[0]["webhook_id"]] == 2
    assert len(sends) == len(jobs)


def test_a_terminal_job_no_event_announced_still_gets_its_webhook_and_files(
    tenant, settings, receiver
):
    """The safety net: e.g. a job the gateway marked INTERNAL_FAILURE when Kafka was down."""
    job_id = insert_job(
        settings, tenant.tenant_id, "INTERNAL_FAILURE", receiver.url, ended_seconds_ago=40
    )
    [made] = wait_attempts(tenant, job_id, delivered, "the sweep to deliver the webhook")
    event = json.loads(receiver.received[0].body)
    job = tenant.api.get(f"/api/v1/jobs/{job_id}").json()
    assert event["type"] == "job.failed" and event["data"] == job
    assert made["webhook_id"] == receiver.received[0].headers["webhook-id"]

    report = tenant.api.get(f"/api/v1/jobs/{job_id}/report")  # written on the fly
    assert report.status == 200
    assert read_csv(report.body) == [list(REPORT_COLUMNS)]
    results = tenant.api.get(f"/api/v1/jobs/{job_id}/results?format=csv")
    assert read_csv(results.body) == [list(RESULTS_COLUMNS)]


def test_gone_stops_the_retries(tenant, receiver):
    receiver.script = [(410, {})]
    job_id = submit(
        tenant,
        [
            customer(
                addresses=[{"type": "moon", "line1": "1 Crater", "city": "Tycho", "country": "US"}]
            )
        ],
        receiver.url,
    )
    [only] = wait_attempts(tenant, job_id, lambda a: a[-1]["status_code"] == 410, "the 410")
    assert only["next_attempt_at"] is None
    assert "410" in only["error"]
    assert json.loads(receiver.received[0].body)["type"] == "job.failed"  # every record failed

    # A later delivery to the same receiver goes through, and the 410'd one never came back.
    other = submit(tenant, [customer()], receiver.url)
    wait_attempts(tenant, other, delivered, "a delivery of another job")
    assert len(attempts(tenant, job_id)) == 1
    ids = [r.headers["webhook-id"] for r in receiver.received]
    assert ids.count(only["webhook_id"]) == 1


def test_retry_after_delays_the_next_attempt(tenant, receiver):
    receiver.script = [(429, {"Retry-After": "2"})]
    job_id = submit(tenant, [customer()], receiver.url)
    first, second = wait_attempts(
        tenant, job_id, lambda a: len(a) == 2 and delivered(a), "the retry after Retry-After"
    )
    assert first["status_code"] == 429
    assert (moment(first["next_attempt_at"]) - moment(first["at"])).total_seconds() >= 2
    assert moment(second["at"]) >= moment(first["next_attempt_at"])
    assert receiver.received[1].at - receiver.received[0].at >= 1.9


def test_private_webhook_targets_are_refused_at_submit(tenant):
    answer = tenant.api.post(BULK, {"records": [customer()], "webhook_url": "http://10.1.2.3/hook"})
    assert answer.status == 422
    [error] = answer.json()["errors"]
    assert (error["errorCode"], error["field"]) == ("InvalidWebhookUrl", "webhook_url")
    assert "private" in error["message"]
    assert tenant.api.get("/api/v1/jobs").json()["jobs"] == []


@pytest.mark.parametrize(
    "host", ["100.100.100.200", "[::ffff:10.0.0.1]", "[64:ff9b::7f00:1]", "[2002:a00:1::]"]
)
def test_shared_and_embedded_private_targets_are_refused_at_submit(tenant, host):
    answer = tenant.api.post(BULK, {"records": [customer()], "webhook_url": f"http://{host}/h"})
    assert answer.status == 422, answer.body
    assert answer.json()["errors"][0]["errorCode"] == "InvalidWebhookUrl"


def test_a_name_refused_at_send_time_is_never_called(tenant, service, receiver):
    """The gateway accepted ``localhost`` (loopback is allowed on the test stack); then the
    dispatcher's policy no longer allows it — as when a name's DNS answer changes between
    submit and send. The dispatcher resolves the name again before sending, refuses, and the
    receiver never sees a request."""
    [consumers] = [p for p in service.others if p.role == "consumers"]
    consumers.stop()
    service.others.remove(consumers)
    strict = spawn(
        "consumers",
        service.settings.with_overrides(webhook_allow_loopback=False),
        service.log_dir,
        name="consumers-strict",
    )
    try:
        url = receiver.url.replace("127.0.0.1", "localhost")
        job_id = submit(tenant, [customer()], url)
        # An attempt is listed from the moment it is claimed; wait for its result.
        [attempt] = wait_attempts(tenant, job_id, finished, "the refused attempt")
        assert attempt["status_code"] is None and "loopback" in attempt["error"]
        assert attempt["next_attempt_at"] is None  # refused: final, not retried
        assert receiver.received == []
    finally:
        strict.stop()
        service.others.append(spawn("consumers", service.settings, service.log_dir))


# --- reports ----------------------------------------------------------------------------------


def read_csv(body: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(body.decode("utf-8"), newline="")))


def test_report_and_results_list_exactly_what_happened(tenant):
    moon = {"type": "moon", "line1": "1 Crater", "city": "Tycho", "country": "US"}
    hostile = customer(firstName='=HYPERLINK("http://evil.example","click")', addresses=[moon])
    hostile["externalId"] = "=" + hostile["externalId"]
    records = [
        customer(),
        customer(addresses=[moon]),
        customer(),
        customer(importantDates=[{"type": "birthday", "date": "2023-02-30"}]),
        hostile,
    ]
    job_id = submit(tenant, records)
    job = tenant.api.wait_terminal(job_id)
    assert (job["status"], job["successful"], job["failed"]) == ("COMPLETED_WITH_ERRORS", 2, 3)
    assert job["report_url"] == f"/api/v1/jobs/{job_id}/report"

    report = tenant.api.get(job["report_url"])
    assert report.status == 200
    assert report.headers["Content-Type"].startswith("text/csv")
    header, *rows = read_csv(report.body)
    assert header == ["index", "externalId", "errorCode", "failureReason", "record"]
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("1", records[1]["externalId"], "InvalidReference"),
        ("3", records[3]["externalId"], "InvalidValue"),
        ("4", "'" + hostile["externalId"], "InvalidReference"),  # escaped against formulas
    ]
    assert all(r[3] for r in rows)  # a reason a person can read
    assert [json.loads(r[4]) for r in rows] == [records[1], records[3], hostile]
    assert all(not cell.startswith(("=", "+", "-", "@")) for r in rows for cell in r)

    results = tenant.api.get(job["results_url"])
    assert results.status == 200 and results.headers["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(results.body)) as archive:
        assert archive.namelist() == ["results.csv"]
        zipped = archive.read("results.csv")
    header, *lines = read_csv(zipped)
    assert header == ["index", "id", "externalId", "status", "errorCode", "error"]
    assert [line[0] for line in lines] == ["0", "1", "2", "3", "4"]
    assert [line[3] for line in lines] == ["CREATED", "FAILED", "CREATED", "FAILED", "FAILED"]
    assert [line[4] for line in lines] == [
        "",
        "InvalidReference",
        "",
        "InvalidValue",
        "InvalidReference",
    ]
    assert all(uuid.UUID(lines[i][1]) for i in (0, 2)) and lines[1][1] == ""
    assert lines[4][2] == "'" + hostile["externalId"]

    bare = tenant.api.get(job["results_url"] + "?format=csv")
    assert bare.status == 200 and bare.headers["Content-Type"].startswith("text/csv")
    assert bare.body == zipped
    assert tenant.api.get(job["results_url"] + "?format=xlsx").status == 422


def test_reports_wait_for_the_terminal_status_and_stay_within_the_tenant(
    tenant, make_tenant, settings, receiver
):
    ready = insert_ready_job(settings, tenant.tenant_id, webhook_url=receiver.url)
    for path in ("report", "results", "results?format=csv"):
        answer = tenant.api.get(f"/api/v1/jobs/{ready}/{path}")
        assert answer.status == 409, answer.body
        assert answer.json()["errors"][0]["errorCode"] == "ReportNotReady"
    assert tenant.api.post(f"/api/v1/jobs/{ready}/webhooks/redeliver").status == 409
    assert attempts(tenant, ready) == []

    finished = submit(tenant, [customer()], receiver.url)
    tenant.api.wait_terminal(finished)
    wait_attempts(tenant, finished, delivered, "the webhook")
    stranger = make_tenant()
    for job_id in (finished, ready):
        for path in ("report", "results", "webhooks"):
            answer = stranger.api.get(f"/api/v1/jobs/{job_id}/{path}")
            assert answer.status == 404, (path, answer.body)
            assert answer.json()["errors"][0]["errorCode"] == "NotFound"
        assert stranger.api.post(f"/api/v1/jobs/{job_id}/webhooks/redeliver").status == 404
    assert tenant.api.get(f"/api/v1/jobs/{finished}/report").status == 200


def test_redelivery_needs_a_webhook_url(tenant):
    job_id = submit(tenant, [customer()])
    tenant.api.wait_terminal(job_id)
    answer = tenant.api.post(f"/api/v1/jobs/{job_id}/webhooks/redeliver")
    assert answer.status == 422
    assert answer.json()["errors"][0]["errorCode"] == "InvalidWebhookUrl"
    assert attempts(tenant, job_id) == []


def insert_job(
    settings: Any,
    tenant_id: str,
    status: str,
    webhook_url: str | None = None,
    ended_seconds_ago: float | None = None,
) -> str:
    """A job written straight to the database, never announced on Kafka."""
    job_id = str(uuid.uuid4())
    with psycopg.connect(settings.libpq_url) as conn:
        conn.execute(
            "INSERT INTO jobs (job_id, tenant_id, entity, operation, source, status, total, "
            "webhook_url, completed_at) VALUES (%s, %s, 'customers', 'insert', 'api', %s, 10, %s, "
            "now() - make_interval(secs => %s))",
            [job_id, tenant_id, status, webhook_url, ended_seconds_ago],
        )
    return job_id


def insert_ready_job(settings: Any, tenant_id: str, webhook_url: str | None = None) -> str:
    """A job caught before it ends."""
    return insert_job(settings, tenant_id, "READY", webhook_url)
