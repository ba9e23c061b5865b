"""Accepting a job: write the job row, publish its records as Avro chunks, mark it READY.

The job row is committed before anything is published, so a record on Kafka always has a job.
If publishing fails the job becomes INTERNAL_FAILURE and the caller gets a 503; the chunks that
did reach Kafka are then ignored by the workers (they skip records of terminal jobs).
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
from bulk_ingest.kafka import AsyncProducer, KafkaUnavailable, OutgoingMessage
from domain.codec import AvroCodec
from domain.entities import EntityDefinition
from domain.errors import ErrorCode
from domain.validation import BulkRequest, to_avro_record
from storage import jobs as job_store

log = logging.getLogger(__name__)


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
        await self._publish(new_job, request, definition)
        async with self._engine.connect() as conn:
            job = await job_store.get_job(conn, new_job.job_id)
        assert job is not None
        return Submitted(job, replayed=False)

    async def _replay(self, tenant_id: str, key: str, request_hash: str) -> RowMapping | None:
        return await earlier_job(self._engine, tenant_id, key, request_hash)

    async def _publish(
        self, job: job_store.NewJob, request: BulkRequest, definition: EntityDefinition
    ) -> None:
        key = job.job_id.encode()
        chunks = avro_chunks(
            request,
            definition,
            job_id=job.job_id,
            tenant_id=job.tenant_id,
            source=job.source,
            chunk_records=self._chunk_records,
        )
        messages: Sequence[OutgoingMessage] = [
            OutgoingMessage(self._topic, self._codec.encode(chunk), key) for chunk in chunks
        ]
        await publish_job(self._engine, self._producer, job.job_id, messages, "records")


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

    If Kafka does not take them, the job becomes INTERNAL_FAILURE and the caller answers 503.
    """
    try:
        await producer.send_all(messages)
    except KafkaUnavailable as exc:
        log.error("job %s could not be published: %s", job_id, exc)
        async with engine.begin() as conn:
            await job_store.mark_internal_failure(conn, job_id, f"publish failed: {exc}")
        raise problem(
            503,
            ErrorCode.ServiceUnavailable,
            f"The {what} could not be queued for processing (Kafka is unavailable); "
            f"job {job_id} is marked INTERNAL_FAILURE. Retry the request.",
            headers={"Retry-After": "5"},
        ) from exc
    async with engine.begin() as conn:
        await job_store.mark_ready(conn, job_id)
