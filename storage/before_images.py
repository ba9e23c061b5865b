"""Before-images and revert jobs in the persist transaction (design.md §8 "Revert").

- :func:`capture_before_images`: every row a real job updates leaves the row as it was before
  that job first wrote it, copied inside the database from the row itself just before the
  batch's UPDATE (``to_jsonb``), kept with ``ON CONFLICT DO NOTHING``, so a later batch of the
  same job writing the key again keeps the pre-job state; the rare rows several jobs of one
  batch write get theirs from ``Writes.before`` (:func:`write_before_images`). A row the job
  created needs no image: its ``CREATED`` outcome in the ledger (written in the same
  transaction) says so, and inserts — the bulk of every load — pay nothing.
- :func:`decide_reverts`: records of revert jobs are decided apart, like dry runs
  (:mod:`storage.dry_run`), from the reverted job's before-images and the current rows
  (:func:`domain.revert.decide_revert`).
- :func:`write_restores`: their deletes and restores, in the same transaction, again inside the
  database (``jsonb_populate_record`` of the before-image).
- :func:`revert_keys` (the gateway: a revert job's records) and :func:`purge_expired`.

A redelivered revert batch changes nothing: its records are in the ledger (written in the same
transaction), so they are re-emitted and never decided again.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Collection, Mapping, Sequence
from typing import Any, cast

import psycopg
from psycopg import sql

from domain.compact_json import compact_json
from domain.jobs import RecordStatus
from domain.outcomes import BEFORE_ALL, Outcome, PendingRecord, StoredRow, Writes
from domain.revert import BeforeImage, Restore, decide_revert
from storage.connection import Connection, driver
from storage.entity_rows import EntityTableMap

RowKey = tuple[str, str, str]


def images_in_python(writes: Writes) -> list[tuple[str, RowKey, str, StoredRow]]:
    """The before-images the database cannot take from the row itself while updating it: of a
    row several jobs of the batch write (the later one's image is the earlier one's value), or
    one created in the batch and updated by another job. Rare; the rest are captured by
    :func:`capture_before_images`, without a byte leaving the server."""
    writers = Counter(row_key for _, row_key in writes.before)
    return [
        (job_id, row_key, record_id, prior)
        for (job_id, row_key), (record_id, prior) in writes.before.items()
        if writers[row_key] > 1 or row_key not in writes.updates
    ]


async def capture_before_images(
    conn: psycopg.AsyncConnection[Any],
    table: EntityTableMap,
    staging: str,
    written_in_python: Collection[str],
) -> None:
    """Before the batch's UPDATE: each row about to be updated from ``staging``, as it stands,
    becomes the before-image of the job updating it (the only one, but for the row ids in
    ``written_in_python``); the first write of a job to a key keeps its image."""
    await conn.execute(
        sql.SQL(
            "INSERT INTO before_images (job_id, key, tenant_id, entity, record_id, before, "
            "last_job_id, last_seq, last_index) SELECT s.last_job_id, t.{key}, t.tenant_id, "
            "%s, t.id, to_jsonb(t), t.last_job_id, t.last_seq, t.last_index FROM {table} t "
            "JOIN {staging} s ON t.id = s.id WHERE t.id <> ALL(%s::uuid[]) "
            "ON CONFLICT (job_id, key) DO NOTHING"
        ).format(
            key=sql.Identifier(table.key_column),
            table=sql.Identifier(table.table),
            staging=sql.Identifier(staging),
        ),
        [table.entity, list(written_in_python)],
    )


async def write_before_images(
    conn: psycopg.AsyncConnection[Any],
    tables: Mapping[str, EntityTableMap],
    images: Sequence[tuple[str, RowKey, str, StoredRow]],
) -> None:
    """The before-images :func:`images_in_python` found, each as the row's columns in JSON (the
    shape ``to_jsonb`` gives a row, which a restore reads back)."""
    if not images:
        return
    rows = []
    for job_id, (tenant_id, entity, key), record_id, prior in images:
        table = tables[entity]
        before = {c: prior.values.get(f) for f, c in zip(table.fields, table.columns, strict=True)}
        seq, index = prior.last
        json_before = compact_json(before, default=str)
        rows.append(
            [job_id, key, tenant_id, entity, record_id, json_before, prior.last_job_id, seq, index]
        )
    await conn.execute(
        "INSERT INTO before_images (job_id, key, tenant_id, entity, record_id, before, "
        "last_job_id, last_seq, last_index) SELECT * FROM unnest(%s::uuid[], %s::text[], "
        "%s::uuid[], %s::text[], %s::uuid[], %s::jsonb[], %s::uuid[], %s::bigint[], "
        "%s::bigint[]) ON CONFLICT (job_id, key) DO NOTHING",
        [list(column) for column in zip(*rows, strict=True)],
    )


async def decide_reverts(
    conn: psycopg.AsyncConnection[Any],
    records: Sequence[PendingRecord],
    stored: Mapping[RowKey, StoredRow],
    writes: Writes,
    reverting: Mapping[str, str],
) -> tuple[list[Outcome], list[tuple[str, Restore]]]:
    """Outcomes of revert records (``reverting``: revert job → reverted job) and their changes.

    A row another record of this batch writes is changed since, whatever the order: the revert
    never overwrites a write it has not seen.
    """
    by_job: dict[str, list[PendingRecord]] = defaultdict(list)
    for record in records:
        by_job[record.job_id].append(record)
    outcomes: list[Outcome] = []
    restores: list[tuple[str, Restore]] = []
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
                restores.append((reverted, restore))
    return outcomes, restores


async def _images(
    conn: psycopg.AsyncConnection[Any], job_id: str, keys: Sequence[str]
) -> tuple[int, dict[str, BeforeImage]]:
    """The reverted job's acceptance sequence and its before-images of these keys: the rows it
    updated from ``before_images``, the rows it created (an empty image) from its ``CREATED``
    outcomes in the ledger — those win, a later write of the job to a row it created left an
    image of its own values."""
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
    cursor = await conn.execute(
        "SELECT key, record_id::text FROM record_outcomes WHERE job_id = %s AND key = ANY(%s) "
        "AND status = %s",
        [job_id, list(keys), RecordStatus.CREATED.value],
    )
    for key, record_id in await cursor.fetchall():
        images[key] = BeforeImage(record_id, None, None, BEFORE_ALL)
    return seq, images


def _json(value: Any) -> Mapping[str, Any] | None:
    parsed = json.loads(value) if isinstance(value, str) else value
    return cast(Mapping[str, Any] | None, parsed)


async def write_restores(
    conn: psycopg.AsyncConnection[Any],
    tables: Mapping[str, EntityTableMap],
    restores: Sequence[tuple[str, Restore]],
) -> None:
    """Delete the rows the reverted jobs created; put back the ones they updated, from their
    before-images (``jsonb_populate_record`` reads the row's columns back), with the previous
    last write. ``restores``: (reverted job, change)."""
    deletes: dict[str, list[str]] = defaultdict(list)
    puts: dict[tuple[str, str], list[str]] = defaultdict(list)
    for reverted, restore in restores:
        if restore.deletes:
            deletes[restore.record.entity].append(restore.image.record_id)
        else:
            puts[(restore.record.entity, reverted)].append(restore.record.key or "")
    for entity, ids in deletes.items():
        await conn.execute(
            sql.SQL("DELETE FROM {} WHERE id = ANY(%s::uuid[])").format(
                sql.Identifier(tables[entity].table)
            ),
            [ids],
        )
    for (entity, reverted), keys in puts.items():
        table = tables[entity]
        columns = (*table.columns, "last_job_id", "last_seq", "last_index")
        await conn.execute(
            sql.SQL(
                "UPDATE {table} AS t SET ({columns}) = ({values}), updated_at = now() "
                "FROM before_images b, jsonb_populate_record(NULL::{table}, b.before) AS r "
                "WHERE b.job_id = %s AND b.key = ANY(%s) AND t.id = b.record_id"
            ).format(
                table=sql.Identifier(table.table),
                columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
                values=sql.SQL(", ").join(
                    [
                        *(sql.SQL("r.{}").format(sql.Identifier(c)) for c in table.columns),
                        sql.SQL("b.last_job_id, b.last_seq, b.last_index"),
                    ]
                ),
            ),
            [reverted, keys],
        )


# --- the gateway --------------------------------------------------------------------------


async def revert_keys(conn: Connection, job_id: str, limit: int) -> list[str]:
    """The keys of the rows a job wrote — it created (``CREATED`` in the ledger) or updated (a
    before-image) — in a stable order: the revert job's records, index = position; at most
    ``limit``."""
    pg = await driver(conn)
    cursor = await pg.execute(
        "SELECT key FROM record_outcomes WHERE job_id = %(job)s AND status = %(created)s "
        "UNION SELECT key FROM before_images WHERE job_id = %(job)s ORDER BY key LIMIT %(limit)s",
        {"job": job_id, "created": RecordStatus.CREATED.value, "limit": limit},
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
