"""Prometheus metrics: the one place that defines every series the service exposes.

Each process (gateway, every worker, the consumers) has its own counters, in
``prometheus_client``'s default registry, served in the Prometheus text format: the gateway on
``GET /metrics``, a worker on ``BULK_INGEST_METRICS_PORT + N`` (N from its id, ``worker-N``), the
consumers on ``BULK_INGEST_METRICS_PORT`` (0 turns both off). A counter moves when what it
counts is first durable — a record when its outcome is committed to the ledger, never when a
redelivered batch re-emits a stored outcome — so summed over the processes it matches the
database (a process's counts restart with it, as Prometheus expects of a counter). Labels are
bounded: entity, outcome, status, topic, reason, result; never a job or tenant id. The ports
listen on ``BULK_INGEST_HTTP_HOST``, as the gateway does.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)

log = logging.getLogger("bulk_ingest.metrics")

RECORDS = Counter(
    "bulk_ingest_records",
    "Records whose outcome was stored, by entity and outcome (CREATED, UPDATED, UNCHANGED, "
    "FAILED, SKIPPED); counted at the first durable write, never on a re-emission",
    ["entity", "outcome"],
)
JOBS = Counter(
    "bulk_ingest_jobs",
    "Job status changes published on bulk.jobs, by the status reached",
    ["status"],
)
PERSIST_BATCH_SECONDS = Histogram(
    "bulk_ingest_persist_batch_seconds",
    "Time to write one batch of records in one transaction (entity rows, ledger, counts)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
RECORD_SECONDS = Histogram(
    "bulk_ingest_record_seconds",
    "Record end-to-end latency: from its job's acceptance to its outcome's first durable write",
    buckets=(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0),
)
CONSUMER_LAG = Gauge(
    "bulk_ingest_consumer_lag",
    "Messages of a partition this worker owns not yet committed by its group (high watermark "
    "minus committed offset), by topic and partition; read every watchdog check",
    ["topic", "partition"],
)
LIVE_VIEW_READS = Counter(
    "bulk_ingest_live_view_reads",
    "Reads of job rows by the gateway's live view, for all its event streams together (at most "
    "one per 0.25 s tick while watched jobs change, however many clients listen)",
)
DEAD_LETTERS = Counter(
    "bulk_ingest_dead_letters",
    "Messages sent to the dead-letter topic, by the topic they came from and the reason",
    ["topic", "reason"],
)
WEBHOOK_DELIVERIES = Counter(
    "bulk_ingest_webhook_deliveries",
    "Webhook delivery attempts by result: delivered, failed (a retry follows), gave_up",
    ["result"],
)

_WORKER_NUMBER = re.compile(r"(\d+)$")


def exposition() -> tuple[bytes, str]:
    """This process's metrics in the Prometheus text format, and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST


def worker_port(base: int, worker_id: str) -> int:
    """The metrics port of worker ``worker-N``: ``base + N`` (N is 1 without a number); 0, off,
    when ``base`` is."""
    if base <= 0:
        return 0
    found = _WORKER_NUMBER.search(worker_id)
    return base + (int(found.group(1)) if found else 1)


def serve(port: int, host: str) -> None:
    """Serve this process's metrics on ``port`` (0: not at all) from a background thread."""
    if port <= 0:
        return
    try:
        start_http_server(port, addr=host)
    except OSError as exc:  # the port is taken: the process still does its work
        log.error("metrics cannot be served on %s:%d: %s", host, port, exc)
        return
    log.info("metrics on http://%s:%d/metrics", host, port)


def observe_record_latency(
    written: Iterable[str], accepted_at: Mapping[str, datetime], now: datetime | None = None
) -> None:
    """One latency observation per newly stored outcome (``written``: each one's job id), from
    its job's acceptance time to ``now``."""
    now = now or datetime.now(UTC)
    counts: dict[str, int] = {}
    for job_id in written:
        counts[job_id] = counts.get(job_id, 0) + 1
    for job_id, count in counts.items():
        if job_id in accepted_at:
            seconds = max((now - accepted_at[job_id]).total_seconds(), 0.0)
            for _ in range(count):
                RECORD_SECONDS.observe(seconds)


def set_consumer_lag(lag: Mapping[tuple[str, int], int], gone: Iterable[tuple[str, int]]) -> None:
    """This worker's lag on the partitions it owns; partitions it no longer owns are dropped."""
    for (topic, partition), waiting in lag.items():
        CONSUMER_LAG.labels(topic, str(partition)).set(waiting)
    for topic, partition in gone:
        with contextlib.suppress(KeyError):
            CONSUMER_LAG.remove(topic, str(partition))


def count_records(counts: Mapping[tuple[str, str], int]) -> None:
    """Count newly stored outcomes, by (entity, outcome) (call once their transaction
    committed)."""
    for (entity, outcome), count in counts.items():
        if count:
            RECORDS.labels(entity, outcome).inc(count)
