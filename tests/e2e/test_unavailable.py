"""A gateway that cannot reach Kafka or PostgreSQL answers 503 with Retry-After, never 500, and
leaves no job behind: an abandoned job is ended by the workers, and a retry with the same
Idempotency-Key creates a new job instead of replaying the failed one.

Each test runs a second, real gateway process whose broker or database address leads nowhere
(nothing listens on port 1), beside the healthy service the other tests use.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bulk_ingest.processes import ServiceProcess, spawn
from tests.support.http import Api, poll
from tests.support.records import customers, unique_prefix

ASYNC = "/api/v1/customers/bulk/async"
NOWHERE = "127.0.0.1:1"


def broken_gateway(settings, service, name: str, offset: int, **overrides) -> Iterator[Api]:
    port = settings.http_port + offset
    broken = settings.with_overrides(http_port=port, **overrides)
    process: ServiceProcess = spawn("gateway", broken, service.log_dir, name=name)
    base = f"http://{settings.http_host}:{port}"
    try:

        def answering() -> bool:
            assert process.alive(), process.log_tail()
            try:
                return Api(base).get("/healthz", timeout=5).status in (200, 503)
            except OSError:
                return False

        poll(answering, 60, f"{name} to answer")
        yield Api(base)
    finally:
        process.stop()


@pytest.fixture
def gateway_without_kafka(settings, service) -> Iterator[Api]:
    yield from broken_gateway(
        settings,
        service,
        "gateway-no-kafka",
        50,
        kafka_bootstrap=NOWHERE,
        kafka_delivery_timeout_seconds=2.0,
    )


@pytest.fixture
def gateway_without_postgres(settings, service) -> Iterator[Api]:
    url = settings.database_url.replace("@127.0.0.1:5432/", "@127.0.0.1:1/")
    assert url != settings.database_url
    yield from broken_gateway(settings, service, "gateway-no-postgres", 51, database_url=url)


def test_kafka_unreachable_is_a_503_and_the_same_key_then_makes_a_new_job(
    tenant, gateway_without_kafka
):
    assert gateway_without_kafka.get("/healthz").json()["kafka"] is False
    broken = Api(gateway_without_kafka.base_url, tenant.api_key)
    body = {"records": customers(unique_prefix(), 25)}
    key = {"Idempotency-Key": f"order-{unique_prefix()}"}

    refused = broken.post(ASYNC, body, headers=key)
    assert refused.status == 503, refused.body
    assert refused.headers["Retry-After"] == "5"
    error = refused.json()["errors"][0]
    assert error["errorCode"] == "ServiceUnavailable" and "Retry the request" in error["message"]

    (abandoned,) = tenant.api.get("/api/v1/jobs").json()["jobs"]
    assert abandoned["job_id"] in error["message"]
    ended = tenant.api.wait_terminal(abandoned["job_id"], timeout=60)
    assert (ended["status"], ended["total"], ended["processed"], ended["failed"]) == (
        "INTERNAL_FAILURE",
        25,
        25,
        25,
    )
    assert {e["errorCode"] for e in ended["errors"]} == {"RecordNotReceived"}
    assert "could not be published to Kafka" in ended["failure_reason"]

    retried = tenant.api.post(ASYNC, body, headers=key)
    assert retried.status == 202 and "Idempotent-Replayed" not in retried.headers
    assert retried.json()["job_id"] != abandoned["job_id"]
    assert tenant.api.wait_terminal(retried.json()["job_id"])["successful"] == 25
    replay = tenant.api.post(ASYNC, body, headers=key)
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert replay.json()["job_id"] == retried.json()["job_id"]


def test_postgres_unreachable_is_a_503_on_every_route(tenant, gateway_without_postgres):
    health = gateway_without_postgres.get("/healthz")
    assert health.status == 503 and health.json()["postgres"] is False
    broken = Api(gateway_without_postgres.base_url, tenant.api_key)
    for answer in (
        broken.get("/api/v1/jobs"),
        broken.post(ASYNC, {"records": customers(unique_prefix(), 2)}),
        broken.get(f"/api/v1/jobs/{'0' * 8}-0000-4000-8000-{'0' * 12}"),
    ):
        assert answer.status == 503, answer.body
        assert answer.headers["Retry-After"] == "5"
        assert answer.json()["errors"][0]["errorCode"] == "ServiceUnavailable"
    assert tenant.api.get("/api/v1/jobs").json()["jobs"] == []
