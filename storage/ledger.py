"""The outcome ledger (``record_outcomes``, primary key ``(job_id, index)``): read, written, filled.

Every record's outcome is written here once, in the transaction that decides it, and read back
to re-emit it unchanged. *Filling* is how the service itself gives an outcome to records it will
never process — a dead-lettered chunk's (``RecordNotProcessed``), a job's records that never
arrived (``RecordNotReceived``): rows are inserted only where the ledger has none, so a record
that was decided stays decided, and the count of inserted rows goes into a *fill part* of
``job_parts`` (part id ``!<code>...``) marked ``pending_events`` until its outcome events are out.
A persist batch for a job with a fill part always reads the ledger first (``!`` parts are
"seen"), so a late record finds its outcome there and changes nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from domain.compact_json import compact_json
from domain.jobs import RecordStatus
from domain.outcomes import Outcome, PendingRecord
from domain.text import json_storable
from storage.connection import Connection, driver

FILL_PREFIX = "!"
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
_OUTCOME_COLUMNS = (
    "r.index, r.key, r.status, r.record_id::text, r.error_code, r.error_message, r.error_field, "
    "r.line, r.source"
)


def fill_part_id(code: str, qualifier: str = "") -> str:
    """The job_parts id of a fill: ``!RecordNotReceived``, ``!RecordNotProcessed:<where>``."""
    return f"{FILL_PREFIX}{code}" + (f":{qualifier}" if qualifier else "")


def code_of_fill_part(part_id: str) -> str:
    return part_id[len(FILL_PREFIX) :].split(":", 1)[0]


def _outcome(row: Sequence[Any], job_id: str, tenant_id: str, entity: str) -> Outcome:
    index, key, status, record_id, code, message, field, line, columns = row
    return Outcome(
        job_id=job_id,
        tenant_id=tenant_id,
        entity=entity,
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


async def ledger_outcomes(
    conn: psycopg.AsyncConnection[Any], records: Sequence[PendingRecord]
) -> dict[tuple[str, int], Outcome]:
    """The stored outcomes of these records, for those that have one."""
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
            f"SELECT {_OUTCOME_COLUMNS} FROM unnest(%s::bigint[]) AS wanted(index) "
            "JOIN record_outcomes r ON r.job_id = %s AND r.index = wanted.index",
            [indexes, job_id],
        )
        for row in await cursor.fetchall():
            pending = meta[(job_id, row[0])]
            done[(job_id, row[0])] = _outcome(row, job_id, pending.tenant_id, pending.entity)
    return done


async def write_ledger(conn: psycopg.AsyncConnection[Any], outcomes: Sequence[Outcome]) -> None:
    if not outcomes:
        return
    statement = sql.SQL("COPY record_outcomes ({}) FROM STDIN").format(
        sql.SQL(", ").join(map(sql.Identifier, LEDGER_COLUMNS))
    )
    async with conn.cursor().copy(statement) as copy:
        for o in outcomes:
            await copy.write_row(ledger_row(o))


def ledger_row(o: Outcome) -> list[Any]:
    """The ``LEDGER_COLUMNS`` values of one outcome."""
    return [
        o.job_id,
        o.index,
        o.key,
        o.status.value,
        o.record_id,
        o.error_code,
        o.error_field,
        o.error_message,
        o.line,
        json_or_none(o.submitted),
        # [column, value] pairs: a JSONB object would not keep the file's column order.
        json_or_none(list(o.source.items()) if o.source else None),
    ]


def json_or_none(value: Any) -> str | None:
    if not value:
        return None
    return compact_json(value, default=str)


@dataclass(frozen=True)
class FillMessage:
    """Each filled row's message is ``"<label> at index <i> <text>"``."""

    label: str
    text: str


@dataclass(frozen=True)
class UnprocessedRecord:
    """A record the service gives up on: its index, and its key and record where known."""

    index: int
    key: str | None = None
    record: Mapping[str, Any] | None = None


