"""The import agent: an ``ImportRequested`` event → the file's rows on ``bulk.records``.

``bulk.imports`` ─ import_files ─▶ ``bulk.records`` (RecordBatch per chunk and partition)
                          └──────▶ jobs.total, then a ``bulk.progress`` nudge

The file is read in chunks of ``chunk_rows`` rows in a worker thread (parsing is CPU work; the
event loop keeps serving the other agents and the consumer heartbeats). Each chunk becomes one
``RecordBatch`` per owning partition with part id ``chunk:partition``, exactly like a JSON job's
request chunk after the validate stage, so the persist stage and the aggregator need nothing new.
At most :data:`MAX_IN_FLIGHT` chunks wait for broker acknowledgement, and the import stays at
most ``max_rows_ahead`` rows ahead of the persist stage (:class:`Backpressure`): memory stays
bounded, in this worker and in the persisting ones, whatever the file's size.

Only when every batch is acknowledged does the job learn its total (the row count), followed by
a progress nudge so the aggregator re-evaluates, and only then does the handler return to Faust,
which may then commit the event's offset. A crash before that redelivers the event and the file
is parsed again from the start: the batches come out identical and the outcome ledger absorbs
them. A rebalance or shutdown does not wait for a long import: between chunks the handler
notices it, lets the in-flight chunks finish, and re-publishes the event with ``resume_chunk``
set, so whichever worker owns the partition next carries on from there.

A cancel (``POST /jobs/{id}/cancel``) is noticed between chunks, at most
:attr:`Backpressure.CHECK_SECONDS` apart: the reading stops, the job's total becomes the rows
read so far, those not yet written are skipped as ``JobCancelled`` and the job ends
``CANCELLED``.

A file that turns out unreadable (it vanished, its archive is corrupt, a zip bomb slipped past
the upload checks) ends its job ``INTERNAL_FAILURE`` with the reason — rows it had sent but that
were not processed yet fail as ``RecordNotProcessed`` — and the worker carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from bulk_ingest.dead_letters import DeadLetterQueue, Delivery
from bulk_ingest.kafka import AsyncProducer
from bulk_ingest.settings import Settings
from bulk_ingest.topics import Topics
from domain.codec import UndecodableMessage
from domain.entities import EntityRegistry
from domain.errors import BulkIngestError, ErrorCode, InvalidInput
from domain.file_formats import open_rows
from domain.file_types import RowTable, SourceRow, UnreadableFile, ZipCaps
from domain.import_rows import RowRouter, read_options_of, router_for
from domain.job_options import NO_OPTIONS, JobOptions
from domain.jobs import JobStatus, is_terminal
from domain.messages import BatchHeader, ImportRequested, RecordBatch, RoutedRecord
from domain.routing import partition_for, routing_key
from storage import jobs as job_store
from streams.events import Announcer
from streams.unprocessed import UnprocessedRecords

log = logging.getLogger("bulk_ingest.imports")
MAX_IN_FLIGHT = 4


@dataclass(frozen=True)
class ImportConfig:
    """What the import agent needs from the settings, read once at start-up."""

    file_dir: Path
    caps: ZipCaps
    partitions: int
    libpq_url: str
    max_rows_ahead: int = 20_000
    max_message_bytes: int = 8 * 1024 * 1024


@dataclass(frozen=True)
class Chunk:
    number: int
    messages: list[tuple[int, bytes]]  # (partition, encoded RecordBatch)


class ChunkSource:
    """A file's data rows, chunk by chunk, as encoded ``RecordBatch`` messages.

    Blocking: every method runs in a worker thread, one call at a time.
    """

    def __init__(
        self,
        request: ImportRequested,
        table: RowTable,
        router: RowRouter,
        encode: Callable[[RecordBatch], bytes],
        partitions: int,
        branch: str,
        max_message_bytes: int,
    ) -> None:
        self._request = request
        self._max_message_bytes = max_message_bytes
        self._rows = table.rows
        self._router = router
        self._encode_batch = encode
        self._partitions = partitions
        self._branch = branch
        self._chunk_rows = request.chunk_rows
        self._next_chunk = 0
        self.rows_seen = 0

    @property
    def chunks_done(self) -> int:
        """Chunks handed out so far (a hand-over waits until all of them are acknowledged)."""
        return self._next_chunk

    def next_chunk(self) -> Chunk | None:
        """The next chunk at or after ``resume_chunk``; None once the file is exhausted."""
        while self._next_chunk < self._request.resume_chunk:
            if not self._take(lambda row, index: None):
                return None
        number = self._next_chunk
        by_partition: dict[int, list[RoutedRecord]] = defaultdict(list)
        if not self._take(lambda row, index: self._route(row, index, by_partition)):
            return None
        return Chunk(
            number,
            [
                (partition, payload)
                for partition, records in sorted(by_partition.items())
                for payload in self._encode(number, partition, records)
            ],
        )

    def _take(self, handle: Callable[[SourceRow, int], None]) -> bool:
        """Hand up to ``chunk_rows`` rows to ``handle``; False when there were none left."""
        taken = 0
        for row in self._rows:
            handle(row, self.rows_seen)
            self.rows_seen += 1
            taken += 1
            if taken == self._chunk_rows:
                break
        if taken:
            self._next_chunk += 1
        return taken > 0

    def _route(self, row: SourceRow, index: int, into: dict[int, list[RoutedRecord]]) -> None:
        routed = self._router.route(row, index)
        request = self._request
        key = routing_key(request.tenant_id, request.entity, routed["key"], index)
        if routed["record"] is not None:
            routed["record"] = (self._branch, routed["record"])
        into[partition_for(key, self._partitions)].append(routed)

    def _encode(self, number: int, partition: int, records: list[RoutedRecord]) -> list[bytes]:
        request = self._request
        # The total is unknown until the whole file is read; the jobs row gets it then.
        header = BatchHeader(
            request.job_id, request.tenant_id, request.entity, request.operation, 0
        )
        parts = header.encoded_parts(
            self._encode_batch, f"{number}:{partition}", records, self._max_message_bytes
        )
        return [payload for _, payload in parts]


class JobEnded(BulkIngestError):
    """The job became terminal (cancelled, failed) while its file was being read: stop."""


class ImportTripped(BulkIngestError):
    """The job's error-rate breaker tripped while its file was being read: stop reading."""

    def __init__(self, rows_sent: int) -> None:
        super().__init__(f"error-rate breaker tripped after {rows_sent} rows")
        self.rows_sent = rows_sent


