"""The consumers process: report writer and webhook dispatcher, assembled in one factory.

``bulk.jobs`` ─ JobEventConsumer ─▶ CompletionHandler ─▶ webhook delivery row + report files
                                                         │
PostgreSQL webhook_deliveries ◀── WebhookDispatcher ◀────┘ (claims due attempts, POSTs, records)
jobs without a delivery ◀── MissedWebhookSweep (safety net for jobs no event announced)

SIGTERM or SIGINT stop it gracefully: no new work is taken, attempts in flight are recorded.
Run as many consumers processes as you like: Kafka shares the job events between them and
claims share the webhook attempts.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

from confluent_kafka import Consumer

from bulk_ingest import metrics
from bulk_ingest.dead_letters import DeadLetterQueue
from bulk_ingest.kafka import AsyncProducer
from bulk_ingest.settings import Settings
from bulk_ingest.ssrf import WebhookPolicy
from bulk_ingest.stage_runner import RetryPolicy, StageRunner
from bulk_ingest.topics import Topics
from consumers.completion import CompletionHandler, MissedWebhookSweep
from consumers.dispatcher import DispatcherConfig, WebhookDispatcher
from consumers.job_events import CompletionStage, JobEventConsumer, consumer_config
from storage.db import async_engine
from storage.message_failures import MessageFailureLog
from storage.reports import ReportStore

log = logging.getLogger("bulk_ingest.consumers")


def run_consumers(settings: Settings) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    metrics.serve(settings.metrics_port, settings.http_host)
    asyncio.run(serve(settings))


async def serve(settings: Settings) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    engine = async_engine(settings.sqlalchemy_url)
    producer = AsyncProducer(
        settings.kafka_bootstrap,
        client_id=f"{settings.app_id}-consumers",
        delivery_timeout_seconds=settings.kafka_delivery_timeout_seconds,
    )
    policy = WebhookPolicy.from_settings(
        settings.webhook_allow_loopback,
        settings.webhook_allowed_networks,
        settings.webhook_allowed_hosts,
    )
    dispatcher = WebhookDispatcher(engine, DispatcherConfig.from_settings(settings), policy)
    completion = CompletionHandler(
        engine, ReportStore(settings.report_dir, engine), on_scheduled=dispatcher.wake
    )
    group_id = f"{settings.app_id}.consumers"
    topics = Topics.load(settings)
    dead_letters = DeadLetterQueue(producer, topics.dlq)
    failures = MessageFailureLog(settings.libpq_url, group_id)
    runner = StageRunner(
        CompletionStage(topics.jobs, completion.on_terminal, dead_letters, topics.writer_schemas),
        dead_letters,
        failures,
        RetryPolicy(poison_attempts=settings.poison_attempts),
        stopping=stopping,
    )
    job_events = JobEventConsumer(
        Consumer(consumer_config(settings.kafka_bootstrap, group_id)),
        topics.jobs.name,
        runner,
    )
    sweep = MissedWebhookSweep(
        engine,
        settings.webhook_sweep_seconds,
        settings.webhook_retry_horizon_seconds,
        on_scheduled=dispatcher.wake,
    )
    log.info(
        "consumers started: report writer on %s (group %s), webhook dispatcher; reports in %s; "
        "loopback webhook targets %s",
        topics.jobs.name,
        group_id,
        settings.report_dir,
        "ALLOWED" if settings.webhook_allow_loopback else "refused",
    )
    try:
        results = await asyncio.gather(
            *(
                _stopping_all_on_exit(part, stopping)
                for part in (job_events.run, dispatcher.run, sweep.run)
            ),
            return_exceptions=True,
        )
        crashed = [r for r in results if isinstance(r, BaseException)]
        if crashed:
            raise crashed[0]
    finally:
        await failures.close()
        await asyncio.to_thread(producer.close)
        await engine.dispose()
        log.info("consumers stopped")


async def _stopping_all_on_exit(
    part: Callable[[asyncio.Event], Awaitable[None]], stopping: asyncio.Event
) -> None:
    """A part that fails stops the others gracefully; the process then exits with the error."""
    try:
        await part(stopping)
    except BaseException:
        log.exception("%s failed; stopping the consumers", getattr(part, "__qualname__", part))
        raise
    finally:
        stopping.set()
