"""Before-images and revert jobs in the persist transaction (design.md §8 "Revert").

- :func:`write_before_images`: every entity write of a real job leaves the row as it was before
  that job first wrote it (``Writes.before``, decided in :mod:`domain.outcomes`), staged by COPY
  and kept with ``ON CONFLICT DO NOTHING``, so a later batch of the same job writing the key
  again keeps the pre-job state.
- :func:`decide_reverts`: records of revert jobs are decided apart, like dry runs
  (:mod:`storage.dry_run`), from the reverted job's before-images and the current rows
  (:func:`domain.revert.decide_revert`).
- :func:`write_restores`: their deletes and restores, in the same transaction.
- :func:`revert_keys` (the gateway: a revert job's records) and :func:`purge_expired`.

A redelivered revert batch changes nothing: its records are in the ledger (written in the same
transaction), so they are re-emitted and never decided again.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any, cast

import psycopg
from psycopg import sql

from domain.compact_json import compact_json
from domain.outcomes import Outcome, PendingRecord, StoredRow, Writes
from domain.revert import BeforeImage, Restore, decide_revert
from storage.connection import Connection, driver
from storage.entity_rows import EntityTableMap

RowKey = tuple[str, str, str]

_COLUMNS = (
    "job_id",
    "key",
    "tenant_id",
    "entity",
    "record_id",
    "before",
    "last_job_id",
    "last_seq",
    "last_index",
)


async def write_before_images(
    conn: psycopg.AsyncConnection[Any], writes: Writes, dry_run: frozenset[str]
) -> None:
    rows = [
        _image_row(job_id, row_key, record_id, prior)
        for (job_id, row_key), (record_id, prior) in writes.before.items()
        if job_id not in dry_run
    ]
    if not rows:
        return
    await conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS staging_before_images "
        "(LIKE before_images INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
    )
    columns = ", ".join(_COLUMNS)
    async with conn.cursor().copy(f"COPY staging_before_images ({columns}) FROM STDIN") as copy:
        for row in rows:
            await copy.write_row(row)
    await conn.execute(
        f"INSERT INTO before_images ({columns}) SELECT {columns} FROM staging_before_images "
        "ON CONFLICT (job_id, key) DO NOTHING"
    )


def _image_row(job_id: str, row_key: RowKey, record_id: str, prior: StoredRow | None) -> list[Any]:
    tenant_id, entity, key = row_key
    if prior is None:
        return [job_id, key, tenant_id, entity, record_id, None, None, None, None]
    before = compact_json(dict(prior.values), default=str)
    seq, index = prior.last
    return [job_id, key, tenant_id, entity, record_id, before, prior.last_job_id, seq, index]


async def decide_reverts(
    conn: psycopg.AsyncConnection[Any],
    records: Sequence[PendingRecord],
    stored: Mapping[RowKey, StoredRow],
    writes: Writes,
    reverting: Mapping[str, str],
) -> tuple[list[Outcome], list[Restore]]:
    """Outcomes of revert records (``reverting``: revert job → reverted job) and their changes.

    A row another record of this batch writes is changed since, whatever the order: the revert
    never overwrites a write it has not seen.
    """
    by_job: dict[str, list[PendingRecord]] = defaultdict(list)
    for record in records:
        by_job[record.job_id].append(record)
    outcomes: list[Outcome] = []
    restores: list[Restore] = []
    for job_id, job_records in by_job.items():
        reverted = reverting[job_id]
        seq, images = await _images(conn, reverted, [r.key for r in job_records if r.key])
        for record in job_records:
            row_key = record.row_key
            outcome, restore = decide_revert(
                record,
                images.get(record.key or ""),
                stored.get(row_key),
                seq,
                row_key in writes.inserts or row_key in writes.updates,
            )
            outcomes.append(outcome)
            if restore is not None:
                restores.append(restore)
    return outcomes, restores


async def _images(
    conn: psycopg.AsyncConnection[Any], job_id: str, keys: Sequence[str]
) -> tuple[int, dict[str, BeforeImage]]:
    """The reverted job's acceptance sequence and its before-images of these keys."""
    cursor = await conn.execute("SELECT accepted_seq FROM jobs WHERE job_id = %s", [job_id])
    row = await cursor.fetchone()
    seq = int(row[0]) if row else -1
    cursor = await conn.execute(
        "SELECT key, record_id::text, before, last_job_id::text, coalesce(last_seq, 0), "
        "coalesce(last_index, -1) FROM before_images WHERE job_id = %s AND key = ANY(%s)",
        [job_id, list(keys)],
    )
    images = {
        key: BeforeImage(record_id, _json(before), last_job_id, (int(last_seq), int(last_index)))
        for key, record_id, before, last_job_id, last_seq, last_index in await cursor.fetchall()
    }
    return seq, images


