"""One runner owns retries and the error policy for every stage and consumer.

A *stage* is a class with one job: ``handle(deliveries)`` — decode, decide, write, emit — and
``after_dead_letter(delivery)`` — what a message that will never be processed means for its
job (its records fail as ``RecordNotProcessed``, see design.md §8). Stages dead-letter input
they can tell is invalid themselves; the runner handles what escapes them
(:mod:`bulk_ingest.failures`):

1. **transient** → the same deliveries again after a backoff, for as long as it takes;
2. anything else on **several** deliveries → split them in halves and run each half, so one bad
   message never holds back the others (stages are idempotent, so a half that had already been
   written is simply written again as a no-op);
3. anything else on **one** delivery → record the failure in PostgreSQL; below
   ``poison_attempts`` recorded failures retry it after a backoff, at ``poison_attempts``
   dead-letter it (with the exception in its headers), tell the stage, and move on.

The worker never exits because of a message: a partition keeps moving whatever it holds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from bulk_ingest.dead_letters import DeadLetterQueue, Delivery
from bulk_ingest.failures import FailureKind, classify, describe

log = logging.getLogger("bulk_ingest.runner")


class Stage(Protocol):
    name: str

    async def handle(self, deliveries: Sequence[Delivery]) -> None: ...

    async def after_dead_letter(self, delivery: Delivery, reason: str) -> None: ...


class FailureLog(Protocol):
    async def record(
        self, topic: str, partition: int, offset: int, error: BaseException
    ) -> int: ...

    async def mark_dead_lettered(self, topic: str, partition: int, offset: int) -> None: ...


class Activity(Protocol):
    """Where a runner reports which partitions it is working on (the stall watchdog reads it)."""

    def begin(self, topic: str, partition: int) -> None: ...

    def end(self, topic: str, partition: int) -> None: ...


@dataclass(frozen=True)
class RetryPolicy:
    poison_attempts: int = 3
    first_backoff_seconds: float = 0.2
    max_backoff_seconds: float = 10.0

    def backoff(self, attempt: int) -> float:
        doubled = self.first_backoff_seconds * 2.0 ** max(attempt - 1, 0)
        return min(doubled, self.max_backoff_seconds)


class Stopped(Exception):
    """The runner was asked to stop while waiting to retry; the deliveries are not done."""


class StageRunner:
    def __init__(
        self,
        stage: Stage,
        dead_letters: DeadLetterQueue,
        failures: FailureLog,
        policy: RetryPolicy,
        *,
        activity: Activity | None = None,
        stopping: asyncio.Event | None = None,
    ) -> None:
        self.stage = stage
        self._dead_letters = dead_letters
        self._failures = failures
        self._policy = policy
        self._activity = activity
        self._stopping = stopping

    async def run(self, deliveries: Sequence[Delivery]) -> None:
        """Process ``deliveries`` to the end: done, or dead-lettered. Raises :class:`Stopped`."""
        if not deliveries:
            return
        partitions = sorted({(d.topic, d.partition) for d in deliveries})
        for topic, partition in partitions:
            if self._activity is not None:
                self._activity.begin(topic, partition)
        try:
            await self._run(list(deliveries))
        finally:
            for topic, partition in partitions:
                if self._activity is not None:
                    self._activity.end(topic, partition)

    async def _run(self, deliveries: list[Delivery]) -> None:
        transient_attempts = 0
        while True:
            try:
                await self.stage.handle(deliveries)
                return
            except Exception as error:
                if classify(error) is FailureKind.TRANSIENT:
                    transient_attempts += 1
                    log.warning(
                        "%s: transient failure (attempt %s), retrying: %s",
                        self.stage.name,
                        transient_attempts,
                        describe(error),
                    )
                    await self._pause(self._policy.backoff(transient_attempts))
                    continue
                if len(deliveries) > 1:
                    log.warning(
                        "%s: %s on %d messages; splitting them to find the one responsible",
                        self.stage.name,
                        describe(error),
                        len(deliveries),
                    )
                    middle = len(deliveries) // 2
                    await self._run(deliveries[:middle])
                    await self._run(deliveries[middle:])
                    return
                if await self._give_up_on(deliveries[0], error):
                    return

    async def _give_up_on(self, delivery: Delivery, error: Exception) -> bool:
        """Record one failure of ``delivery``; True once it has been dead-lettered."""
        log.error("%s: %s failed: %s", self.stage.name, delivery, describe(error), exc_info=error)
        attempts = await self._recorded(delivery, error)
        if attempts < self._policy.poison_attempts:
            log.warning(
                "%s: %s has failed %d of %d times; retrying",
                self.stage.name,
                delivery,
                attempts,
                self._policy.poison_attempts,
            )
            await self._pause(self._policy.backoff(attempts))
            return False
        await self._dead_letter(delivery, error, attempts)
        return True

    async def _recorded(self, delivery: Delivery, error: Exception) -> int:
        while True:
            try:
                return await self._failures.record(
                    delivery.topic, delivery.partition, delivery.offset, error
                )
            except Exception as trouble:  # the database is away: nothing is counted meanwhile
                log.warning("%s: cannot record a failure yet: %s", self.stage.name, trouble)
                await self._pause(self._policy.max_backoff_seconds / 4)

    async def _dead_letter(self, delivery: Delivery, error: Exception, attempts: int) -> None:
        reason = "poison"
        detail = f"{self.stage.name} failed on this message {attempts} times: {describe(error)}"
        extra = (
            ("dlq.attempts", str(attempts)),
            ("dlq.error_class", type(error).__name__),
            ("dlq.error", str(error)),
        )
        await self._until_done(lambda: self._dead_letters.send(delivery, reason, detail, extra))
        await self._until_done(lambda: self.stage.after_dead_letter(delivery, detail))
        await self._until_done(
            lambda: self._failures.mark_dead_lettered(
                delivery.topic, delivery.partition, delivery.offset
            )
        )

    async def _until_done(self, step: Callable[[], Awaitable[object]]) -> None:
        """A follow-up step that must happen: transient trouble is waited out, a bug logged."""
        attempt = 0
        while True:
            try:
                await step()
                return
            except Exception as error:
                attempt += 1
                if classify(error) is not FailureKind.TRANSIENT and attempt >= 3:
                    # The incomplete-job sweeper still ends the job in time.
                    log.error("%s: giving up a follow-up step: %s", self.stage.name, error)
                    return
                await self._pause(self._policy.backoff(attempt))

    async def _pause(self, seconds: float) -> None:
        if self._stopping is None:
            await asyncio.sleep(seconds)
            return
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            return
        raise Stopped(self.stage.name)
