"""Which ``bulk.requests`` partition carries each chunk of a job."""

from __future__ import annotations

import uuid
import zlib

from domain.routing import chunk_partition


def test_a_jobs_chunks_take_every_partition_in_turn_from_its_hash() -> None:
    job_id = str(uuid.uuid4())
    start = zlib.crc32(job_id.encode()) % 4
    assert [chunk_partition(job_id, i, 4) for i in range(6)] == [(start + i) % 4 for i in range(6)]


def test_a_one_chunk_job_stays_where_its_id_hashes() -> None:
    for _ in range(20):
        job_id = str(uuid.uuid4())
        assert chunk_partition(job_id, 0, 4) == zlib.crc32(job_id.encode()) % 4


def test_the_partition_is_stable_across_processes() -> None:
    """Not ``hash()``: a retried submit of the same job must land where the first did."""
    assert (
        chunk_partition("00000000-0000-0000-0000-000000000000", 3, 4)
        == (zlib.crc32(b"00000000-0000-0000-0000-000000000000") + 3) % 4
    )