class ImportCancelled(BulkIngestError):
    """The job's cancel was requested while its file was being read: stop reading."""

    def __init__(self, rows_sent: int) -> None:
        super().__init__(f"cancelled after {rows_sent} rows")
        self.rows_sent = rows_sent


class Backpressure:
    """Keeps an import at most ``max_ahead`` rows ahead of the persist stage, and stops it when
    its job is cancelled or ended.

    Kafka would hold any backlog, but the persist workers' consumers prefetch it into memory and
    their batches grow with it; an import of millions of rows must not outrun them. The job's
    ``processed`` count (the aggregator's, from the outcome ledger) says how far they are. The
    job row is read at least every ``CHECK_SECONDS`` while rows are sent, so a cancel stops the
    reading within about that long.
    """

    POLL_SECONDS = 0.2
    CHECK_SECONDS = 0.5

    def __init__(self, libpq_url: str, job_id: str, max_ahead: int) -> None:
        self._url = libpq_url
        self._job_id = job_id
        self._max_ahead = max_ahead
        self._processed = 0
        self._checked_at = 0.0  # the first chunk is checked: a cancel may be waiting already
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def wait(self, sent: int, should_stop: Callable[[], bool]) -> None:
        """Return once the pipeline has caught up enough (or a hand-over is due); raise
        :class:`ImportCancelled` or :class:`JobEnded` when the job says to stop."""
        if time.monotonic() - self._checked_at >= self.CHECK_SECONDS:
            await self._check(sent)
        while sent - self._processed > self._max_ahead and not should_stop():
            await self._check(sent)
            if sent - self._processed > self._max_ahead:
                await asyncio.sleep(self.POLL_SECONDS)  # a pacing interval, not a synchronisation

    async def _check(self, sent: int) -> None:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
        pace = await job_store.pace_of(self._conn, self._job_id)
        self._processed, self._checked_at = pace.processed, time.monotonic()
        if is_terminal(pace.status):
            raise JobEnded(pace.status)
        if pace.cancel_requested:
            raise ImportCancelled(sent)
        if pace.error_rate_tripped:
            raise ImportTripped(sent)

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()


async def _record_total(conn: psycopg.AsyncConnection[Any], job_id: str, total: int) -> None:
    """The file's row count becomes the job's total; a file without data rows ends the job.

    A total of 0 means "not known yet" to the aggregator, so an empty file is made COMPLETED
    here (nothing to wait for; CANCELLED if its cancel was requested meanwhile); the aggregator
    then publishes its terminal event.
    """
    if total > 0:
        await job_store.set_total(conn, job_id, total)
    else:
        cancelled = (await job_store.pace_of(conn, job_id)).cancel_requested
        status = JobStatus.CANCELLED if cancelled else JobStatus.COMPLETED
        await job_store.end_job(conn, job_id, status, total=0)


