"""One database transaction per batch: entity rows, the outcome ledger and part counts together.

Steps, in one transaction:
1. lock the batch's job rows (``FOR KEY SHARE``) and read their acceptance sequences: a job that
   is terminal (or unknown) takes no records, and a job being ended or filled waits for this
   batch, never interleaves with it;
2. read the ledger for the records of parts seen before (and of jobs with a fill part): those
   records were already done (a redelivery) and their stored outcomes are re-emitted unchanged;
3. read the entity rows the remaining records touch (with the order of the write that last
   reached each) and decide every outcome in acceptance order (domain.outcomes);
4. encode each new outcome's event — before anything is written, so a value the encoder refuses
   fails its record instead of stranding a committed outcome that cannot be announced;
5. COPY new rows, UPDATE changed rows (via a staging table), COPY the ledger rows and record the
   per-part counts the aggregator sums;
6. commit. Only then does the caller produce the events and let Kafka offsets move.

A value PostgreSQL refuses (``\\u0000``, out-of-range numbers, …) fails *its* record, not the
batch: the transaction is rolled back, the offending records are found by probing halves of the
batch against scratch tables (:mod:`domain.isolation`), and the batch is decided and written
again with those records failed as ``InvalidValue``. A unique violation (a zombie consumer wrote
the same records first) is answered by deciding again with the whole ledger read.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from domain.errors import ErrorCode
from domain.isolation import failing_items
from domain.jobs import is_terminal
from domain.outcomes import (
    Outcome,
    PendingRecord,
    RecordFailure,
    StoredRow,
    Writes,
    decide_batch,
)
from domain.revert import Restore
from domain.text import storable, unstorable_character
from storage import jobs as job_store
from storage.before_images import (
    capture_before_images,
    decide_reverts,
    images_in_python,
    write_before_images,
    write_restores,
)
from storage.connection import StageConnection
from storage.dry_run import decide_dry_runs
from storage.entity_rows import EntityTableMap
from storage.errors import VALUE_REFUSED
from storage.job_parts import parts_needing_lookup, write_parts
from storage.ledger import (
    LEDGER_COLUMNS,
    keep_late_records,
    ledger_outcomes,
    ledger_row,
    write_ledger,
)

MAX_ROUNDS = 4
"""Decide-and-write rounds per batch: the first, then one per isolation or reconciliation."""


@dataclass(frozen=True)
class BatchPart:
    """The records of one ``bulk.records`` message: the unit the aggregator counts."""

    job_id: str
    tenant_id: str
    part_id: str
    total: int
    records: Sequence[PendingRecord]


@dataclass(frozen=True)
class PersistedBatch:
    outcomes: list[Outcome]  # every record of live jobs, including re-emitted ones, in order
    events: list[bytes]  # the encoded event of each outcome, same order
    parts: list[BatchPart]  # parts of live jobs, whose counts are durable (new or seen before)
    written: list[Outcome]  # the outcomes this batch stored (not those re-emitted), committed
    accepted_at: Mapping[str, datetime]  # when each live job was accepted (latency metrics)
    dry_run: frozenset[str] = frozenset()  # jobs that write no entity row
    silent: frozenset[str] = frozenset()  # jobs whose outcomes get no event (dry or asked so)


Encoder = Callable[[Outcome], bytes]


class _Refused(Exception):
    """Some records' values cannot be written or encoded: decide again with them failed."""

    def __init__(self, refusals: Mapping[tuple[str, int], RecordFailure]) -> None:
        super().__init__(f"{len(refusals)} records refused")
        self.refusals = refusals


@dataclass(frozen=True)
class _Decided:
    """What one round decided, before writing."""

    live: list[BatchPart]
    done: dict[tuple[str, int], Outcome]
    decided: list[Outcome]
    writes: Writes
    records: dict[tuple[str, int], PendingRecord]
    sequences: dict[str, int]
    accepted_at: dict[str, datetime]
    dry_run: frozenset[str]
    silent: frozenset[str]
    restores: list[tuple[str, Restore]]  # (reverted job, change)


