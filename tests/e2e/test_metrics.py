"""Prometheus metrics of every process, scraped over HTTP like a Prometheus server would.

The exact-count test under a SIGKILL is in test_crash (the records counters summed over the
workers equal the stored outcomes although a batch was redelivered); here: every process
answers, the series are there with bounded labels, and the other counters move with what they
count.
"""

from __future__ import annotations

import urllib.request
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.test_completion import Receiver
from tests.support.http import poll
from tests.support.kafka import dead_letters, publish
from tests.support.metrics import records_counted, scrape, worker_url
from tests.support.records import customers, unique_prefix

pytestmark = pytest.mark.e2e

ASYNC = "/api/v1/customers/bulk/async"
SERIES = {
    "bulk_ingest_records",
    "bulk_ingest_jobs",
    "bulk_ingest_persist_batch_seconds",
    "bulk_ingest_record_seconds",
    "bulk_ingest_consumer_lag",
    "bulk_ingest_dead_letters",
    "bulk_ingest_webhook_deliveries",
}
FORBIDDEN_LABELS = {"job_id", "tenant_id", "key", "index"}


def families(url: str) -> dict[str, set[str]]:
    """The metric families at ``url`` and the label names their samples carry."""
    with urllib.request.urlopen(url, timeout=10) as answer:
        text = answer.read().decode()
    return {
        family.name: {name for sample in family.samples for name in sample.labels}
        for family in text_string_to_metric_families(text)
    }


def urls(settings, service) -> dict[str, str]:  # type: ignore[no-untyped-def]
    found = {
        "gateway": f"{service.base_url}/metrics",
        "consumers": f"http://127.0.0.1:{settings.metrics_port}/metrics",
    }
    found.update({w.role: worker_url(settings, w.role) for w in service.workers})
    return found


def test_every_process_serves_the_series_with_bounded_labels(settings, service):
    for process, url in urls(settings, service).items():
        found = families(url)
        assert set(found) >= SERIES, (process, sorted(found))
        for name in SERIES:
            assert not found[name] & FORBIDDEN_LABELS, (process, name, found[name])


def test_counters_move_with_records_jobs_webhooks_and_dead_letters(tenant, settings, service):
    every = urls(settings, service)
    workers = [w.role for w in service.workers]
    before = {name: scrape(url) for name, url in every.items()}
    receiver = Receiver().start()
    try:
        records = customers(unique_prefix(), 300)
        answer = tenant.api.post(ASYNC, {"records": records, "webhook_url": receiver.url})
        assert answer.status == 202, answer.body
        assert tenant.api.wait_terminal(answer.json()["job_id"])["status"] == "COMPLETED"
        poll(lambda: receiver.count() >= 1, 60, "the webhook")
        key = str(uuid.uuid4()).encode()
        publish(settings.kafka_bootstrap, settings.topics.records, [b"not avro"], key)
        dead_letters(settings, key)

        def moved(metric: str, labels: tuple[tuple[str, str], ...], among: list[str]) -> float:
            now = {name: scrape(every[name]) for name in among}
            return sum(
                now[name].get((metric, labels), 0.0) - before[name].get((metric, labels), 0.0)
                for name in among
            )

        created = sum(
            records_counted(scrape(every[w]), "CREATED") - records_counted(before[w], "CREATED")
            for w in workers
        )
        assert created == 300
        jobs = moved("bulk_ingest_jobs_total", (("status", "COMPLETED"),), workers)
        assert jobs >= 1
        delivered = ("bulk_ingest_webhook_deliveries_total", (("result", "delivered"),))
        poll(lambda: moved(*delivered, ["consumers"]) == 1, 30, "the delivery to be counted")
        dead = sum(
            value - before[w].get((name, labels), 0.0)
            for w in workers
            for (name, labels), value in scrape(every[w]).items()
            if name == "bulk_ingest_dead_letters_total"
            and dict(labels)["topic"] == settings.topics.records
        )
        assert dead == 1
        batches = moved("bulk_ingest_persist_batch_seconds_count", (), workers)
        assert batches >= 1
        latencies = moved("bulk_ingest_record_seconds_count", (), workers)
        assert latencies == 300, "one end-to-end latency per stored record"
        assert moved("bulk_ingest_record_seconds_sum", (), workers) > 0
    finally:
        receiver.stop()


def test_consumer_lag_covers_every_partition_once_quiet(settings, service):
    workers = [w.role for w in service.workers]

    def lag_by_partition() -> dict[int, float] | None:
        found: dict[int, float] = {}
        for worker in workers:
            for (name, labels), value in scrape(worker_url(settings, worker)).items():
                tags = dict(labels)
                if name == "bulk_ingest_consumer_lag" and tags["topic"] == settings.topics.records:
                    assert int(tags["partition"]) not in found, "a partition has one owner"
                    found[int(tags["partition"])] = value
        everything = len(found) == settings.partitions and not any(found.values())
        return found if everything else None

    lag = poll(lag_by_partition, 60, "every bulk.records partition reported, with no lag")
    assert sorted(lag) == list(range(settings.partitions))