async def fill(
    conn: psycopg.AsyncConnection[Any],
    job_id: str,
    records: Sequence[UnprocessedRecord],
    code: str,
    failure: FillMessage,
    part_id: str,
    *,
    chunk_index: int | None = None,
) -> int:
    """Fail ``records`` with ``code`` where the ledger has no outcome yet; the number failed.

    With ``chunk_index`` (the records came in that request chunk), records whose index another
    chunk the job admitted covers are left alone: those are on their way to the persist stage.
    Run it in the caller's transaction, holding the job row's lock.
    """
    others = (
        "AND NOT EXISTS (SELECT 1 FROM job_chunks c WHERE c.job_id = %(job_id)s "
        "AND c.chunk_index <> %(chunk_index)s AND w.index >= c.first_index "
        "AND w.index < c.first_index + c.record_count) "
        if chunk_index is not None
        else ""
    )
    cursor = await conn.execute(
        "INSERT INTO record_outcomes (job_id, index, key, status, error_code, error_message, "
        "record) SELECT %(job_id)s, w.index, w.key, 'FAILED', %(code)s, "
        "format('%%s at index %%s %%s', %(label)s::text, w.index, %(text)s::text), "
        "w.record::jsonb FROM unnest(%(indexes)s::bigint[], %(keys)s::text[], "
        "%(records)s::text[]) AS w(index, key, record) WHERE true "
        f"{others}ON CONFLICT (job_id, index) DO NOTHING",
        {
            "job_id": job_id,
            "code": code,
            "label": failure.label,
            "text": failure.text,
            "indexes": [r.index for r in records],
            "keys": [r.key for r in records],
            "records": [json_or_none(r.record) for r in records],
            "chunk_index": chunk_index,
        },
    )
    return await _add_fill_part(conn, job_id, part_id, cursor.rowcount)


async def fill_all_missing(
    conn: psycopg.AsyncConnection[Any],
    job_id: str,
    total: int,
    code: str,
    failure: FillMessage,
    *,
    status: RecordStatus = RecordStatus.FAILED,
) -> int:
    """Give every index in ``[0, total)`` the ledger has no outcome for the outcome ``status``
    (FAILED, or SKIPPED for a cancel) with ``code``; the number filled."""
    cursor = await conn.execute(
        "INSERT INTO record_outcomes (job_id, index, status, error_code, error_message) "
        "SELECT %s, i, %s, %s, format('%%s at index %%s %%s', %s::text, i, %s::text) "
        "FROM generate_series(0, %s::bigint - 1) AS i "
        "WHERE NOT EXISTS (SELECT 1 FROM record_outcomes r WHERE r.job_id = %s AND r.index = i) "
        "ON CONFLICT (job_id, index) DO NOTHING",
        [job_id, status.value, code, failure.label, failure.text, total, job_id],
    )
    part_id = fill_part_id(code)
    return await _add_fill_part(conn, job_id, part_id, cursor.rowcount, status=status)


async def _add_fill_part(
    conn: psycopg.AsyncConnection[Any],
    job_id: str,
    part_id: str,
    count: int,
    *,
    status: RecordStatus = RecordStatus.FAILED,
) -> int:
    if count > 0:
        column = "skipped" if status is RecordStatus.SKIPPED else "failed"
        other = "failed" if column == "skipped" else "skipped"
        await conn.execute(
            f"INSERT INTO job_parts (job_id, part_id, successful, {column}, {other}, "
            "pending_events) VALUES (%s, %s, 0, %s, 0, true) ON CONFLICT (job_id, part_id) DO "
            f"UPDATE SET {column} = job_parts.{column} + EXCLUDED.{column}, pending_events = true",
            [job_id, part_id, count],
        )
    return count


async def filled_outcomes(
    conn: psycopg.AsyncConnection[Any],
    job_id: str,
    tenant_id: str,
    entity: str,
    code: str,
    page: int = 5000,
) -> AsyncIterator[list[Outcome]]:
    """Every outcome of the job with this error code, in pages, in index order."""
    after = -1
    while True:
        cursor = await conn.execute(
            f"SELECT {_OUTCOME_COLUMNS} FROM record_outcomes r WHERE r.job_id = %s "
            "AND r.error_code = %s AND r.index > %s ORDER BY r.index LIMIT %s",
            [job_id, code, after, page],
        )
        rows = await cursor.fetchall()
        if not rows:
            return
        yield [_outcome(row, job_id, tenant_id, entity) for row in rows]
        after = rows[-1][0]


