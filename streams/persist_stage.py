"""The persist stage: ``RecordBatch`` messages → entity rows + ledger, then ``bulk.outcomes``.

Steps, per batch of messages: decode (dead-letter what is not a well-formed batch) → persist
every part in one transaction (:class:`storage.persist.BatchPersister`, which also encodes the
outcome events before it commits) → produce the events (none for a dry run or a job that asked
for ``"outcome_events": false``) and one progress nudge per job → return, so Faust may commit
the offsets.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from bulk_ingest.dead_letters import DeadLetterQueue, Delivery
from bulk_ingest.kafka import MessageSender
from bulk_ingest.metrics import PERSIST_BATCH_SECONDS, count_records, observe_record_latency
from bulk_ingest.topics import Topic
from domain.codec import UndecodableMessage
from domain.entities import EntityRegistry
from domain.messages import RecordBatch
from domain.outcomes import PendingRecord
from domain.text import storable
from storage.jobs import JobRow
from storage.ledger import UnprocessedRecord
from storage.persist import BatchPart, BatchPersister
from streams.events import Announcer
from streams.unprocessed import UnprocessedRecords

log = logging.getLogger("bulk_ingest.persist")


class InjectedFault(RuntimeError):
    """Raised on purpose for ``BULK_INGEST_FAULT_INJECTION_KEY`` (tests of the error policy)."""


def pending_records(batch: Mapping[str, Any]) -> list[PendingRecord]:
    """The records of a decoded ``RecordBatch`` datum."""
    return RecordBatch.from_avro(batch).pending_records()


def batch_problem(batch: RecordBatch, registry: EntityRegistry) -> str | None:
    """Why a decoded batch cannot be persisted (our own stages never send one)."""
    for name, value in (("job_id", batch.job_id), ("tenant_id", batch.tenant_id)):
        try:
            uuid.UUID(value)
        except ValueError:
            return f"{name} {value[:60]!r} is not a UUID"
    if batch.entity not in registry:
        return f"entity {batch.entity[:60]!r} is unknown"
    if not batch.part_id or any(r["index"] < 0 for r in batch.records):
        return "the batch has no part id or a negative record index"
    return None


class PersistStage:
    name = "persist"

    def __init__(
        self,
        registry: EntityRegistry,
        records: Topic[RecordBatch],
        producer: MessageSender,
        dead_letters: DeadLetterQueue,
        persister: BatchPersister,
        announcer: Announcer,
        unprocessed: UnprocessedRecords,
        fault_injection_key: str = "",
    ) -> None:
        self._registry = registry
        self._records = records
        self._producer = producer
        self._dead_letters = dead_letters
        self._persister = persister
        self._announcer = announcer
        self._unprocessed = unprocessed
        self._fault_key = fault_injection_key

    async def handle(self, deliveries: Sequence[Delivery]) -> None:
        started = time.perf_counter()
        parts: dict[tuple[str, str], BatchPart] = {}
        for delivery in deliveries:
            batch = await self._decoded(delivery)
            if batch is not None:
                parts.setdefault(
                    (batch.job_id, batch.part_id),
                    BatchPart(
                        batch.job_id,
                        batch.tenant_id,
                        batch.part_id,
                        batch.total,
                        batch.pending_records(),
                    ),
                )
        if not parts:
            return
        self._inject_fault(parts.values())
        decoded = time.perf_counter()
        persisted = await self._persister.persist(list(parts.values()))
        stored = time.perf_counter()
        PERSIST_BATCH_SECONDS.observe(stored - decoded)
        real = [o for o in persisted.written if o.job_id not in persisted.dry_run]
        count_records(Counter((o.entity, o.status.value) for o in real))
        observe_record_latency((o.job_id for o in real), persisted.accepted_at)
        silent = persisted.silent
        messages = [
            self._announcer.outcome_message(outcome, payload)
            for outcome, payload in zip(persisted.outcomes, persisted.events, strict=True)
            if outcome.job_id not in silent
        ]
        # One nudge per job per batch: the aggregator recounts from the database anyway.
        messages.extend(
            self._announcer.progress_nudge(part.job_id, part.tenant_id, part.part_id)
            for part in {part.job_id: part for part in persisted.parts}.values()
        )
        await self._producer.send_all(messages)
        log.info(
            "persisted %d records (%d parts) in %.0f ms: decode %.0f, db+encode %.0f, produce %.0f",
            len(persisted.outcomes),
            len(persisted.parts),
            (time.perf_counter() - started) * 1000,
            (decoded - started) * 1000,
            (stored - decoded) * 1000,
            (time.perf_counter() - stored) * 1000,
        )

    async def _decoded(self, delivery: Delivery) -> RecordBatch | None:
        try:
            batch = self._records.decode(delivery.value)
        except UndecodableMessage as error:
            await self._dead_letters.send(delivery, error.reason, error.detail)
            return None
        problem = batch_problem(batch, self._registry)
        if problem is not None:
            await self._dead_letters.send(delivery, "invalid-record-batch", problem)
            return None
        return batch

    def _inject_fault(self, parts: Any) -> None:
        if self._fault_key and any(
            r.key == self._fault_key for part in parts for r in part.records
        ):
            raise InjectedFault(f"a record keyed {self._fault_key!r} (fault injection)")

    async def after_dead_letter(self, delivery: Delivery, reason: str) -> None:
        """A batch that kept failing: its records fail, if its job agrees with it."""
        try:
            batch = self._records.decode(delivery.value)
        except UndecodableMessage:
            return
        if batch_problem(batch, self._registry) is not None:
            return

        def agrees(job: JobRow) -> bool:
            same = (job.tenant_id, job.entity, job.operation) == (
                batch.tenant_id,
                batch.entity,
                batch.operation,
            )
            total_known = batch.total == job.total or (batch.total == 0 and job.source == "file")
            return same and total_known

        records = [UnprocessedRecord(r["index"], storable(r["key"]), None) for r in batch.records]
        text = f"was not processed: its record batch was dead-lettered ({storable(reason)[:300]})"
        await self._unprocessed.fail_records(batch.job_id, agrees, records, text, str(delivery))
