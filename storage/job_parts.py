"""The per-part rows of the persist stage (``job_parts``): which parts were seen before, and the
counts each part's new outcomes add (what the aggregator sums); both inside the persist
transaction (:mod:`storage.persist`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeVar

import psycopg

from domain.outcomes import Outcome, PendingRecord, part_counts
from storage.ledger import FILL_PREFIX


class Part(Protocol):
    @property
    def job_id(self) -> str: ...
    @property
    def part_id(self) -> str: ...
    @property
    def records(self) -> Sequence[PendingRecord]: ...


P = TypeVar("P", bound=Part)


async def parts_needing_lookup(conn: psycopg.AsyncConnection[Any], parts: Sequence[P]) -> list[P]:
    """Parts whose records may already be in the ledger.

    Those with a ``job_parts`` row of their own (ledger rows and part rows are written in the
    same transaction), and every part of a job the service filled (``!`` parts: their outcomes
    were written for records that may still arrive). A part without either was never decided,
    and the (costly) ledger lookup is skipped for it: a redelivery pays for the lookup, the
    first delivery does not.
    """
    if not parts:
        return []
    cursor = await conn.execute(
        "SELECT p.job_id::text, p.part_id FROM job_parts p "
        "JOIN unnest(%s::uuid[], %s::text[]) AS wanted(job_id, part_id) "
        "ON p.job_id = wanted.job_id AND p.part_id = wanted.part_id "
        "UNION ALL SELECT DISTINCT job_id::text, %s FROM job_parts "
        "WHERE job_id = ANY(%s::uuid[]) AND starts_with(part_id, %s)",
        [
            [part.job_id for part in parts],
            [part.part_id for part in parts],
            FILL_PREFIX,
            sorted({part.job_id for part in parts}),
            FILL_PREFIX,
        ],
    )
    rows = await cursor.fetchall()
    seen = {(job_id, part_id) for job_id, part_id in rows}
    filled = {job_id for job_id, part_id in rows if part_id == FILL_PREFIX}
    return [p for p in parts if (p.job_id, p.part_id) in seen or p.job_id in filled]


async def write_parts(
    conn: psycopg.AsyncConnection[Any],
    parts: Sequence[P],
    decided: Mapping[tuple[str, int], Outcome],
) -> None:
    rows = []
    counted: set[tuple[str, int]] = set()  # a record two parts both carry counts once
    for part in parts:
        fresh = []
        for r in part.records:
            key = (r.job_id, r.index)
            if key in decided and key not in counted:
                counted.add(key)
                fresh.append(decided[key])
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