class BatchPersister:
    def __init__(
        self,
        libpq_url: str,
        tables: Mapping[str, EntityTableMap],
        encode: Encoder,
        labels: Mapping[str, str],
    ) -> None:
        self._connection = StageConnection(libpq_url)
        self._tables = tables
        self._encode = encode
        self._labels = labels
        self._key_fields = {name: t.key_field for name, t in tables.items()}

    async def close(self) -> None:
        await self._connection.close()

    async def persist(self, parts: Sequence[BatchPart]) -> PersistedBatch:
        try:
            return await self._persist(parts)
        except psycopg.OperationalError:
            await self._connection.discard()
            raise

    async def _persist(self, parts: Sequence[BatchPart]) -> PersistedBatch:
        refused: dict[tuple[str, int], RecordFailure] = {}
        reconcile = False
        for _ in range(MAX_ROUNDS - 1):
            try:
                return await self._round(parts, refused, reconcile)
            except _Refused as caught:
                refused.update(caught.refusals)
            except psycopg.errors.UniqueViolation:
                if reconcile:
                    raise
                reconcile = True
            except VALUE_REFUSED:
                found = await self._isolate(parts, refused, reconcile)
                if not found:
                    raise  # not reproducible record by record: a bug, for the runner
                refused.update(found)
        return await self._round(parts, refused, reconcile)

    async def _round(
        self,
        parts: Sequence[BatchPart],
        refused: Mapping[tuple[str, int], RecordFailure],
        reconcile: bool,
    ) -> PersistedBatch:
        conn = await self._connection.get()
        async with conn.transaction():
            round_ = await self._decide(conn, parts, refused, reconcile)
            events = self._encoded(round_.decided, round_.records)
            await self._write_entities(conn, round_.writes, round_.sequences)
            await write_restores(conn, self._tables, round_.restores)
            await write_ledger(conn, round_.decided)
            await write_parts(conn, round_.live, {(o.job_id, o.index): o for o in round_.decided})
        again = {(o.job_id, o.index): self._encode(o) for o in round_.done.values()}
        encoded = {**again, **events}
        outcomes = sorted(
            [*round_.done.values(), *round_.decided], key=lambda o: (o.job_id, o.index)
        )
        return PersistedBatch(
            outcomes,
            [encoded[(o.job_id, o.index)] for o in outcomes],
            round_.live,
            list(round_.decided),
            round_.accepted_at,
            round_.dry_run,
            round_.silent,
        )

    async def _decide(
        self,
        conn: psycopg.AsyncConnection[Any],
        parts: Sequence[BatchPart],
        refused: Mapping[tuple[str, int], RecordFailure],
        reconcile: bool,
    ) -> _Decided:
        jobs = await job_store.lock_for_batch(conn, {part.job_id for part in parts})
        live = [p for p in parts if p.job_id in jobs and not is_terminal(jobs[p.job_id].status)]
        ended = [p for p in parts if p.job_id in jobs and is_terminal(jobs[p.job_id].status)]
        if ended:  # a stopped job's late records: their values, for retry (ledger.py)
            await keep_late_records(conn, [r for part in ended for r in part.records])
        sequences = {job_id: job.accepted_seq for job_id, job in jobs.items()}
        accepted_at = {job_id: job.created_at for job_id, job in jobs.items()}
        looked_up = live if reconcile else await parts_needing_lookup(conn, live)
        done = await ledger_outcomes(conn, [r for part in looked_up for r in part.records])
        records = {(r.job_id, r.index): r for part in live for r in part.records}
        pending = [
            _refused_record(r, refused[key]) if key in refused else r
            for key, r in records.items()
            if key not in done
        ]
        stored = await self._stored_rows(conn, pending)
        dry = {job_id for job_id, job in jobs.items() if job.dry_run}
        reverting = {j: job.revert_of for j, job in jobs.items() if job.revert_of is not None}
        decided, writes = decide_batch(
            [r for r in pending if r.job_id not in dry and r.job_id not in reverting],
            stored,
            self._key_fields,
            sequences,
        )
        if dry:
            dry_records = [r for r in pending if r.job_id in dry]
            decided += await decide_dry_runs(conn, dry_records, stored, self._key_fields, sequences)
        restores: list[tuple[str, Restore]] = []
        if reverting:
            revert_records = [r for r in pending if r.job_id in reverting]
            reverted, restores = await decide_reverts(
                conn, revert_records, stored, writes, reverting
            )
            decided += reverted
        silent = frozenset(j for j, job in jobs.items() if job.dry_run or not job.outcome_events)
        return _Decided(
            live,
            done,
            decided,
            writes,
            records,
            sequences,
            accepted_at,
            frozenset(dry),
            silent,
            restores,
        )

    def _encoded(
        self, decided: Sequence[Outcome], records: Mapping[tuple[str, int], PendingRecord]
    ) -> dict[tuple[str, int], bytes]:
        events: dict[tuple[str, int], bytes] = {}
        refusals: dict[tuple[str, int], RecordFailure] = {}
        for outcome in decided:
            key = (outcome.job_id, outcome.index)
            try:
                events[key] = self._encode(outcome)
            except (ValueError, TypeError, OverflowError, UnicodeError) as exc:
                refusals[key] = self._refusal(records[key], f"cannot be encoded: {exc}", None)
        if refusals:
            raise _Refused(refusals)
        return events

    # --- isolation ---------------------------------------------------------------------------

    async def _isolate(
        self,
        parts: Sequence[BatchPart],
        refused: Mapping[tuple[str, int], RecordFailure],
        reconcile: bool,
    ) -> dict[tuple[str, int], RecordFailure]:
        """The records whose own values PostgreSQL refuses, each with its failure."""
        conn = await self._connection.get()
        found: dict[tuple[str, int], RecordFailure] = {}
        async with conn.transaction(force_rollback=True):
            round_ = await self._decide(conn, parts, refused, reconcile)
            await self._create_scratch_tables(conn)
            entity_values = _entity_values_by_record(round_.writes)
            errors: dict[tuple[str, int], Exception] = {}

            async def passes(outcomes: Sequence[Outcome]) -> bool:
                try:
                    async with conn.transaction(force_rollback=True):
                        await self._probe(conn, outcomes, entity_values)
                    return True
                except VALUE_REFUSED as exc:
                    if len(outcomes) == 1:
                        errors[(outcomes[0].job_id, outcomes[0].index)] = exc
                    return False

            for bad in await failing_items(round_.decided, passes):
                key = (bad.job_id, bad.index)
                record = round_.records[key]
                error = errors[key]
                found[key] = self._refusal(
                    record, f"cannot be stored: {_first_line(error)}", self._field_of(record, error)
                )
        return found

    async def _create_scratch_tables(self, conn: psycopg.AsyncConnection[Any]) -> None:
        for table in {*(t.table for t in self._tables.values()), "record_outcomes"}:
            await conn.execute(
                sql.SQL(
                    "CREATE TEMP TABLE IF NOT EXISTS {scratch} (LIKE {table} INCLUDING DEFAULTS) "
                    "ON COMMIT DELETE ROWS"
                ).format(scratch=sql.Identifier(f"scratch_{table}"), table=sql.Identifier(table))
            )

    async def _probe(
        self,
        conn: psycopg.AsyncConnection[Any],
        outcomes: Sequence[Outcome],
        entity_values: Mapping[tuple[str, int], tuple[str, PendingRecord]],
    ) -> None:
        """Write these outcomes' ledger rows and entity rows into the scratch tables."""
        statement = sql.SQL("COPY scratch_record_outcomes ({}) FROM STDIN").format(
            sql.SQL(", ").join(map(sql.Identifier, LEDGER_COLUMNS))
        )
        async with conn.cursor().copy(statement) as copy:
            for outcome in outcomes:
                await copy.write_row(ledger_row(outcome))
        by_entity: dict[str, list[tuple[str, PendingRecord]]] = defaultdict(list)
        for outcome in outcomes:
            written = entity_values.get((outcome.job_id, outcome.index))
            if written is not None:
                by_entity[outcome.entity].append(written)
        for entity, rows in by_entity.items():
            table = self._tables[entity]
            await self._copy_rows(conn, table, rows, f"scratch_{table.table}", {})

    def _refusal(self, record: PendingRecord, problem: str, field: str | None) -> RecordFailure:
        label = self._labels.get(record.entity, "Record")
        where = f" in {field}" if field else ""
        message = storable(f"{label} at index {record.index} has a value{where} that {problem}")
        return RecordFailure(ErrorCode.InvalidValue, message, field)

    def _field_of(self, record: PendingRecord, error: Exception) -> str | None:
        """The field holding the refused value: the first that no storage can hold, else the
        column PostgreSQL names."""
        for name, value in (record.record or {}).items():
            if isinstance(value, str) and unstorable_character(value) is not None:
                return str(name)
        table = self._tables.get(record.entity)
        column = _column_named_by(error)
        if table is not None and column in table.columns:
            return table.fields[table.columns.index(column)]
        return None

    # --- entity rows -----------------------------------------------------------------------------

    async def _stored_rows(
        self, conn: psycopg.AsyncConnection[Any], records: Sequence[PendingRecord]
    ) -> dict[tuple[str, str, str], StoredRow]:
        wanted: dict[tuple[str, str], set[str]] = defaultdict(set)
        for r in records:
            # A key no storage holds is in no table: its insert fails, and isolation fails it.
            if r.failure is None and r.key is not None and unstorable_character(r.key) is None:
                wanted[(r.tenant_id, r.entity)].add(r.key)
        stored: dict[tuple[str, str, str], StoredRow] = {}
        for (tenant_id, entity), keys in wanted.items():
            table = self._tables[entity]
            cursor = await conn.execute(table.rows_of_keys(), [tenant_id, list(keys)])
            for record_id, last_seq, last_index, last_job, *values in await cursor.fetchall():
                record = table.record_from_row(dict(zip(table.columns, values, strict=True)))
                stored[(tenant_id, entity, record[table.key_field])] = StoredRow(
                    record_id, record, (last_seq, last_index), last_job
                )
        return stored

    async def _write_entities(
        self, conn: psycopg.AsyncConnection[Any], writes: Writes, sequences: Mapping[str, int]
    ) -> None:
        by_entity_inserts: dict[str, list[tuple[str, PendingRecord]]] = defaultdict(list)
        for record_id, record in writes.inserts.values():
            by_entity_inserts[record.entity].append((record_id, record))
        for entity, rows in by_entity_inserts.items():
            table = self._tables[entity]
            await self._copy_rows(conn, table, rows, table.table, sequences)
        by_entity_updates: dict[str, list[tuple[str, PendingRecord]]] = defaultdict(list)
        for record_id, record in writes.updates.values():
            by_entity_updates[record.entity].append((record_id, record))
        in_python = images_in_python(writes)  # before-images the rows cannot give (rare)
        not_captured = {record_id for _, _, record_id, _ in in_python}
        for entity, rows in by_entity_updates.items():
            await self._update_rows(conn, self._tables[entity], rows, sequences, not_captured)
        await write_before_images(conn, self._tables, in_python)

    async def _copy_rows(
        self,
        conn: psycopg.AsyncConnection[Any],
        table: EntityTableMap,
        rows: Sequence[tuple[str, PendingRecord]],
        target: str,
        sequences: Mapping[str, int],
    ) -> None:
        columns = ["id", "tenant_id", "last_job_id", "last_seq", "last_index", *table.columns]
        statement = sql.SQL("COPY {target} ({columns}) FROM STDIN").format(
            target=sql.Identifier(target),
            columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
        )
        async with conn.cursor().copy(statement) as copy:
            for record_id, record in rows:
                await copy.write_row(
                    [
                        record_id,
                        record.tenant_id,
                        record.job_id,
                        sequences.get(record.job_id, 0),
                        record.index,
                        *table.copy_values(record.record or {}),
                    ]
                )

    async def _update_rows(
        self,
        conn: psycopg.AsyncConnection[Any],
        table: EntityTableMap,
        rows: Sequence[tuple[str, PendingRecord]],
        sequences: Mapping[str, int],
        not_captured: Collection[str],
    ) -> None:
        staging = f"staging_{table.table}"
        await conn.execute(
            sql.SQL(
                "CREATE TEMP TABLE IF NOT EXISTS {staging} (LIKE {table} INCLUDING DEFAULTS) "
                "ON COMMIT DELETE ROWS"
            ).format(staging=sql.Identifier(staging), table=sql.Identifier(table.table))
        )
        await self._copy_rows(conn, table, rows, staging, sequences)
        await capture_before_images(conn, table, staging, not_captured)
        assignments = sql.SQL(", ").join(
            sql.SQL("{c} = s.{c}").format(c=sql.Identifier(c))
            for c in (*table.columns, "last_job_id", "last_seq", "last_index")
        )
        await conn.execute(
            sql.SQL(
                "UPDATE {table} AS t SET {assignments}, updated_at = now() "
                "FROM {staging} AS s WHERE t.id = s.id"
            ).format(
                table=sql.Identifier(table.table),
                assignments=assignments,
                staging=sql.Identifier(staging),
            )
        )


def _refused_record(record: PendingRecord, failure: RecordFailure) -> PendingRecord:
    """The record fails with ``failure`` — or keeps the failure it had — without its values
    (they are what could not be stored)."""
    return record._replace(failure=record.failure or failure, record=None, key=storable(record.key))


def _entity_values_by_record(writes: Writes) -> dict[tuple[str, int], tuple[str, PendingRecord]]:
    """Which entity row value each record would write (for probing), by (job_id, index)."""
    return {
        (record.job_id, record.index): (record_id, record)
        for record_id, record in [*writes.inserts.values(), *writes.updates.values()]
    }


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__


def _column_named_by(error: Exception) -> str | None:
    """The column in PostgreSQL's ``CONTEXT: COPY t, line 1, column c: ...``, if any."""
    diag = getattr(error, "diag", None)
    context = getattr(diag, "context", None) or ""
    marker = ", column "
    if marker not in context:
        return None
    return context.split(marker, 1)[1].split(":", 1)[0].strip()
