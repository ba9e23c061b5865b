"""Chunks on bulk.requests are untrusted: envelope, bookkeeping and job-row checks (pure)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from domain.chunks import (
    ChunkRange,
    InvalidChunk,
    JobIdentity,
    bookkeeping_problem,
    is_redelivery,
    job_mismatch,
    parse_chunk,
)
from domain.entities import EntityRegistry, default_schemas_dir

REGISTRY = EntityRegistry.load(default_schemas_dir())
JOB = str(uuid.uuid4())
TENANT = str(uuid.uuid4())


def chunk(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "job_id": JOB,
        "tenant_id": TENANT,
        "entity": "customers",
        "operation": "insert",
        "source": "kafka",
        "webhook_url": None,
        "chunk_index": 0,
        "chunk_count": 2,
        "total": 4,
        "first_index": 0,
        "records": [{"externalId": "a"}, {"externalId": "b"}],
    }
    body.update(changes)
    return body


def refusal(**changes: Any) -> InvalidChunk:
    with pytest.raises(InvalidChunk) as caught:
        parse_chunk(chunk(**changes), REGISTRY, max_job_records=1000)
    return caught.value


def test_a_well_formed_chunk_parses_with_ids_in_canonical_form() -> None:
    parsed = parse_chunk(chunk(job_id=JOB.upper()), REGISTRY, 1000)
    assert parsed.job_id == JOB and parsed.end_index == 2
    assert parsed.range == ChunkRange(0, 2, 0, 2)


@pytest.mark.parametrize(
    ("changes", "detail"),
    [
        ({"job_id": "not-a-uuid"}, "job_id must be a UUID"),
        ({"tenant_id": ""}, "tenant_id must be a UUID"),
        ({"tenant_id": "x" * 500}, "tenant_id must be a UUID"),
        ({"entity": "spaceships"}, "entity 'spaceships' is not one of customers, products"),
        ({"webhook_url": "ftp://x"}, "scheme must be http or https"),
        ({"total": 0}, "total must be between 1 and 1000"),
        ({"total": 10**12}, "total must be between 1 and 1000"),
    ],
    ids=["job-id", "empty-tenant", "long-tenant", "entity", "webhook", "zero-total", "huge-total"],
)
def test_a_bad_envelope_is_refused_without_naming_a_job(changes: dict, detail: str) -> None:
    invalid = refusal(**changes)
    assert invalid.reason == "invalid-chunk" and detail in invalid.detail
    assert invalid.chunk is None  # such a chunk cannot end any job


@pytest.mark.parametrize(
    ("changes", "detail"),
    [
        ({"chunk_index": 2}, "chunk_index 2 is not below chunk_count 2"),
        ({"chunk_index": -1}, "chunk_index -1 is not below chunk_count 2"),
        ({"chunk_count": 0}, "chunk_count must be between 1 and total"),
        ({"chunk_count": 5}, "chunk_count must be between 1 and total (4), got 5"),
        ({"records": []}, "the chunk has no records"),
        ({"first_index": -3}, "first_index must not be negative"),
        ({"first_index": 3}, "records 3..4 do not fit a job of 4 records"),
        ({"total": 1, "chunk_count": 1}, "records 0..1 do not fit a job of 1 records"),
    ],
    ids=[
        "index-past-count",
        "negative-index",
        "no-chunks",
        "more-chunks-than-records",
        "empty",
        "negative-first",
        "past-total",
        "smaller-total",
    ],
)
def test_bad_bookkeeping_is_refused_but_still_names_its_job(changes: dict, detail: str) -> None:
    invalid = refusal(**changes)
    assert invalid.reason == "invalid-chunk-bookkeeping" and detail in invalid.detail
    assert invalid.chunk is not None and invalid.chunk.job_id == JOB


def test_the_job_row_must_agree_with_the_chunk() -> None:
    parsed = parse_chunk(chunk(), REGISTRY, 1000)
    same = JobIdentity(TENANT, "customers", "insert", 4, "kafka")
    assert job_mismatch(parsed, same) is None
    assert job_mismatch(parsed, JobIdentity(TENANT, "customers", "insert", 4, "api")) is None
    for other, named in [
        (JobIdentity(str(uuid.uuid4()), "customers", "insert", 4, "api"), "tenant_id"),
        (JobIdentity(TENANT, "products", "insert", 4, "api"), "entity"),
        (JobIdentity(TENANT, "customers", "upsert", 4, "api"), "operation"),
        (JobIdentity(TENANT, "customers", "insert", 5, "api"), "total"),
    ]:
        assert f"another {named}" in str(job_mismatch(parsed, other))
    assert "file import" in str(
        job_mismatch(parsed, JobIdentity(TENANT, "customers", "insert", 4, "file"))
    )


def test_chunks_of_one_job_must_not_contradict_each_other() -> None:
    first = ChunkRange(0, 2, 0, 2)
    second = parse_chunk(chunk(chunk_index=1, first_index=2), REGISTRY, 1000)
    assert bookkeeping_problem(second, [first]) is None and not is_redelivery(second, [first])
    again = parse_chunk(chunk(), REGISTRY, 1000)
    assert bookkeeping_problem(again, [first]) is None and is_redelivery(again, [first])
    overlapping = parse_chunk(chunk(chunk_index=1, first_index=1), REGISTRY, 1000)
    assert "overlaps chunk 0 (records 0..1)" in str(bookkeeping_problem(overlapping, [first]))
    moved = parse_chunk(chunk(first_index=1), REGISTRY, 1000)
    assert "was received before as chunk 0 (records 0..1)" in str(
        bookkeeping_problem(moved, [first])
    )
    recounted = parse_chunk(chunk(chunk_index=1, chunk_count=3, first_index=2), REGISTRY, 1000)
    assert "chunk_count 3 differs" in str(bookkeeping_problem(recounted, [first]))