def _json(value: Any) -> Mapping[str, Any] | None:
    parsed = json.loads(value) if isinstance(value, str) else value
    return cast(Mapping[str, Any] | None, parsed)


async def write_restores(
    conn: psycopg.AsyncConnection[Any],
    tables: Mapping[str, EntityTableMap],
    restores: Sequence[Restore],
) -> None:
    """Delete the rows the reverted jobs created; put back the ones they updated."""
    deletes: dict[str, list[str]] = defaultdict(list)
    puts: dict[str, list[Restore]] = defaultdict(list)
    for restore in restores:
        if restore.deletes:
            deletes[restore.record.entity].append(restore.image.record_id)
        else:
            puts[restore.record.entity].append(restore)
    for entity, ids in deletes.items():
        await conn.execute(
            sql.SQL("DELETE FROM {} WHERE id = ANY(%s::uuid[])").format(
                sql.Identifier(tables[entity].table)
            ),
            [ids],
        )
    for entity, rows in puts.items():
        await _restore_rows(conn, tables[entity], rows)


async def _restore_rows(
    conn: psycopg.AsyncConnection[Any], table: EntityTableMap, rows: Sequence[Restore]
) -> None:
    staging = sql.Identifier(f"restore_{table.table}")
    await conn.execute(
        sql.SQL(
            "CREATE TEMP TABLE IF NOT EXISTS {staging} (LIKE {table} INCLUDING DEFAULTS) "
            "ON COMMIT DELETE ROWS"
        ).format(staging=staging, table=sql.Identifier(table.table))
    )
    columns = ["id", "tenant_id", "last_job_id", "last_seq", "last_index", *table.columns]
    statement = sql.SQL("COPY {staging} ({columns}) FROM STDIN").format(
        staging=staging, columns=sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    async with conn.cursor().copy(statement) as copy:
        for restore in rows:
            image = restore.image
            await copy.write_row(
                [
                    image.record_id,
                    restore.record.tenant_id,
                    image.last_job_id,
                    image.last[0],
                    image.last[1],
                    *table.copy_values(image.before or {}),
                ]
            )
    assignments = sql.SQL(", ").join(
        sql.SQL("{c} = s.{c}").format(c=sql.Identifier(c))
        for c in (*table.columns, "last_job_id", "last_seq", "last_index")
    )
    await conn.execute(
        sql.SQL(
            "UPDATE {table} AS t SET {assignments}, updated_at = now() "
            "FROM {staging} AS s WHERE t.id = s.id"
        ).format(table=sql.Identifier(table.table), assignments=assignments, staging=staging)
    )


# --- the gateway --------------------------------------------------------------------------


async def revert_keys(conn: Connection, job_id: str, limit: int) -> list[str]:
    """The keys of the rows a job wrote (its before-images), in a stable order: the revert
    job's records, index = position; at most ``limit``."""
    pg = await driver(conn)
    cursor = await pg.execute(
        "SELECT key FROM before_images WHERE job_id = %s ORDER BY key LIMIT %s", [job_id, limit]
    )
    return [str(key) for (key,) in await cursor.fetchall()]


async def purge_expired(conn: Connection, retention_seconds: float) -> int:
    """Drop the before-images of jobs that ended more than the retention ago."""
    pg = await driver(conn)
    cursor = await pg.execute(
        "DELETE FROM before_images b USING jobs j WHERE b.job_id = j.job_id "
        "AND j.completed_at < now() - make_interval(secs => %s)",
        [retention_seconds],
    )
    return cursor.rowcount
