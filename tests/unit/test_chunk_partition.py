"""Which ``bulk.requests`` partition carries each chunk of a job, and which jobs may be spread."""

from __future__ import annotations

import uuid
import zlib

from domain.job_options import FieldDefault
from domain.routing import chunk_partition, keys_all_distinct, usable_key


def test_a_spread_jobs_chunks_take_every_partition_in_turn_from_its_hash() -> None:
    job_id = str(uuid.uuid4())
    start = zlib.crc32(job_id.encode()) % 4
    assert [chunk_partition(job_id, i, 4) for i in range(6)] == [(start + i) % 4 for i in range(6)]


def test_the_first_chunk_sits_where_the_job_id_hashes() -> None:
    for _ in range(20):
        job_id = str(uuid.uuid4())
        assert chunk_partition(job_id, 0, 4) == zlib.crc32(job_id.encode()) % 4


def test_the_partition_is_stable_across_processes() -> None:
    """Not ``hash()``: a retried submit of the same job must land where the first did."""
    assert (
        chunk_partition("00000000-0000-0000-0000-000000000000", 3, 4)
        == (zlib.crc32(b"00000000-0000-0000-0000-000000000000") + 3) % 4
    )


def test_distinct_keys_may_be_spread() -> None:
    records = [{"externalId": f"c-{i}"} for i in range(3_000)]
    assert keys_all_distinct("externalId", records, ())


def test_one_repeated_key_anywhere_keeps_the_job_on_one_partition() -> None:
    records = [{"externalId": f"c-{i}"} for i in range(3_000)]
    records.append({"externalId": "c-0"})
    assert not keys_all_distinct("externalId", records, ())


def test_records_without_a_usable_key_never_collide() -> None:
    """They are routed by index: absent, null, empty, not a string, or not an object."""
    records: list[object] = [{}, {}, {"externalId": None}, {"externalId": ""}, {"externalId": 7}]
    records += [{"externalId": 7}, "not an object", ["nor", "this"], {"externalId": "c-1"}]
    assert keys_all_distinct("externalId", records, ())


def test_a_default_for_the_key_counts_as_the_key() -> None:
    """The validate stage applies defaults before it takes the key: two keyless records given
    the same default key are the same key."""
    records = [{"name": "a"}, {"name": "b"}]
    default = FieldDefault("externalId", ("externalId",), "same")
    assert keys_all_distinct("externalId", records, ())
    assert not keys_all_distinct("externalId", records, (default,))


def test_keys_that_differ_only_in_unstorable_code_points_are_the_same_key() -> None:
    """Routing stores ``storable(key)``: a NUL and a lone surrogate both become U+FFFD."""
    assert usable_key("a\x00") == usable_key("a\ud800")
    assert not keys_all_distinct(
        "externalId", [{"externalId": "a\x00"}, {"externalId": "a\ud800"}], ()
    )
