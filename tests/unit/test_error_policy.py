"""The error policy: three kinds of failure, the runner's retries, splits and dead letters.

The runner is exercised here with in-memory stand-ins for its stage, failure log and dead-letter
queue (plain objects recording calls); against the real broker and database it is exercised by
tests/e2e/test_hostile_input.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import psycopg
import pytest
import sqlalchemy.exc
from psycopg import errors as pg_errors

from bulk_ingest.dead_letters import Delivery
from bulk_ingest.failures import FailureKind, classify
from bulk_ingest.kafka import KafkaRefused, KafkaUnavailable
from bulk_ingest.stage_runner import RetryPolicy, StageRunner, Stopped
from domain.isolation import failing_items
from domain.routing import encode_parts


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (psycopg.OperationalError("connection refused"), FailureKind.TRANSIENT),
        (pg_errors.AdminShutdown("terminating connection"), FailureKind.TRANSIENT),
        (pg_errors.DeadlockDetected("deadlock"), FailureKind.TRANSIENT),
        (pg_errors.SerializationFailure("serialization"), FailureKind.TRANSIENT),
        (KafkaUnavailable("broker down"), FailureKind.TRANSIENT),
        (ConnectionResetError(), FailureKind.TRANSIENT),
        (TimeoutError(), FailureKind.TRANSIENT),
        (pg_errors.CharacterNotInRepertoire("0x00"), FailureKind.DATA),
        (pg_errors.UntranslatableCharacter("\\u0000"), FailureKind.DATA),
        (pg_errors.NumericValueOutOfRange("out of range"), FailureKind.DATA),
        (pg_errors.ProgramLimitExceeded("jsonb too large"), FailureKind.DATA),
        (pg_errors.NotNullViolation("null"), FailureKind.DATA),
        (UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"), FailureKind.DATA),
        (OverflowError("int too large"), FailureKind.DATA),
        (pg_errors.UniqueViolation("duplicate key"), FailureKind.BUG),
        (KafkaRefused("message too large"), FailureKind.BUG),
        (FileNotFoundError("gone"), FailureKind.BUG),
        (KeyError("entity"), FailureKind.BUG),
        (RuntimeError("a bug"), FailureKind.BUG),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
def test_every_failure_is_one_of_three_kinds(error: BaseException, kind: FailureKind) -> None:
    assert classify(error) is kind


def test_sqlalchemy_errors_are_judged_by_the_driver_error_they_wrap() -> None:
    down = sqlalchemy.exc.OperationalError("SELECT 1", {}, psycopg.OperationalError("refused"))
    bad = sqlalchemy.exc.DataError("SELECT 1", {}, pg_errors.InvalidTextRepresentation("uuid"))
    assert classify(down) is FailureKind.TRANSIENT
    assert classify(bad) is FailureKind.DATA
    assert classify(sqlalchemy.exc.TimeoutError("pool")) is FailureKind.TRANSIENT


# --- isolation ------------------------------------------------------------------------------------


def test_splitting_finds_exactly_the_failing_items_with_few_probes() -> None:
    items = list(range(1000))
    bad = {17, 640}
    probes = 0

    async def passes(chunk: Sequence[int]) -> bool:
        nonlocal probes
        probes += 1
        return not bad.intersection(chunk)

    assert asyncio.run(failing_items(items, passes)) == [17, 640]
    assert probes <= 2 * len(bad) * 11  # 2k·log2(n)


def test_nothing_to_isolate_when_no_item_fails_alone() -> None:
    async def passes(chunk: Sequence[int]) -> bool:
        return len(chunk) < 4  # only the whole fails: not one item's fault

    assert asyncio.run(failing_items(list(range(8)), passes)) == []


def test_record_batches_are_halved_until_each_fits() -> None:
    def encode(payload: Any) -> bytes:
        return b"x" * (10 * len(payload["records"]))

    parts = encode_parts(encode, {"job_id": "j"}, "3:1", list(range(10)), 30)
    assert [part_id for part_id, _ in parts] == ["3:1.0.0", "3:1.0.1", "3:1.1.0", "3:1.1.1"]
    assert all(len(payload) <= 30 for _, payload in parts)
    assert parts == encode_parts(encode, {"job_id": "j"}, "3:1", list(range(10)), 30)


# --- the runner -----------------------------------------------------------------------------------


class RecordingStage:
    """Fails every batch that holds one of the ``poisoned`` offsets."""

    name = "test"

    def __init__(self, poisoned: dict[int, Exception]) -> None:
        self.poisoned = poisoned
        self.done: list[int] = []
        self.told: list[int] = []

    async def handle(self, deliveries: Sequence[Delivery]) -> None:
        offsets = [d.offset for d in deliveries]
        for offset in offsets:
            if offset in self.poisoned:
                raise self.poisoned[offset]
        self.done.extend(offsets)

    async def after_dead_letter(self, delivery: Delivery, reason: str) -> None:
        self.told.append(delivery.offset)


class MemoryFailureLog:
    def __init__(self) -> None:
        self.attempts: dict[int, int] = {}
        self.dead: list[int] = []

    async def record(self, topic: str, partition: int, offset: int, error: BaseException) -> int:
        self.attempts[offset] = self.attempts.get(offset, 0) + 1
        return self.attempts[offset]

    async def mark_dead_lettered(self, topic: str, partition: int, offset: int) -> None:
        self.dead.append(offset)


class MemoryDeadLetters:
    def __init__(self) -> None:
        self.sent: list[tuple[int, str, dict[str, str]]] = []

    async def send(self, delivery: Delivery, reason: str, detail: str, extra: Any = ()) -> None:
        self.sent.append((delivery.offset, reason, dict(extra)))


def deliveries(count: int) -> list[Delivery]:
    return [Delivery("t", 0, offset, None, b"") for offset in range(count)]


def run(stage: RecordingStage, count: int, attempts: int = 3) -> tuple[MemoryFailureLog, Any]:
    failures, letters = MemoryFailureLog(), MemoryDeadLetters()
    policy = RetryPolicy(poison_attempts=attempts, first_backoff_seconds=0, max_backoff_seconds=0)
    runner = StageRunner(stage, letters, failures, policy)  # type: ignore[arg-type]
    asyncio.run(runner.run(deliveries(count)))
    return failures, letters


def test_a_poison_message_is_dead_lettered_after_exactly_n_recorded_failures() -> None:
    stage = RecordingStage({5: RuntimeError("boom")})
    failures, letters = run(stage, 8, attempts=3)
    assert failures.attempts == {5: 3}
    assert [(offset, reason) for offset, reason, _ in letters.sent] == [(5, "poison")]
    headers = letters.sent[0][2]
    assert headers["dlq.attempts"] == "3" and headers["dlq.error_class"] == "RuntimeError"
    assert stage.told == [5] and failures.dead == [5]
    assert sorted(stage.done) == [0, 1, 2, 3, 4, 6, 7]  # the others went through


def test_transient_failures_are_retried_and_never_counted() -> None:
    stage = RecordingStage({})
    outages = [KafkaUnavailable("down"), psycopg.OperationalError("restarting")]

    async def flaky(deliveries: Sequence[Delivery]) -> None:
        if outages:
            raise outages.pop(0)
        stage.done.extend(d.offset for d in deliveries)

    stage.handle = flaky  # type: ignore[method-assign]
    failures, letters = run(stage, 4)
    assert failures.attempts == {} and letters.sent == []
    assert stage.done == [0, 1, 2, 3]


def test_a_message_that_recovers_before_n_failures_is_not_dead_lettered() -> None:
    stage = RecordingStage({1: RuntimeError("not yet")})
    calls = {"n": 0}
    original = stage.handle

    async def heals(deliveries: Sequence[Delivery]) -> None:
        if [d.offset for d in deliveries] == [1]:
            calls["n"] += 1
            if calls["n"] == 3:
                stage.poisoned.clear()
        await original(deliveries)

    stage.handle = heals  # type: ignore[method-assign]
    failures, letters = run(stage, 3, attempts=3)
    assert failures.attempts == {1: 2} and letters.sent == []
    assert sorted(stage.done) == [0, 1, 2]


def test_a_stop_interrupts_a_retry_and_leaves_the_message_undone() -> None:
    stage = RecordingStage({0: KafkaUnavailable("down")})
    stopping = asyncio.Event()

    async def scenario() -> None:
        policy = RetryPolicy(first_backoff_seconds=5, max_backoff_seconds=5)
        runner = StageRunner(
            stage,
            MemoryDeadLetters(),
            MemoryFailureLog(),
            policy,
            stopping=stopping,  # type: ignore[arg-type]
        )
        task = asyncio.create_task(runner.run(deliveries(1)))
        await asyncio.sleep(0.05)
        stopping.set()
        with pytest.raises(Stopped):
            await task

    asyncio.run(scenario())
    assert stage.done == []
