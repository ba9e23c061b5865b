"""Reads ``bulk.jobs`` and hands every terminal job to the completion handler.

A plain confluent-kafka consumer (not Faust: this stage keeps no table and needs exact control
over commits). Offsets are committed by hand, after the handler has finished — the webhook
scheduled in PostgreSQL and the report files renamed into place — so a crash at any point
means the event is read again, and the idempotent handler makes that harmless.

Failures follow the workers' policy (:mod:`bulk_ingest.stage_runner`): database or disk
trouble is retried with backoff, the partition waits and nothing is skipped; an event that
fails for any other reason is retried ``BULK_INGEST_POISON_ATTEMPTS`` times (recorded in
PostgreSQL) and then dead-lettered, and the partition moves on (the missed-webhook sweep still
schedules that job's webhook). Undecodable payloads go to the dead-letter topic at once.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from bulk_ingest.dead_letters import DeadLetterQueue, Delivery
from bulk_ingest.schema_registry import WriterSchemas
from bulk_ingest.stage_runner import StageRunner, Stopped
from bulk_ingest.topics import Topic
from domain.codec import UndecodableMessage
from domain.jobs import is_terminal
from domain.messages import JobEvent

log = logging.getLogger(__name__)

BATCH_MESSAGES = 100
POLL_SECONDS = 0.5


def consumer_config(bootstrap: str, group_id: str) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group_id,
        "client.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        # A killed consumers process hands its partitions over after this (the broker's
        # default group.min.session.timeout.ms is the floor).
        "session.timeout.ms": 6_000,
        "heartbeat.interval.ms": 1_000,
    }


class CompletionStage:
    """A terminal job event → the completion handler (webhook scheduled, report files written)."""

    name = "completion"

    def __init__(
        self,
        jobs: Topic[JobEvent],
        on_terminal: Callable[[str], Awaitable[None]],
        dead_letters: DeadLetterQueue,
        writer_schemas: WriterSchemas,
    ) -> None:
        self._jobs = jobs
        self._on_terminal = on_terminal
        self._dead_letters = dead_letters
        self._writer_schemas = writer_schemas

    async def handle(self, deliveries: Sequence[Delivery]) -> None:
        # Events a newer process framed with a schema id this one has not seen (a registry).
        await self._writer_schemas.learn_writers(
            self._jobs.codec, [delivery.value for delivery in deliveries]
        )
        for delivery in deliveries:
            try:
                event = self._jobs.decode(delivery.value)
            except UndecodableMessage as exc:
                await self._dead_letters.send(delivery, exc.reason, exc.detail)
                continue
            problem = _event_problem(event)
            if problem is not None:
                await self._dead_letters.send(delivery, "invalid-job-event", problem)
                continue
            if event.job_status is not None and is_terminal(event.job_status):
                await self._on_terminal(event.job_id)

    async def after_dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Nothing more: the missed-webhook sweep still schedules the job's webhook."""


def _event_problem(event: JobEvent) -> str | None:
    if event.job_status is None:
        return f"status {event.status!r} is not a job status"
    try:
        uuid.UUID(event.job_id)
    except ValueError:
        return f"job_id {event.job_id[:60]!r} is not a UUID"
    return None


def delivery_of(message: Message) -> Delivery:
    return Delivery(
        str(message.topic()),
        int(message.partition() or 0),
        int(message.offset() or 0),
        message.key(),
        message.value() or b"",
    )


class JobEventConsumer:
    def __init__(self, consumer: Consumer, topic: str, runner: StageRunner) -> None:
        self._consumer = consumer
        self._topic = topic
        self._runner = runner

    async def run(self, stopping: asyncio.Event) -> None:
        self._consumer.subscribe([self._topic])
        try:
            while not stopping.is_set():
                messages = await asyncio.to_thread(
                    self._consumer.consume, BATCH_MESSAGES, POLL_SECONDS
                )
                done = await self._handle_in_order(messages)
                if done:
                    await asyncio.to_thread(self._commit, done)
        finally:
            await asyncio.to_thread(self._consumer.close)

    async def _handle_in_order(self, messages: Sequence[Message]) -> list[Message]:
        """The messages handled, up to the first one a stop interrupted (nothing after it)."""
        done = []
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer error on %s: %s", self._topic, error)
                continue
            try:
                await self._runner.run([delivery_of(message)])
            except Stopped:
                break
            done.append(message)
        return done

    def _commit(self, messages: Sequence[Message]) -> None:
        """Commit past the last handled message of each partition (messages arrive in order)."""
        last: dict[tuple[str, int], int] = {}
        for message in messages:
            key = (str(message.topic()), int(message.partition() or 0))
            last[key] = max(last.get(key, -1), int(message.offset() or 0))
        offsets = [TopicPartition(t, p, offset + 1) for (t, p), offset in last.items()]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # Typically a rebalance took the partition away; its new owner re-reads the events.
            log.warning("offset commit failed (events will be re-read): %s", exc)