async def pending_fill_parts(
    conn: psycopg.AsyncConnection[Any], limit: int = 50
) -> list[tuple[str, str]]:
    """(job_id, part_id) of fill parts whose events are not yet announced."""
    cursor = await conn.execute(
        "SELECT job_id::text, part_id FROM job_parts WHERE pending_events LIMIT %s", [limit]
    )
    return [(job_id, part_id) for job_id, part_id in await cursor.fetchall()]


async def mark_announced(conn: psycopg.AsyncConnection[Any], job_id: str, part_id: str) -> None:
    await conn.execute(
        "UPDATE job_parts SET pending_events = false WHERE job_id = %s AND part_id = %s",
        [job_id, part_id],
    )


# --- what the API shows of the ledger ---------------------------------------------------------

MAX_LISTED_ERRORS = 100


async def first_failures(
    conn: Connection, job_id: str, limit: int = MAX_LISTED_ERRORS
) -> list[dict[str, Any]]:
    """The job's first failed records, in index order (the job object's ``errors``)."""
    pg = await driver(conn)
    async with pg.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(
            "SELECT index, key, error_code, error_field, error_message, line "
            "FROM record_outcomes WHERE job_id = %s AND status = 'FAILED' "
            "ORDER BY index LIMIT %s",
            [job_id, limit],
        )
        return await cursor.fetchall()


async def all_outcomes(conn: Connection, job_id: str) -> list[dict[str, Any]]:
    """Every outcome of the job, in index order (the sync endpoint's ``results``)."""
    pg = await driver(conn)
    async with pg.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(
            "SELECT index, key, status, record_id::text AS record_id, error_code, error_field, "
            "error_message, line FROM record_outcomes WHERE job_id = %s ORDER BY index",
            [job_id],
        )
        return await cursor.fetchall()


async def error_code_counts(conn: Connection, job_id: str) -> list[tuple[str, int]]:
    """How many of the job's records failed or were skipped with each code, most first."""
    pg = await driver(conn)
    cursor = await pg.execute(
        "SELECT error_code, count(*) FROM record_outcomes WHERE job_id = %s "
        "AND error_code IS NOT NULL GROUP BY error_code ORDER BY count(*) DESC, error_code",
        [job_id],
    )
    return [(str(code), int(count)) for code, count in await cursor.fetchall()]


async def retry_candidates(
    conn: Connection, job_id: str, codes: Sequence[str] | None, limit: int
) -> list[dict[str, Any]]:
    """The job's failed and skipped records (only those with ``codes``, if given) whose record
    was kept, in index order, at most ``limit``: what a retry of the job sends again."""
    pg = await driver(conn)
    async with pg.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(
            "SELECT index, error_code, record FROM record_outcomes WHERE job_id = %(job)s "
            "AND status IN ('FAILED', 'SKIPPED') AND record IS NOT NULL "
            "AND (%(codes)s::text[] IS NULL OR error_code = ANY(%(codes)s::text[])) "
            "ORDER BY index LIMIT %(limit)s",
            {"job": job_id, "codes": None if codes is None else list(codes), "limit": limit},
        )
        return await cursor.fetchall()


async def keep_late_records(
    conn: psycopg.AsyncConnection[Any], records: Sequence[PendingRecord]
) -> int:
    """Records that reached the persist stage after their job ended (a cancel, the error-rate
    breaker): where the ledger has them ``SKIPPED`` without values, keep the values, so
    ``POST /jobs/{id}/retry`` can send them again. Outcomes, counts and the job stay as they
    are; the number of rows given their values."""
    late = [r for r in records if r.record is not None and r.failure is None]
    if not late:
        return 0
    cursor = await conn.execute(
        # Only what no event carries: the key and line stay as announced (a re-emitted event
        # must be byte-identical to the first).
        "UPDATE record_outcomes AS o SET record = w.record::jsonb, "
        "source = coalesce(o.source, w.source::jsonb) "
        "FROM unnest(%s::uuid[], %s::bigint[], %s::text[], %s::text[]) "
        "AS w(job_id, index, record, source) "
        "WHERE o.job_id = w.job_id AND o.index = w.index AND o.status = %s AND o.record IS NULL",
        [
            [r.job_id for r in late],
            [r.index for r in late],
            [json_or_none(json_storable(r.record)) for r in late],
            [json_or_none(r.source) for r in late],
            RecordStatus.SKIPPED.value,
        ],
    )
    return cursor.rowcount