class ImportFailed(BulkIngestError):
    """The file cannot be imported; the job ends INTERNAL_FAILURE with this reason."""


class ImportRunner:
    """Runs one ``ImportRequested`` event to completion, hand-over or failure."""

    def __init__(
        self,
        config: ImportConfig,
        registry: EntityRegistry,
        topics: Topics,
        producer: AsyncProducer,
        reference_types: Callable[[str], Any],
        should_hand_over: Callable[[], bool],
        unprocessed: UnprocessedRecords,
        announcer: Announcer,
    ) -> None:
        self._config = config
        self._registry = registry
        self._topics = topics
        self._producer = producer
        self._reference_types = reference_types
        self._should_hand_over = should_hand_over
        self._unprocessed = unprocessed
        self._announcer = announcer

    def decode(self, payload: bytes) -> ImportRequested:
        """The event; raises :class:`UndecodableMessage` for the dead-letter topic."""
        return self._topics.imports.decode(payload)

    async def run(self, request: ImportRequested) -> None:
        job_id = request.job_id
        status = await self._job_status(job_id)
        if status is None or is_terminal(status):
            log.info("import %s is %s; nothing to do", job_id, status or "unknown")
            return
        started = time.monotonic()
        try:
            outcome = await self._produce_rows(request)
        except JobEnded as exc:
            log.info("import %s stopped: the job became %s", job_id, exc)
            return
        except ImportCancelled as exc:
            log.info("import %s cancelled after %d rows", job_id, exc.rows_sent)
            await self._unprocessed.cancel(job_id, total=exc.rows_sent)
        except ImportTripped as exc:
            log.info("import %s stopped by its error-rate breaker", job_id)
            await self._unprocessed.stop_for_error_rate(job_id, total=exc.rows_sent)
            return
        except ImportFailed as exc:
            log.warning("import %s failed: %s", job_id, exc)
            await self.fail(job_id, str(exc))
            return
        if outcome is None:
            return  # handed over
        await self._finish(request, lambda conn: _record_total(conn, job_id, outcome))
        log.info("import %s: %s rows read in %.1f s", job_id, outcome, time.monotonic() - started)

    async def fail(self, job_id: str, reason: str) -> None:
        """End the import INTERNAL_FAILURE; rows sent but not processed fail on the way."""
        await self._unprocessed.end_incomplete(
            job_id,
            ErrorCode.RecordNotProcessed,
            f"was read from the file but not processed: {reason[:300]}",
            reason,
        )

    async def _produce_rows(self, request: ImportRequested) -> int | None:
        """Every row on ``bulk.records``; the row count, or None when handed over."""
        references = await self._reference_types(request.tenant_id)
        job_options = await self._job_options(request.job_id)
        source, closer = await asyncio.to_thread(self._open, request, references, job_options)
        in_flight: list[asyncio.Task[None]] = []
        pace = Backpressure(self._config.libpq_url, request.job_id, self._config.max_rows_ahead)
        try:
            while True:
                if self._should_hand_over():
                    await _drain(in_flight)
                    await self._hand_over(request, source)
                    return None
                chunk = await asyncio.to_thread(_next_chunk, source)
                if chunk is None:
                    break
                in_flight.append(asyncio.create_task(self._send(chunk)))
                if len(in_flight) >= MAX_IN_FLIGHT:
                    await in_flight.pop(0)
                await pace.wait(source.rows_seen, self._should_hand_over)
            await _drain(in_flight)
            return source.rows_seen
        finally:
            for task in in_flight:
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)
            await pace.close()
            await asyncio.to_thread(closer.close)

    def _open(
        self,
        request: ImportRequested,
        references: Mapping[str, frozenset[str]],
        job_options: JobOptions,
    ) -> tuple[ChunkSource, contextlib.ExitStack]:
        stack = contextlib.ExitStack()
        try:
            definition = self._registry.get(request.entity)
            path = _inside(self._config.file_dir, request.path)
            options = read_options_of(request)
            table = stack.enter_context(open_rows(path, options, self._config.caps))
            router = router_for(
                definition, table, options, request.field_mappings, references, job_options
            )
        except UnreadableFile as exc:
            stack.close()
            raise ImportFailed(str(exc)) from exc
        except InvalidInput as exc:
            stack.close()
            raise ImportFailed(
                f"The file's header no longer fits: {exc.errors[0].message}"
            ) from exc
        except Exception as exc:
            stack.close()
            log.exception("import %s: the file cannot be opened", request.job_id)
            raise ImportFailed(f"The file cannot be read: {exc}") from exc
        branch = str(definition.avro_schema["name"])
        source = ChunkSource(
            request,
            table,
            router,
            self._topics.records.encode,
            self._config.partitions,
            branch,
            self._config.max_message_bytes,
        )
        return source, stack

    async def _send(self, chunk: Chunk) -> None:
        records = self._topics.records
        await self._producer.send_all(
            records.encoded(payload, None, partition) for partition, payload in chunk.messages
        )

    async def _hand_over(self, request: ImportRequested, source: ChunkSource) -> None:
        """Re-publish the event so the partition's next owner resumes where this one stopped."""
        resume = request.resumed_at(source.chunks_done)
        log.info("import %s handed over at chunk %s", request.job_id, resume.resume_chunk)
        await self._producer.send_all([self._topics.imports.message(resume, request.job_id)])

    async def _job_options(self, job_id: str) -> JobOptions:
        async with await psycopg.AsyncConnection.connect(self._config.libpq_url) as conn:
            job = await job_store.job_row(conn, job_id)
        return job.options if job else NO_OPTIONS

    async def _job_status(self, job_id: str) -> JobStatus | None:
        async with await psycopg.AsyncConnection.connect(self._config.libpq_url) as conn:
            job = await job_store.job_row(conn, job_id)
        return job.status if job else None

    async def _finish(self, request: ImportRequested, change: Callable[[Any], Any]) -> None:
        """Change the job row, then nudge the aggregator to re-evaluate (and publish) it."""
        async with await psycopg.AsyncConnection.connect(self._config.libpq_url) as conn:
            await change(conn)
            await conn.commit()
        nudge = self._announcer.progress_nudge(request.job_id, request.tenant_id, "import")
        await self._producer.send_all([nudge])


