"""Dry runs (``"dry_run": true``, design.md §8) in the persist transaction: decided like any
record, against the current rows, but nothing is written to the entity tables.

A dry-run job's records are decided apart from every other job's, against the entity rows as
they are plus what the job itself would have written so far: the successes of its earlier
batches, read back from the ledger (a dry run's successful outcomes keep the record's values
there, in ``record``, for exactly this). So a key repeated inside the job is a ``DuplicateKey``
on insert and an update of the value before it on upsert or update, as in the real run; the
job's batch-internal repeats are decided by :func:`domain.outcomes.decide_batch` as always.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import psycopg

from domain.jobs import RecordStatus
from domain.outcomes import Outcome, PendingRecord, StoredRow, decide_batch

RowKey = tuple[str, str, str]


async def decide_dry_runs(
    conn: psycopg.AsyncConnection[Any],
    records: Sequence[PendingRecord],
    stored: Mapping[RowKey, StoredRow],
    key_fields: Mapping[str, str],
    sequences: Mapping[str, int],
) -> list[Outcome]:
    """The outcomes of dry-run records (all of dry-run jobs); they write nothing."""
    outcomes: list[Outcome] = []
    by_job: dict[str, list[PendingRecord]] = {}
    for record in records:
        by_job.setdefault(record.job_id, []).append(record)
    for job_id, job_records in by_job.items():
        simulated = {**stored, **await _written_so_far(conn, job_id, job_records, sequences)}
        decided, _ = decide_batch(job_records, simulated, key_fields, sequences)
        values = {r.index: r.record for r in job_records}
        outcomes.extend(_with_values(o, values) for o in decided)
    return outcomes


def _with_values(outcome: Outcome, values: Mapping[int, Any]) -> Outcome:
    """A successful dry-run outcome keeps the record's values (what a later batch compares)."""
    if outcome.status in (RecordStatus.CREATED, RecordStatus.UPDATED, RecordStatus.UNCHANGED):
        return outcome._replace(submitted=values.get(outcome.index))
    return outcome


async def _written_so_far(
    conn: psycopg.AsyncConnection[Any],
    job_id: str,
    records: Collection[PendingRecord],
    sequences: Mapping[str, int],
) -> dict[RowKey, StoredRow]:
    """The rows the dry-run job's earlier batches would have written, for these records' keys."""
    keys = sorted({r.key for r in records if r.key is not None and r.failure is None})
    if not keys:
        return {}
    sample = next(iter(records))
    cursor = await conn.execute(
        "SELECT key, record_id::text, index, record FROM record_outcomes "
        "WHERE job_id = %s AND key = ANY(%s) AND status = ANY(%s) AND record IS NOT NULL "
        "ORDER BY index",
        [
            job_id,
            keys,
            [RecordStatus.CREATED.value, RecordStatus.UPDATED.value, RecordStatus.UNCHANGED.value],
        ],
    )
    rows: dict[RowKey, StoredRow] = {}
    for key, record_id, index, record in await cursor.fetchall():
        values = json.loads(record) if isinstance(record, str) else record
        order = (sequences[job_id], int(index))
        rows[(sample.tenant_id, sample.entity, key)] = StoredRow(record_id, values, order)
    return rows
