"""Reads ``bulk.jobs`` and hands every terminal job to the completion handler.

A plain confluent-kafka consumer (not Faust: this stage keeps no table and needs exact control
over commits). Offsets are committed by hand, after the handler has finished — the webhook
scheduled in PostgreSQL and the report files renamed into place — so a crash at any point
means the event is read again, and the idempotent handler makes that harmless. A handler
failure (database or disk trouble) is retried with backoff; the partition waits, nothing is
skipped. Undecodable payloads go to the dead-letter topic with the reason in headers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from bulk_ingest.kafka import AsyncProducer, OutgoingMessage
from domain.codec import AvroCodec, UndecodableMessage
from domain.jobs import JobStatus, is_terminal

log = logging.getLogger(__name__)

BATCH_MESSAGES = 100
POLL_SECONDS = 0.5
MAX_RETRY_SECONDS = 30.0


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


class JobEventConsumer:
    def __init__(
        self,
        consumer: Consumer,
        topic: str,
        codec: AvroCodec,
        on_terminal: Callable[[str], Awaitable[None]],
        dead_letters: Callable[[Message, UndecodableMessage], Awaitable[None]],
    ) -> None:
        self._consumer = consumer
        self._topic = topic
        self._codec = codec
        self._on_terminal = on_terminal
        self._dead_letters = dead_letters

    async def run(self, stopping: asyncio.Event) -> None:
        self._consumer.subscribe([self._topic])
        try:
            while not stopping.is_set():
                messages = await asyncio.to_thread(
                    self._consumer.consume, BATCH_MESSAGES, POLL_SECONDS
                )
                done = await self._handle_in_order(messages, stopping)
                if done:
                    await asyncio.to_thread(self._commit, done)
        finally:
            await asyncio.to_thread(self._consumer.close)

    async def _handle_in_order(
        self, messages: Sequence[Message], stopping: asyncio.Event
    ) -> list[Message]:
        """The messages handled, up to the first one a stop interrupted (nothing after it)."""
        done = []
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer error on %s: %s", self._topic, error)
                continue
            if not await self._handled(message, stopping):
                break
            done.append(message)
        return done

    async def _handled(self, message: Message, stopping: asyncio.Event) -> bool:
        """Process one message; False when a stop interrupted it (it must not be committed)."""
        try:
            event = self._codec.decode(message.value() or b"")
        except UndecodableMessage as exc:
            error = exc
            return await self._retrying(lambda: self._dead_letters(message, error), stopping)
        if not is_terminal(JobStatus(event["status"])):
            return True
        return await self._retrying(lambda: self._on_terminal(event["job_id"]), stopping)

    async def _retrying(self, step: Callable[[], Awaitable[None]], stopping: asyncio.Event) -> bool:
        delay = 0.5
        while not stopping.is_set():
            try:
                await step()
                return True
            except Exception:
                log.exception("completion step failed; retrying in %.1fs", delay)
            try:
                await asyncio.wait_for(stopping.wait(), delay)
            except TimeoutError:
                delay = min(delay * 2, MAX_RETRY_SECONDS)
        return False

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


def dead_letter_sender(
    producer: AsyncProducer, dlq_topic: str
) -> Callable[[Message, UndecodableMessage], Awaitable[None]]:
    async def send(message: Message, error: UndecodableMessage) -> None:
        log.warning(
            "dead-lettering %s[%s]@%s: %s",
            message.topic(),
            message.partition(),
            message.offset(),
            error,
        )
        headers = [
            ("dlq.reason", error.reason.encode()),
            ("dlq.detail", error.detail.encode()[:1000]),
            ("dlq.topic", str(message.topic()).encode()),
            ("dlq.partition", str(message.partition()).encode()),
            ("dlq.offset", str(message.offset()).encode()),
        ]
        await producer.send_all(
            [OutgoingMessage(dlq_topic, message.value() or b"", message.key(), headers=headers)]
        )

    return send
