"""The validate stage: ``bulk.requests`` chunk → ``RecordBatch`` messages on ``bulk.records``.

Steps, per batch: learn the writer schemas of Confluent-framed chunks the codec does not know
(from the registry, when one is configured). Then per chunk: decode → check the envelope
(:func:`domain.chunks.parse_chunk`) → admit it against its job row and earlier chunks
(:func:`storage.chunks.admit_chunk`) → validate and route every record
(:func:`streams.validate.route_chunk`) → produce. A chunk that cannot be used is dead-lettered
with its reason; when it still names a live job that agrees with it, the records it carried
fail as ``RecordNotProcessed`` so the job can end.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bulk_ingest.dead_letters import DeadLetterQueue, Delivery
from bulk_ingest.kafka import AsyncProducer, OutgoingMessage
from bulk_ingest.schema_registry import WriterSchemas
from bulk_ingest.topics import Topic
from domain.chunks import InvalidChunk, RequestChunk, job_mismatch, parse_chunk
from domain.codec import UndecodableMessage
from domain.entities import DEFAULT_REFERENCE_TYPES, EntityRegistry
from domain.messages import BulkRequestChunk, RecordBatch
from domain.text import storable
from domain.validation import record_key
from storage.chunks import Verdict, admit_chunk, identity_of
from storage.connection import StageConnection
from storage.jobs import JobRow
from storage.ledger import UnprocessedRecord
from streams.unprocessed import UnprocessedRecords
from streams.validate import kept_record, route_chunk

log = logging.getLogger("bulk_ingest.validate")
REFERENCE_TTL_SECONDS = 30.0


@dataclass(frozen=True)
class ValidateConfig:
    partitions: int
    max_job_records: int
    max_message_bytes: int


class ReferenceTypes:
    """Per-tenant reference types (address types, date types), cached briefly."""

    def __init__(self, connection: StageConnection) -> None:
        self._connection = connection
        self._cache: dict[str, tuple[float, Mapping[str, frozenset[str]]]] = {}

    async def of(self, tenant_id: str) -> Mapping[str, frozenset[str]]:
        cached = self._cache.get(tenant_id)
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
        self._cache[tenant_id] = (time.monotonic(), types)
        return types


class ValidateStage:
    name = "validate"

    def __init__(
        self,
        config: ValidateConfig,
        registry: EntityRegistry,
        requests: Topic[BulkRequestChunk],
        records: Topic[RecordBatch],
        producer: AsyncProducer,
        dead_letters: DeadLetterQueue,
        connection: StageConnection,
        references: ReferenceTypes,
        unprocessed: UnprocessedRecords,
        writer_schemas: WriterSchemas,
    ) -> None:
        self._config = config
        self._writer_schemas = writer_schemas
        self._registry = registry
        self._requests = requests
        self._records = records
        self._producer = producer
        self._dead_letters = dead_letters
        self._connection = connection
        self._references = references
        self._unprocessed = unprocessed

    async def handle(self, deliveries: Sequence[Delivery]) -> None:
        """Validate the chunks in order, then produce all their batches and await the broker
        once: the acknowledgements of several chunks overlap instead of queueing."""
        started = time.perf_counter()
        await self._writer_schemas.learn_writers(
            self._requests.codec, [delivery.value for delivery in deliveries]
        )
        messages: list[OutgoingMessage] = []
        for delivery in deliveries:
            messages.extend(await self._validate(delivery))
        validated = time.perf_counter()
        if messages:
            await self._producer.send_all(messages)
        log.info(
            "validated %d chunks in %.0f ms: validate+route %.0f, produce %.0f",
            len(deliveries),
            (time.perf_counter() - started) * 1000,
            (validated - started) * 1000,
            (time.perf_counter() - validated) * 1000,
        )

    async def _validate(self, delivery: Delivery) -> list[OutgoingMessage]:
        """The record batches of one chunk; none when it was refused or its job is over."""
        chunk = await self._parsed(delivery)
        if chunk is None:
            return []
        conn = await self._connection.get()
        admission = await admit_chunk(conn, chunk)
        if admission.verdict is Verdict.TERMINAL:
            log.info("%s; its chunk %s is ignored", admission.detail, chunk.chunk_index)
            return []
        if admission.verdict is not Verdict.ADMITTED:
            await self._dead_letters.send(delivery, admission.verdict.value, admission.detail)
            if admission.verdict is Verdict.BAD_BOOKKEEPING and admission.job is not None:
                await self._fail_records(chunk, admission.detail, delivery)
            return []
        references = await self._references.of(chunk.tenant_id)
        batches = route_chunk(
            self._registry,
            chunk,
            references,
            self._config.partitions,
            self._records.encode,
            self._config.max_message_bytes,
        )
        return [
            self._records.encoded(batch.payload, chunk.job_id, batch.partition) for batch in batches
        ]

    async def _parsed(self, delivery: Delivery) -> RequestChunk | None:
        """The chunk, or None once an unusable one has been dead-lettered (and its job told)."""
        try:
            decoded = self._requests.datum(delivery.value)  # public: parse_chunk checks it
        except UndecodableMessage as error:
            await self._dead_letters.send(delivery, error.reason, error.detail)
            return None
        try:
            return parse_chunk(decoded, self._registry, self._config.max_job_records)
        except InvalidChunk as invalid:
            await self._dead_letters.send(delivery, invalid.reason, invalid.detail)
            if invalid.chunk is not None:
                conn = await self._connection.get()
                admission = await admit_chunk(conn, invalid.chunk, consistent=False)
                if admission.verdict is Verdict.BAD_BOOKKEEPING:
                    await self._fail_records(invalid.chunk, invalid.detail, delivery)
            return None

    async def after_dead_letter(self, delivery: Delivery, reason: str) -> None:
        """A chunk that kept failing: its records fail, if its job agrees with it."""
        try:
            decoded = self._requests.datum(delivery.value)
            chunk = parse_chunk(decoded, self._registry, self._config.max_job_records)
        except (UndecodableMessage, InvalidChunk):
            return
        await self._fail_records(chunk, reason, delivery)

    async def _fail_records(self, chunk: RequestChunk, reason: str, delivery: Delivery) -> None:
        definition = self._registry.get(chunk.entity)
        records = [
            UnprocessedRecord(
                chunk.first_index + offset,
                storable(record_key(definition, record)) or None,
                storable(kept_record(definition, record)),
            )
            for offset, record in enumerate(chunk.records)
        ]

        def agrees(job: JobRow) -> bool:
            return job_mismatch(chunk, identity_of(job)) is None

        text = f"was not processed: its request chunk was dead-lettered ({_short(reason)})"
        await self._unprocessed.fail_records(
            chunk.job_id, agrees, records, text, str(delivery), chunk_index=chunk.chunk_index
        )


def _short(text: str, limit: int = 300) -> str:
    text = storable(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."
