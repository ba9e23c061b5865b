"""Seeding offsets on a fresh broker: NOT_COORDINATOR while ``__consumer_offsets`` is being
created is waited out (a CI run failed every test at set-up on it); other errors are not."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from bulk_ingest import kafka


class ConsumerAnswering:
    """Raises the given errors from ``committed``, one per call, then answers."""

    def __init__(self, *errors: int) -> None:
        self.errors = list(errors)
        self.calls = 0

    def committed(self, partitions, timeout):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.errors:
            raise KafkaException(KafkaError(self.errors.pop(0)))
        return ["offsets"]


def test_a_coordinator_not_ready_yet_is_asked_again(monkeypatch):
    monkeypatch.setattr(kafka.time, "sleep", lambda _: None)
    consumer = ConsumerAnswering(
        KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS
    )
    assert kafka._committed_once_the_coordinator_is_up(consumer, []) == ["offsets"]
    assert consumer.calls == 3


def test_another_error_is_raised_at_once(monkeypatch):
    monkeypatch.setattr(kafka.time, "sleep", lambda _: None)
    consumer = ConsumerAnswering(KafkaError.TOPIC_AUTHORIZATION_FAILED)
    with pytest.raises(KafkaException):
        kafka._committed_once_the_coordinator_is_up(consumer, [])
    assert consumer.calls == 1
