"""One database transaction per batch: entity rows, the outcome ledger and part counts together.

Steps, in one transaction:
1. read the ledger for the batch's (job_id, index) pairs: those records were already done (the
   batch is a redelivery) and their stored outcomes are re-emitted unchanged;
2. read the entity rows the remaining records touch and decide every outcome (domain.outcomes);
3. COPY new rows, UPDATE changed rows (via a staging table), COPY the ledger rows and record the
   per-part counts the aggregator sums;
4. commit. Only then does the caller produce the outcomes and let Kafka offsets move.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from domain.jobs import RecordStatus
from domain.outcomes import Outcome, PendingRecord, StoredRow, Writes, decide_batch, part_counts
from storage.connection import StageConnection
from storage.entity_rows import EntityTableMap

LEDGER_COLUMNS = (
    "job_id",
    "index",
    "key",
    "status",
    "record_id",
    "error_code",
    "error_field",
    "error_message",
    "line",
    "record",
    "source",
)


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
    outcomes: list[Outcome]  # every record of the batch, including re-emitted ones
    parts: list[BatchPart]  # parts whose counts are durable (new or seen before)


class BatchPersister:
    def __init__(self, libpq_url: str, tables: Mapping[str, EntityTableMap]) -> None:
        self._connection = StageConnection(libpq_url)
        self._tables = tables
        self._key_fields = {name: t.key_field for name, t in tables.items()}

    async def close(self) -> None:
        await self._connection.close()

    async def job_statuses(self, job_ids: Iterable[str]) -> dict[str, str]:
        conn = await self._connection.get()
        async with conn.transaction():
            cursor = await conn.execute(
                "SELECT job_id::text, status FROM jobs WHERE job_id = ANY(%s::uuid[])",
                [list(set(job_ids))],
            )
            return {job_id: status for job_id, status in await cursor.fetchall()}

    async def persist(self, parts: Sequence[BatchPart]) -> PersistedBatch:
        try:
            return await self._persist(parts)
        except psycopg.OperationalError:
            await self._connection.discard()
            raise

    async def _persist(self, parts: Sequence[BatchPart]) -> PersistedBatch:
        conn = await self._connection.get()
        records = [r for part in parts for r in part.records]
        async with conn.transaction():
            seen = await _parts_seen_before(conn, parts)
            done = await _ledger_outcomes(
                conn,
                [r for part in parts if (part.job_id, part.part_id) in seen for r in part.records],
            )
            pending = [r for r in records if (r.job_id, r.index) not in done]
            stored = await self._stored_rows(conn, pending)
            decided, writes = decide_batch(pending, stored, self._key_fields)
            await self._write_entities(conn, writes)
            await _write_ledger(conn, decided)
            await _write_parts(conn, parts, {(o.job_id, o.index): o for o in decided})
        outcomes = sorted([*done.values(), *decided], key=lambda o: (o.job_id, o.index))
        return PersistedBatch(outcomes, list(parts))

    async def _stored_rows(
        self, conn: psycopg.AsyncConnection[Any], records: Sequence[PendingRecord]
    ) -> dict[tuple[str, str, str], StoredRow]:
        wanted: dict[tuple[str, str], set[str]] = defaultdict(set)
        for r in records:
            if r.failure is None and r.key is not None:
                wanted[(r.tenant_id, r.entity)].add(r.key)
        stored: dict[tuple[str, str, str], StoredRow] = {}
        for (tenant_id, entity), keys in wanted.items():
            table = self._tables[entity]
            query = sql.SQL(
                "SELECT id::text, {columns} FROM {table} WHERE tenant_id = %s AND {key} = ANY(%s)"
            ).format(
                columns=sql.SQL(", ").join(map(sql.Identifier, table.columns)),
                table=sql.Identifier(table.table),
                key=sql.Identifier(table.key_column),
            )
            cursor = await conn.execute(query, [tenant_id, list(keys)])
            names = ["id", *table.columns]
            for values in await cursor.fetchall():
                row = dict(zip(names, values, strict=True))
                record = table.record_from_row(row)
                stored[(tenant_id, entity, record[table.key_field])] = StoredRow(row["id"], record)
        return stored

    async def _write_entities(self, conn: psycopg.AsyncConnection[Any], writes: Writes) -> None:
        by_entity_inserts: dict[str, list[tuple[str, PendingRecord]]] = defaultdict(list)
        for record_id, record in writes.inserts.values():
            by_entity_inserts[record.entity].append((record_id, record))
        for entity, rows in by_entity_inserts.items():
            await self._copy_rows(conn, self._tables[entity], rows, self._tables[entity].table)
        by_entity_updates: dict[str, list[tuple[str, PendingRecord]]] = defaultdict(list)
        for record_id, record in writes.updates.values():
            by_entity_updates[record.entity].append((record_id, record))
        for entity, rows in by_entity_updates.items():
            await self._update_rows(conn, self._tables[entity], rows)

    async def _copy_rows(
        self,
        conn: psycopg.AsyncConnection[Any],
        table: EntityTableMap,
        rows: Sequence[tuple[str, PendingRecord]],
        target: str,
    ) -> None:
        columns = ["id", "tenant_id", "last_job_id", *table.columns]
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
                        *table.copy_values(record.record or {}),
                    ]
                )

    async def _update_rows(
        self,
        conn: psycopg.AsyncConnection[Any],
        table: EntityTableMap,
        rows: Sequence[tuple[str, PendingRecord]],
    ) -> None:
        staging = f"staging_{table.table}"
        await conn.execute(
            sql.SQL(
                "CREATE TEMP TABLE IF NOT EXISTS {staging} (LIKE {table} INCLUDING DEFAULTS) "
                "ON COMMIT DELETE ROWS"
            ).format(staging=sql.Identifier(staging), table=sql.Identifier(table.table))
        )
        await self._copy_rows(conn, table, rows, staging)
        assignments = sql.SQL(", ").join(
            sql.SQL("{c} = s.{c}").format(c=sql.Identifier(c))
            for c in (*table.columns, "last_job_id")
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


async def _parts_seen_before(
    conn: psycopg.AsyncConnection[Any], parts: Sequence[BatchPart]
) -> set[tuple[str, str]]:
    """Parts with a ``job_parts`` row: only their records can already be in the ledger.

    Ledger rows and part rows are written in the same transaction, so a part without a row was
    never decided and the (costly) ledger lookup is skipped for it: a redelivery pays for the
    lookup, the first delivery does not.
    """
    cursor = await conn.execute(
        "SELECT p.job_id::text, p.part_id FROM job_parts p "
        "JOIN unnest(%s::uuid[], %s::text[]) AS wanted(job_id, part_id) "
        "ON p.job_id = wanted.job_id AND p.part_id = wanted.part_id",
        [[part.job_id for part in parts], [part.part_id for part in parts]],
    )
    return {(job_id, part_id) for job_id, part_id in await cursor.fetchall()}


async def _ledger_outcomes(
    conn: psycopg.AsyncConnection[Any], records: Sequence[PendingRecord]
) -> dict[tuple[str, int], Outcome]:
    by_job: dict[str, list[int]] = defaultdict(list)
    meta: dict[tuple[str, int], PendingRecord] = {}
    for r in records:
        by_job[r.job_id].append(r.index)
        meta[(r.job_id, r.index)] = r
    done: dict[tuple[str, int], Outcome] = {}
    for job_id, indexes in by_job.items():
        # A join on unnest, not "index = ANY(%s)": with a parameter array PostgreSQL may scan the
        # whole job and test each row against the array (quadratic as the job grows).
        cursor = await conn.execute(
            "SELECT r.index, r.key, r.status, r.record_id::text, r.error_code, r.error_message, "
            "r.error_field, r.line, r.source FROM unnest(%s::bigint[]) AS wanted(index) "
            "JOIN record_outcomes r ON r.job_id = %s AND r.index = wanted.index",
            [indexes, job_id],
        )
        rows = await cursor.fetchall()
        for index, key, status, record_id, code, message, field, line, columns in rows:
            pending = meta[(job_id, index)]
            done[(job_id, index)] = Outcome(
                job_id=job_id,
                tenant_id=pending.tenant_id,
                entity=pending.entity,
                index=index,
                key=key,
                status=RecordStatus(status),
                record_id=record_id,
                error_code=code,
                error_message=message,
                error_field=field,
                line=line,
                source=dict(columns) if columns else None,
            )
    return done


async def _write_ledger(conn: psycopg.AsyncConnection[Any], outcomes: Sequence[Outcome]) -> None:
    if not outcomes:
        return
    statement = sql.SQL("COPY record_outcomes ({}) FROM STDIN").format(
        sql.SQL(", ").join(map(sql.Identifier, LEDGER_COLUMNS))
    )
    async with conn.cursor().copy(statement) as copy:
        for o in outcomes:
            await copy.write_row(
                [
                    o.job_id,
                    o.index,
                    o.key,
                    o.status.value,
                    o.record_id,
                    o.error_code,
                    o.error_field,
                    o.error_message,
                    o.line,
                    _json_or_none(o.submitted),
                    _json_or_none(o.source),
                ]
            )


def _json_or_none(value: Any) -> str | None:
    if not value:
        return None
    return json.dumps(value, separators=(",", ":"), default=str)


async def _write_parts(
    conn: psycopg.AsyncConnection[Any],
    parts: Sequence[BatchPart],
    decided: Mapping[tuple[str, int], Outcome],
) -> None:
    rows = []
    for part in parts:
        fresh = [
            decided[(r.job_id, r.index)] for r in part.records if (r.job_id, r.index) in decided
        ]
        if fresh:
            rows.append((part.job_id, part.part_id, *part_counts(fresh)))
    if rows:
        async with conn.cursor() as cursor:
            await cursor.executemany(
                "INSERT INTO job_parts (job_id, part_id, successful, failed, skipped) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (job_id, part_id) DO UPDATE SET "
                "successful = job_parts.successful + EXCLUDED.successful, "
                "failed = job_parts.failed + EXCLUDED.failed, "
                "skipped = job_parts.skipped + EXCLUDED.skipped",
                rows,
            )
