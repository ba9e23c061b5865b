"""The stream worker: a Faust app with three agents, assembled in one factory.

``bulk.requests`` ─ validate_requests ─▶ ``bulk.records`` ─ persist_records ─▶ ``bulk.outcomes``
                                                                    └──────▶ ``bulk.progress``
``bulk.progress`` ─ aggregate_jobs (Faust table keyed by job_id) ─▶ jobs row + ``bulk.jobs``

Each agent finishes its side effects (database commit, produced messages acknowledged by the
broker) before it returns to Faust for the next event, and Faust commits an offset only for
events that were handed back: offsets move after the data is durable, never before.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping
from typing import Any

import faust
import psycopg
from faust.types import TP

from bulk_ingest.kafka import AsyncProducer, KafkaUnavailable, OutgoingMessage
from bulk_ingest.settings import Settings
from domain.codec import UndecodableMessage, load_codec
from domain.entities import DEFAULT_REFERENCE_TYPES, EntityRegistry, default_schemas_dir
from domain.jobs import JobStatus, is_terminal
from domain.outcomes import Outcome, PendingRecord, RecordFailure
from domain.routing import routing_key
from storage.connection import StageConnection
from storage.entity_rows import EntityTableMap
from storage.persist import BatchPart, BatchPersister
from streams.aggregate import JobAggregator
from streams.imports import register_import_agent
from streams.validate import route_chunk
from streams.watchdog import InFlight, StallWatch

log = logging.getLogger("bulk_ingest.worker")
RETRY_SECONDS = 1.0
REFERENCE_TTL_SECONDS = 30.0


class Codecs:
    def __init__(self, schemas_dir: Any) -> None:
        self.requests = load_codec(schemas_dir, "bulk.requests")
        self.records = load_codec(schemas_dir, "bulk.records")
        self.outcomes = load_codec(schemas_dir, "bulk.outcomes")
        self.jobs = load_codec(schemas_dir, "bulk.jobs")
        self.progress = load_codec(schemas_dir, "bulk.progress")


class DeadLetters:
    """Undecodable messages go to the DLQ with the reason in headers; the stream keeps going."""

    def __init__(self, producer: AsyncProducer, topic: str) -> None:
        self._producer = producer
        self._topic = topic

    async def send(self, event: Any, error: UndecodableMessage) -> None:
        message = event.message
        log.warning(
            "dead-lettering %s[%s]@%s: %s", message.topic, message.partition, message.offset, error
        )
        headers = [
            ("dlq.reason", error.reason.encode()),
            ("dlq.detail", error.detail.encode()[:1000]),
            ("dlq.topic", str(message.topic).encode()),
            ("dlq.partition", str(message.partition).encode()),
            ("dlq.offset", str(message.offset).encode()),
        ]
        await self._producer.send_all(
            [
                OutgoingMessage(
                    self._topic, bytes(message.value or b""), message.key, headers=headers
                )
            ]
        )


class ValidateLookups:
    """The validate stage's database needs, over one long-lived connection.

    A chunk published straight to Kafka registers its job; a chunk of a terminal job is ignored;
    per-tenant reference types (address types, date types) are cached briefly.
    """

    def __init__(self, libpq_url: str) -> None:
        self._connection = StageConnection(libpq_url, autocommit=True)
        self._references: dict[str, tuple[float, Mapping[str, frozenset[str]]]] = {}

    async def job_status(self, chunk: Mapping[str, Any]) -> str | None:
        """The job's status, registering it first if it is new (None: unknown tenant)."""
        conn = await self._connection.get()
        await conn.execute(
            "INSERT INTO jobs (job_id, tenant_id, entity, operation, source, status, total, "
            "webhook_url) SELECT %s, %s, %s, %s, %s, 'READY', %s, %s "
            "WHERE EXISTS (SELECT 1 FROM tenants WHERE tenant_id = %s) "
            "ON CONFLICT (job_id) DO NOTHING",
            [
                chunk["job_id"],
                chunk["tenant_id"],
                chunk["entity"],
                chunk["operation"],
                chunk["source"],
                chunk["total"],
                chunk["webhook_url"],
                chunk["tenant_id"],
            ],
        )
        cursor = await conn.execute("SELECT status FROM jobs WHERE job_id = %s", [chunk["job_id"]])
        row = await cursor.fetchone()
        return row[0] if row else None

    async def reference_types_for(self, tenant_id: str) -> Mapping[str, frozenset[str]]:
        cached = self._references.get(tenant_id)
        if cached and time.monotonic() - cached[0] < REFERENCE_TTL_SECONDS:
            return cached[1]
        conn = await self._connection.get()
        cursor = await conn.execute(
            "SELECT kind, value FROM reference_types WHERE tenant_id = %s", [tenant_id]
        )
        found: dict[str, set[str]] = {}
        for kind, value in await cursor.fetchall():
            found.setdefault(kind, set()).add(value)
        types = {k: frozenset(v) for k, v in found.items()} or dict(DEFAULT_REFERENCE_TYPES)
        self._references[tenant_id] = (time.monotonic(), types)
        return types


