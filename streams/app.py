"""The stream worker: a Faust app whose agents each hand their messages to one stage runner.

``bulk.requests`` ─ validate ─▶ ``bulk.records`` ─ persist ─▶ ``bulk.outcomes``
                                                         └──▶ ``bulk.progress``
``bulk.progress`` ─ aggregate (Faust table keyed by job_id) ─▶ jobs row + ``bulk.jobs``
``bulk.imports``  ─ import ─▶ ``bulk.records``

A stage (``streams/*_stage.py``, ``streams/aggregate.py``, ``streams/imports.py``) is a class
with one job; :class:`bulk_ingest.stage_runner.StageRunner` owns retries and the error policy
for all of them. Each runner finishes its side effects (database commit, produced messages
acknowledged by the broker) before the agent returns to Faust for the next event, and Faust
commits an offset only for events that were handed back: offsets move after the data is
durable, never before. Two timers keep the pipeline honest: the stall watchdog
(faust-streaming#629) and the incomplete-job sweeper.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import faust
from faust.types import TP, AgentT, StreamT

from bulk_ingest import metrics
from bulk_ingest.dead_letters import DeadLetterQueue, Delivery
from bulk_ingest.kafka import MAX_MESSAGE_BYTES, AsyncProducer, BatchProducer
from bulk_ingest.settings import Settings
from bulk_ingest.stage_runner import RetryPolicy, Stage, StageRunner
from bulk_ingest.topics import Topics, load_codecs
from domain.entities import EntityRegistry, default_schemas_dir
from storage.connection import StageConnection
from storage.entity_rows import EntityTableMap
from storage.message_failures import MessageFailureLog
from storage.persist import BatchPersister
from streams.aggregate import AggregateStage, JobAggregator
from streams.events import Announcer
from streams.imports import ImportRunner, ImportStage, import_config
from streams.persist_stage import PersistStage
from streams.sweeper import IncompleteJobSweeper
from streams.unprocessed import UnprocessedRecords
from streams.validate_stage import ReferenceTypes, ValidateConfig, ValidateStage
from streams.watchdog import InFlight, StallWatch

log = logging.getLogger("bulk_ingest.worker")

MAX_BATCH_BYTES = MAX_MESSAGE_BYTES // 2
"""Record batches are cut to half the largest message Kafka takes here."""
VALIDATE_BATCH = 8
"""Request chunks the validate stage takes at once (at most ~64 MiB of chunks in memory)."""
VALIDATE_WAIT_SECONDS = 0.02
"""How long it waits for more chunks: short, a sync request of one chunk is waiting — but not
shorter, because Faust wakes the worker this often even when nothing arrives (an idle worker
spent 9.2 % of a core at 5 ms, 4.4 % at 20 ms, 2.5 % at 50 ms; measured 2026-12-01)."""


def delivery_of(event: Any) -> Delivery:
    message = event.message
    return Delivery(
        str(message.topic),
        int(message.partition),
        int(message.offset),
        message.key,
        bytes(message.value or b""),
    )


@dataclass(frozen=True)
class Services:
    """What the stages share, built once per worker."""

    registry: EntityRegistry
    topics: Topics
    producer: AsyncProducer
    outcome_producer: BatchProducer  # the persist stage's own: an event per record
    announcer: Announcer
    dead_letters: DeadLetterQueue
    failures: MessageFailureLog
    unprocessed: UnprocessedRecords
    policy: RetryPolicy
    in_flight: InFlight

    def runner(self, stage: Stage) -> StageRunner:
        return StageRunner(
            stage, self.dead_letters, self.failures, self.policy, activity=self.in_flight
        )


def build_services(settings: Settings) -> Services:
    registry = EntityRegistry.load(default_schemas_dir())
    codecs, writer_schemas = load_codecs(settings)
    topics = Topics.bind(settings.topics, codecs, writer_schemas)
    producer = AsyncProducer(
        settings.kafka_bootstrap,
        client_id=f"bulk-ingest-{settings.worker_id}",
        delivery_timeout_seconds=settings.kafka_delivery_timeout_seconds,
    )
    outcome_producer = BatchProducer(
        settings.kafka_bootstrap,
        client_id=f"bulk-ingest-{settings.worker_id}-outcomes",
        delivery_timeout_seconds=settings.kafka_delivery_timeout_seconds,
    )
    announcer = Announcer(codecs, settings.topics)
    labels = {name: registry.get(name).label for name in registry.names()}
    return Services(
        registry=registry,
        topics=topics,
        producer=producer,
        outcome_producer=outcome_producer,
        announcer=announcer,
        dead_letters=DeadLetterQueue(producer, topics.dlq),
        failures=MessageFailureLog(settings.libpq_url, settings.app_id),
        unprocessed=UnprocessedRecords(settings.libpq_url, producer, announcer, labels),
        policy=RetryPolicy(poison_attempts=settings.poison_attempts),
        in_flight=InFlight(),
    )


def validate_stage(settings: Settings, services: Services) -> ValidateStage:
    connection = StageConnection(settings.libpq_url, autocommit=True)
    return ValidateStage(
        ValidateConfig(
            partitions=settings.partitions,
            max_job_records=settings.max_job_records,
            max_message_bytes=MAX_BATCH_BYTES,
        ),
        services.registry,
        services.topics.requests,
        services.topics.records,
        services.producer,
        services.dead_letters,
        connection,
        ReferenceTypes(connection),
        services.unprocessed,
        services.topics.writer_schemas,
    )


def persist_stage(settings: Settings, services: Services) -> PersistStage:
    registry = services.registry
    tables = {name: EntityTableMap.of(registry.get(name)) for name in registry.names()}
    labels = {name: registry.get(name).label for name in registry.names()}
    persister = BatchPersister(
        settings.libpq_url, tables, services.announcer.encode_outcome, labels
    )
    return PersistStage(
        registry,
        services.topics.records,
        services.outcome_producer,
        services.dead_letters,
        persister,
        services.announcer,
        services.unprocessed,
        settings.fault_injection_key,
    )


def import_stage(app: faust.App, settings: Settings, services: Services) -> ImportStage:
    references = ReferenceTypes(StageConnection(settings.libpq_url, autocommit=True))
    runner = ImportRunner(
        import_config(settings, MAX_BATCH_BYTES),
        services.registry,
        services.topics,
        services.producer,
        references.of,
        should_hand_over=lambda: bool(app.rebalancing) or bool(app.should_stop),
        unprocessed=services.unprocessed,
        announcer=services.announcer,
    )
    return ImportStage(runner, services.dead_letters)


def faust_app(settings: Settings) -> faust.App:
    datadir = settings.state_dir / "faust" / settings.worker_id
    datadir.mkdir(parents=True, exist_ok=True)
    return faust.App(
        settings.app_id,
        broker=";".join(f"kafka://{server}" for server in settings.bootstrap_servers),
        store="memory://",
        topic_partitions=settings.partitions,
        # Changelogs and the assignor's topic: as many copies as ours (their min.insync.replicas
        # is the brokers' default, which the stack sets to the same rule).
        topic_replication_factor=settings.replication.factor,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        broker_commit_every=1000,
        broker_commit_interval=settings.commit_interval_seconds,
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


def create_app(settings: Settings) -> faust.App:
    """Wiring only: each source topic → its stage → an agent that hands it batches."""
    app = faust_app(settings)
    services = build_services(settings)
    topics = services.topics
    job_table = app.Table(
        "job-progress", default=None, partitions=settings.partitions, key_type=str
    )
    aggregator = JobAggregator(
        settings.libpq_url,
        services.producer,
        topics.jobs,
        services.unprocessed.cancel,
        services.unprocessed.stop_for_error_rate,
    )
    # A few chunks at a time: their produce acknowledgements overlap (VALIDATE_BATCH).
    _agent(
        app,
        topics.requests.name,
        services.runner(validate_stage(settings, services)),
        batch=VALIDATE_BATCH,
        within=VALIDATE_WAIT_SECONDS,
    )
    _agent(
        app,
        topics.records.name,
        services.runner(persist_stage(settings, services)),
        batch=settings.persist_batch_records,
        within=settings.persist_batch_seconds,
    )
    _agent(
        app,
        topics.progress.name,
        services.runner(AggregateStage(aggregator, job_table, services.dead_letters)),
    )
    _agent(app, topics.imports.name, services.runner(import_stage(app, settings, services)))
    _watch_for_stalls(app, settings, services.in_flight)
    _sweep_incomplete_jobs(app, settings, services)
    return app


def _agent(
    app: faust.App, topic: str, runner: StageRunner, *, batch: int = 1, within: float = 0.0
) -> AgentT[Any]:
    """An agent reading ``topic`` raw and handing ``runner`` up to ``batch`` events at a time
    (waiting at most ``within`` seconds for more), one event at a time when ``batch`` is 1."""
    source = app.topic(
        topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )

    async def hand_to_stage(stream: StreamT[Any]) -> None:
        if batch == 1:
            async for event in stream.events():
                await runner.run([delivery_of(event)])
            return
        buffered = cast("faust.Stream[Any]", stream)  # what Faust hands an agent; has take_events
        async for events in buffered.take_events(batch, within=within):
            await runner.run([delivery_of(event) for event in events])

    return app.agent(source, name=f"{runner.stage.name}-agent")(hand_to_stage)


def _every(app: faust.App, seconds: float, task: Callable[[], Awaitable[None]]) -> None:
    """Run ``task`` every ``seconds`` (Faust's timer, whose decorator is untyped)."""
    app.timer(interval=seconds)(task)


def _watch_for_stalls(app: faust.App, settings: Settings, in_flight: InFlight) -> None:
    topics = settings.topics
    source_topics = {topics.requests, topics.records, topics.progress, topics.imports}
    watch = StallWatch(settings.kafka_bootstrap, settings.app_id, settings.stall_seconds)
    reseeked: set[tuple[str, int]] = set()

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

    _every(app, settings.stall_check_seconds, watch_for_stalled_partitions)


def _sweep_incomplete_jobs(app: faust.App, settings: Settings, services: Services) -> None:
    topics = settings.topics
    lag = StallWatch(settings.kafka_bootstrap, settings.app_id, settings.stall_seconds)
    sweeper = IncompleteJobSweeper(
        settings.libpq_url,
        services.unprocessed,
        lag.backlog,
        (topics.requests, topics.imports, topics.records, topics.progress),
        settings.incomplete_job_seconds,
    )

    async def sweep_incomplete_jobs() -> None:
        try:
            await sweeper.sweep()
        except Exception:  # the next pass tries again; the sweep must not stop the timer
            log.exception("the incomplete-job sweep failed")

    _every(app, settings.incomplete_job_check_seconds, sweep_incomplete_jobs)


def run_worker(settings: Settings) -> None:
    from faust.worker import Worker

    app = create_app(settings)
    metrics.serve(
        metrics.worker_port(settings.metrics_port, settings.worker_id), settings.http_host
    )
    worker = Worker(app, loglevel="INFO", quiet=True)
    worker.execute_from_commandline()