def _next_chunk(source: ChunkSource) -> Chunk | None:
    """Parse errors are the file's fault: they fail the import, never the worker."""
    try:
        return source.next_chunk()
    except UnreadableFile as exc:
        raise ImportFailed(str(exc)) from exc
    except Exception as exc:
        log.exception("import: reading the file failed")
        raise ImportFailed(f"The file cannot be read past row {source.rows_seen}: {exc}") from exc


def _inside(root: Path, relative: str) -> Path:
    path = (root / relative).resolve()
    if not path.is_relative_to(root.resolve()):
        raise UnreadableFile(f"{relative!r} is outside the file store")
    return path


async def _drain(tasks: list[asyncio.Task[None]]) -> None:
    while tasks:
        await tasks.pop(0)


def import_config(settings: Settings, max_message_bytes: int) -> ImportConfig:
    return ImportConfig(
        file_dir=settings.file_dir,
        caps=ZipCaps(settings.zip_max_uncompressed_bytes, settings.zip_max_ratio),
        partitions=settings.partitions,
        libpq_url=settings.libpq_url,
        max_rows_ahead=settings.import_max_rows_ahead,
        max_message_bytes=max_message_bytes,
    )


class ImportStage:
    """``bulk.imports``: one event at a time, handed back to Faust only when done."""

    name = "import"

    def __init__(self, runner: ImportRunner, dead_letters: DeadLetterQueue) -> None:
        self._runner = runner
        self._dead_letters = dead_letters

    async def handle(self, deliveries: Sequence[Delivery]) -> None:
        for delivery in deliveries:
            request = await self._decoded(delivery)
            if request is not None:
                await self._runner.run(request)

    async def _decoded(self, delivery: Delivery) -> ImportRequested | None:
        try:
            request = self._runner.decode(delivery.value)
        except UndecodableMessage as error:
            await self._dead_letters.send(delivery, error.reason, error.detail)
            return None
        try:
            uuid.UUID(request.job_id)
        except ValueError:
            await self._dead_letters.send(delivery, "invalid-import", "job_id is not a UUID")
            return None
        return request

    async def after_dead_letter(self, delivery: Delivery, reason: str) -> None:
        """An import event that kept failing ends its job."""
        try:
            request = self._runner.decode(delivery.value)
            job_id = str(uuid.UUID(request.job_id))
        except (UndecodableMessage, ValueError):
            return
        await self._runner.fail(job_id, f"the import failed repeatedly: {reason}")