def pending_records(batch: Mapping[str, Any]) -> list[PendingRecord]:
    records = []
    for routed in batch["records"]:
        error = routed["error"]
        records.append(
            PendingRecord(
                job_id=batch["job_id"],
                tenant_id=batch["tenant_id"],
                entity=batch["entity"],
                operation=batch["operation"],
                index=routed["index"],
                key=routed["key"],
                record=routed["record"],
                failure=RecordFailure(error["code"], error["message"], error["field"])
                if error
                else None,
                line=routed["line"],
                source=routed.get("source"),
            )
        )
    return records


def outcome_event(outcome: Outcome) -> dict[str, Any]:
    return {
        "job_id": outcome.job_id,
        "tenant_id": outcome.tenant_id,
        "entity": outcome.entity,
        "index": outcome.index,
        "key": outcome.key,
        "status": outcome.status.value,
        "record_id": outcome.record_id,
        "error_code": outcome.error_code,
        "error_message": outcome.error_message,
        "error_field": outcome.error_field,
        "line": outcome.line,
    }


def create_app(settings: Settings) -> faust.App:
    schemas_dir = default_schemas_dir()
    datadir = settings.state_dir / "faust" / settings.worker_id
    datadir.mkdir(parents=True, exist_ok=True)
    registry = EntityRegistry.load(schemas_dir)
    codecs = Codecs(schemas_dir)
    topics = settings.topics
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        broker_commit_every=1000,
        broker_commit_interval=0.5,
        # A SIGKILLed worker's partitions move to the survivors within seconds, not a minute.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        broker_rebalance_timeout=20.0,
        producer_acks=-1,
        consumer_max_fetch_size=32 * 1024 * 1024,
        producer_max_request_size=16 * 1024 * 1024,
        table_cleanup_interval=60.0,
        datadir=str(datadir),
    )
    raw = {
        "key_type": bytes,
        "value_type": bytes,
        "key_serializer": "raw",
        "value_serializer": "raw",
    }
    requests_topic = app.topic(topics.requests, **raw)
    records_topic = app.topic(topics.records, **raw)
    progress_topic = app.topic(topics.progress, **raw)
    job_table = app.Table(
        "job-progress", default=None, partitions=settings.partitions, key_type=str
    )
    producer = AsyncProducer(
        settings.kafka_bootstrap, client_id=f"bulk-ingest-{settings.worker_id}"
    )
    tables = {name: EntityTableMap.of(registry.get(name)) for name in registry.names()}
    state: dict[str, Any] = {
        "producer": producer,
        "dlq": DeadLetters(producer, topics.dlq),
        "lookups": ValidateLookups(settings.libpq_url),
        "persister": BatchPersister(settings.libpq_url, tables),
        "aggregator": JobAggregator(settings.libpq_url, producer, codecs.jobs, topics.jobs),
    }

    in_flight = InFlight()
    source_topics = {topics.requests, topics.records, topics.progress, topics.imports}

    @app.agent(requests_topic)
    async def validate_requests(stream: Any) -> None:
        async for event in stream.events():
            tp = event.message.tp
            in_flight.begin(tp.topic, tp.partition)
            await _retrying(lambda event=event: _validate_one(event))
            in_flight.end(tp.topic, tp.partition)

    async def _validate_one(event: Any) -> None:
        try:
            chunk = codecs.requests.decode(event.message.value)
        except UndecodableMessage as error:
            await state["dlq"].send(event, error)
            return
        status = await state["lookups"].job_status(chunk)
        if status is None:
            log.warning("request chunk for unknown tenant %s dropped", chunk["tenant_id"])
            await state["dlq"].send(event, UndecodableMessage("unknown-tenant", chunk["tenant_id"]))
            return
        if is_terminal(JobStatus(status)):
            log.info(
                "job %s is %s; its chunk %s is ignored",
                chunk["job_id"],
                status,
                chunk["chunk_index"],
            )
            return
        references = await state["lookups"].reference_types_for(chunk["tenant_id"])
        batches = route_chunk(registry, chunk, references, settings.partitions)
        await state["producer"].send_all(
            OutgoingMessage(
                topics.records,
                codecs.records.encode(batch.payload),
                chunk["job_id"].encode(),
                partition=batch.partition,
            )
            for batch in batches
        )

    @app.agent(records_topic)
    async def persist_records(stream: Any) -> None:
        async for events in stream.take_events(
            settings.persist_batch_records, within=settings.persist_batch_seconds
        ):
            tps = {(e.message.tp.topic, e.message.tp.partition) for e in events}
            for tp in tps:
                in_flight.begin(*tp)
            await _retrying(lambda events=events: _persist_events(events))
            for tp in tps:
                in_flight.end(*tp)

    async def _persist_events(events: list[Any]) -> None:
        started = time.perf_counter()
        parts: dict[tuple[str, str], BatchPart] = {}
        for event in events:
            try:
                batch = codecs.records.decode(event.message.value)
            except UndecodableMessage as error:
                await state["dlq"].send(event, error)
                continue
            parts.setdefault(
                (batch["job_id"], batch["part_id"]),
                BatchPart(
                    batch["job_id"],
                    batch["tenant_id"],
                    batch["part_id"],
                    batch["total"],
                    pending_records(batch),
                ),
            )
        if not parts:
            return
        statuses = await state["persister"].job_statuses(job for job, _ in parts)
        live = [
            p
            for p in parts.values()
            if not is_terminal(JobStatus(statuses.get(p.job_id, "INTERNAL_FAILURE")))
        ]
        if not live:
            return
        decoded = time.perf_counter()
        persisted = await state["persister"].persist(live)
        stored = time.perf_counter()
        messages = [
            OutgoingMessage(
                topics.outcomes,
                codecs.outcomes.encode(outcome_event(o)),
                routing_key(o.tenant_id, o.entity, o.key, o.index).encode(),
            )
            for o in persisted.outcomes
        ]
        messages.extend(
            OutgoingMessage(
                topics.progress,
                codecs.progress.encode(
                    {
                        "job_id": p.job_id,
                        "tenant_id": p.tenant_id,
                        "total": p.total,
                        "part_id": p.part_id,
                    }
                ),
                p.job_id.encode(),
            )
            # One nudge per job per batch: the aggregator recounts from the database anyway.
            for p in {part.job_id: part for part in persisted.parts}.values()
        )
        encoded = time.perf_counter()
        await state["producer"].send_all(messages)
        log.info(
            "persisted %d records (%d parts) in %.0f ms: decode %.0f, db %.0f, encode %.0f, "
            "produce %.0f",
            len(persisted.outcomes),
            len(persisted.parts),
            (time.perf_counter() - started) * 1000,
            (decoded - started) * 1000,
            (stored - decoded) * 1000,
            (encoded - stored) * 1000,
            (time.perf_counter() - encoded) * 1000,
        )

    @app.agent(progress_topic)
    async def aggregate_jobs(stream: Any) -> None:
        async for event in stream.events():
            job_id = event.key.decode()
            tp = event.message.tp
            in_flight.begin(tp.topic, tp.partition)
            await _retrying(
                lambda job_id=job_id: state["aggregator"].on_progress(job_id, job_table)
            )
            in_flight.end(tp.topic, tp.partition)

    watch = StallWatch(settings.kafka_bootstrap, settings.app_id, settings.stall_seconds)

    reseeked: set[tuple[str, int]] = set()

    @app.timer(interval=settings.stall_check_seconds)
    async def watch_for_stalled_partitions() -> None:
        owned = [
            (tp.topic, tp.partition)
            for tp in app.consumer.assignment()
            if tp.topic in source_topics
        ]
        stalls = await asyncio.to_thread(watch.stalled, owned, in_flight)
        fatal = [s for s in stalls if (s.topic, s.partition) in reseeked]
        if fatal:
            log.error(
                "partitions still stalled after a seek (faust-streaming#629?): %s; exiting so "
                "they are reassigned",
                ", ".join(map(str, fatal)),
            )
            logging.shutdown()
            os._exit(75)
        for stall in stalls:
            log.warning("partition stalled: %s; seeking it back to its committed offset", stall)
            reseeked.add((stall.topic, stall.partition))
            await app.consumer.seek(TP(stall.topic, stall.partition), stall.committed)

    import_files = register_import_agent(
        app,
        app.topic(topics.imports, **raw),
        settings,
        registry,
        producer,
        state["lookups"],
        state["dlq"],
        _retrying,
        in_flight,
    )

    app.bulk_ingest_agents = (validate_requests, persist_records, aggregate_jobs, import_files)  # type: ignore[attr-defined]
    return app


TRANSIENT = (psycopg.OperationalError, psycopg.errors.UniqueViolation, OSError, KafkaUnavailable)


async def _retrying(step: Any) -> None:
    """Transient failures (database restart, broker hiccup) are retried; nothing is skipped.

    Anything else is a bug: the worker exits at once (its offsets uncommitted, so the batch is
    redelivered to a healthy worker) rather than leave a crashed agent silently holding its
    partitions. The run command restarts exited workers.
    """
    attempt = 0
    while True:
        try:
            await step()
            return
        except TRANSIENT as exc:
            attempt += 1
            log.warning("transient failure (attempt %s), retrying: %r", attempt, exc)
        except Exception:
            log.exception("unexpected failure; the worker exits so its partitions move on")
            logging.shutdown()
            os._exit(70)
        await asyncio.sleep(min(RETRY_SECONDS * attempt, 10))


def run_worker(settings: Settings) -> None:
    from faust.worker import Worker

    app = create_app(settings)
    worker = Worker(app, loglevel="INFO", quiet=True)
    worker.execute_from_commandline()
