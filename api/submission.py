"""Accepting a job: encode its chunks, write the job row, publish the chunks, mark it READY.

Everything that can refuse the records (validation, Avro encoding) runs before the job row is
committed, so a refused request leaves nothing behind. The job row is committed before anything
is published, so a record on Kafka always has a job. If publishing fails the caller gets a
``503``, the job is *abandoned* — its Idempotency-Key released at once, so a retry with the same
key creates a new job — and a worker's sweeper fails the records that never arrived
(``RecordNotReceived``) and ends it ``INTERNAL_FAILURE``.

Chunks hold at most ``chunk_records`` records and at most :data:`MAX_CHUNK_BYTES` bytes: a
request of very large records is cut into more, smaller chunks.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from api.errors import problem
from bulk_ingest.kafka import MAX_MESSAGE_BYTES, AsyncProducer, KafkaUnavailable, OutgoingMessage
from domain.codec import AvroCodec
from domain.entities import EntityDefinition
from domain.errors import ErrorCode
from domain.validation import BulkRequest, to_avro_record
from storage import jobs as job_store

log = logging.getLogger(__name__)
MAX_CHUNK_BYTES = MAX_MESSAGE_BYTES // 2


@dataclass(frozen=True)
class Submitted:
    job: RowMapping
    replayed: bool


def request_fingerprint(method: str, entity: str, raw_body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (method.encode(), b"\0", entity.encode(), b"\0", raw_body):
        digest.update(part)
    return digest.hexdigest()


def avro_chunks(
    request: BulkRequest,
    definition: EntityDefinition,
    *,
    job_id: str,
    tenant_id: str,
    source: str,
    chunk_records: int,
) -> Iterator[dict[str, Any]]:
    """The job's records as ``BulkRequestChunk`` payloads of at most ``chunk_records``."""
    records = request.records
    total = len(records)
    chunk_count = max(1, -(-total // chunk_records))
    submitted_at = datetime.now(UTC)
    branch = definition.avro_schema["name"]
    for chunk_index in range(chunk_count):
        first = chunk_index * chunk_records
        yield {
            "job_id": job_id,
            "tenant_id": tenant_id,
            "entity": request.entity,
            "operation": request.operation.value,
            "source": source,
            "webhook_url": request.webhook_url,
            "chunk_index": chunk_index,
            "chunk_count": chunk_count,
            "total": total,
            "first_index": first,
            "records": [
                (branch, to_avro_record(definition, record))
                for record in records[first : first + chunk_records]
            ],
            "submitted_at": submitted_at,
        }


def encoded_chunks(
    codec: AvroCodec,
    request: BulkRequest,
    definition: EntityDefinition,
    *,
    job_id: str,
    tenant_id: str,
    source: str,
    chunk_records: int,
    max_bytes: int = MAX_CHUNK_BYTES,
) -> list[bytes]:
    """The job's chunks, encoded; chunks of fewer records when some would be too large."""
    while True:
        encoded = [
            codec.encode(chunk)
            for chunk in avro_chunks(
                request,
                definition,
                job_id=job_id,
                tenant_id=tenant_id,
                source=source,
                chunk_records=chunk_records,
            )
        ]
        if chunk_records == 1 or all(len(payload) <= max_bytes for payload in encoded):
            return encoded
        chunk_records = max(1, chunk_records // 2)


class JobSubmitter:
    def __init__(
        self,
        engine: AsyncEngine,
        producer: AsyncProducer,
        request_codec: AvroCodec,
        requests_topic: str,
        chunk_records: int,
    ) -> None:
        self._engine = engine
        self._producer = producer
        self._codec = request_codec
        self._topic = requests_topic
        self._chunk_records = chunk_records

    async def submit(
        self,
        request: BulkRequest,
        definition: EntityDefinition,
        *,
        tenant_id: str,
        idempotency_key: str | None,
        request_hash: str,
    ) -> Submitted:
        if idempotency_key:
            earlier = await self._replay(tenant_id, idempotency_key, request_hash)
            if earlier is not None:
                return Submitted(earlier, replayed=True)
        new_job = job_store.NewJob(
            job_id=str(uuid.uuid4()),
            tenant_id=tenant_id,
            entity=request.entity,
            operation=request.operation.value,
            source="api",
            total=len(request.records),
            webhook_url=request.webhook_url,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
        )
        messages = self._messages(new_job, request, definition)  # before anything is kept
        try:
            async with self._engine.begin() as conn:
                await job_store.insert_job(conn, new_job)
        except IntegrityError:
            # A concurrent request with the same Idempotency-Key won the race.
            assert idempotency_key is not None
            earlier = await self._replay(tenant_id, idempotency_key, request_hash)
            if earlier is None:
                raise
            return Submitted(earlier, replayed=True)
        await publish_job(self._engine, self._producer, new_job.job_id, messages, "records")
        async with self._engine.connect() as conn:
            job = await job_store.get_job(conn, new_job.job_id)
        assert job is not None
        return Submitted(job, replayed=False)

    async def _replay(self, tenant_id: str, key: str, request_hash: str) -> RowMapping | None:
        return await earlier_job(self._engine, tenant_id, key, request_hash)

    def _messages(
        self, job: job_store.NewJob, request: BulkRequest, definition: EntityDefinition
    ) -> list[OutgoingMessage]:
        key = job.job_id.encode()
        payloads = encoded_chunks(
            self._codec,
            request,
            definition,
            job_id=job.job_id,
            tenant_id=job.tenant_id,
            source=job.source,
            chunk_records=self._chunk_records,
        )
        return [OutgoingMessage(self._topic, payload, key) for payload in payloads]


async def earlier_job(
    engine: AsyncEngine, tenant_id: str, key: str, request_hash: str
) -> RowMapping | None:
    """The job an earlier request with this Idempotency-Key created, if any.

    The same key with a different request is a client error (409 IdempotencyKeyReused).
    """
    async with engine.connect() as conn:
        earlier = await job_store.job_by_idempotency_key(conn, tenant_id, key)
    if earlier is not None and earlier["request_hash"] != request_hash:
        raise problem(
            409,
            ErrorCode.IdempotencyKeyReused,
            f"Idempotency-Key {key!r} was already used for a different request "
            f"(job {earlier['job_id']}); use a new key for a new request.",
        )
    return earlier


async def publish_job(
    engine: AsyncEngine,
    producer: AsyncProducer,
    job_id: str,
    messages: Sequence[OutgoingMessage],
    what: str,
) -> None:
    """Publish a job's messages, then mark it READY.

    If Kafka does not take them, the job is abandoned (see the module docstring) and the caller
    answers 503; any other failure abandons it too before it propagates.
    """
    try:
        await producer.send_all(messages)
    except Exception as exc:
        log.error("job %s could not be published: %s", job_id, exc)
        reason = f"The {what} could not be published to Kafka: {exc}"
        async with engine.begin() as conn:
            await job_store.abandon_job(conn, job_id, reason[:1000])
        if not isinstance(exc, KafkaUnavailable):
            raise
        raise problem(
            503,
            ErrorCode.ServiceUnavailable,
            f"The {what} could not be queued for processing (Kafka is unavailable); job "
            f"{job_id} will end INTERNAL_FAILURE. Retry the request: the same Idempotency-Key "
            "creates a new job.",
            headers={"Retry-After": "5"},
        ) from exc
    async with engine.begin() as conn:
        await job_store.mark_ready(conn, job_id)
