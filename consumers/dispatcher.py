"""The webhook dispatcher: claims due deliveries, sends them, records every attempt.

Any number of dispatcher processes can run: claiming (``storage.webhooks.claim_due``) hands each
due attempt to exactly one of them, and the whole schedule lives in PostgreSQL, so stopping or
killing a dispatcher loses nothing — an attempt it had claimed is retried when its lease ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from bulk_ingest.metrics import WEBHOOK_DELIVERIES
from bulk_ingest.settings import Settings
from bulk_ingest.ssrf import WebhookPolicy
from consumers.retry_schedule import RetryPolicy, next_attempt_at
from consumers.sender import SendOutcome, post_webhook
from consumers.signing import InvalidWebhookSecret, signed_headers
from storage import webhooks as webhook_store
from storage.webhooks import AttemptResult, ClaimedAttempt, DeliveryState

log = logging.getLogger(__name__)

RECORD_TRIES = 5
LEASE_MARGIN_SECONDS = 5.0


@dataclass(frozen=True)
class DispatcherConfig:
    timeout_seconds: float
    poll_seconds: float
    lease_seconds: float
    max_in_flight: int
    retry: RetryPolicy

    @classmethod
    def from_settings(cls, settings: Settings) -> DispatcherConfig:
        return cls(
            timeout_seconds=settings.webhook_timeout_seconds,
            poll_seconds=settings.webhook_poll_seconds,
            # The lease outlasts any attempt (the DNS check and the request each time out), so
            # an attempt still running is never claimed again; a dead dispatcher's attempt is
            # retried once it ends.
            lease_seconds=2 * settings.webhook_timeout_seconds + LEASE_MARGIN_SECONDS,
            max_in_flight=max(1, settings.webhook_max_in_flight),
            retry=RetryPolicy(
                initial_backoff_seconds=settings.webhook_initial_backoff_seconds,
                max_backoff_seconds=settings.webhook_max_backoff_seconds,
                horizon_seconds=settings.webhook_retry_horizon_seconds,
            ),
        )


def attempt_result(
    outcome: SendOutcome,
    claim: ClaimedAttempt,
    retry: RetryPolicy,
    now: datetime,
    rand: Callable[[], float] | None = None,
) -> AttemptResult:
    """The schedule that follows one attempt's outcome."""
    if outcome.delivered:
        return AttemptResult(
            outcome.status_code, outcome.latency_ms, None, DeliveryState.DELIVERED, None
        )
    next_at = None
    if not outcome.final:
        next_at = next_attempt_at(
            retry,
            attempt=claim.attempt,
            now=now,
            cycle_started_at=claim.cycle_started_at,
            retry_after_seconds=outcome.retry_after_seconds,
            **({"rand": rand} if rand else {}),
        )
    error = outcome.error
    if next_at is None and not outcome.final:
        error = f"{error}; retry horizon of {retry.horizon_seconds:g}s reached, giving up"
    state = DeliveryState.PENDING if next_at else DeliveryState.FAILED
    return AttemptResult(outcome.status_code, outcome.latency_ms, error, state, next_at)


def _result_label(result: AttemptResult) -> str:
    if result.state is DeliveryState.DELIVERED:
        return "delivered"
    return "failed" if result.state is DeliveryState.PENDING else "gave_up"


class WebhookDispatcher:
    def __init__(
        self, engine: AsyncEngine, config: DispatcherConfig, policy: WebhookPolicy
    ) -> None:
        self._engine = engine
        self._config = config
        self._policy = policy
        self._wake = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()

    def wake(self) -> None:
        """Look for due deliveries now instead of at the next poll."""
        self._wake.set()

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            free = self._config.max_in_flight - len(self._in_flight)
            claimed = await self._claim(free) if free > 0 else []
            for claim in claimed:
                task = asyncio.create_task(self._attempt(claim))
                self._in_flight.add(task)
                task.add_done_callback(self._in_flight.discard)
            saturated = free <= 0 or len(claimed) == free
            await self._pause(stopping, only_for_a_slot=saturated)
        await self._drain()

    async def _pause(self, stopping: asyncio.Event, *, only_for_a_slot: bool) -> None:
        waiters = {asyncio.ensure_future(stopping.wait())}
        if not only_for_a_slot:
            waiters.add(asyncio.ensure_future(self._wake.wait()))
        timeout = None if only_for_a_slot and self._in_flight else self._config.poll_seconds
        try:
            await asyncio.wait(
                waiters | self._in_flight, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in waiters:
                waiter.cancel()
        self._wake.clear()

    async def _drain(self) -> None:
        """On a graceful stop, let attempts in flight finish and record their results."""
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=2 * self._config.timeout_seconds + 5)
        for task in self._in_flight:
            task.cancel()  # its claim's lease will expire and the attempt will be retried

    async def _claim(self, limit: int) -> list[ClaimedAttempt]:
        try:
            async with self._engine.begin() as conn:
                return await webhook_store.claim_due(
                    conn,
                    limit=limit,
                    now=datetime.now(UTC),
                    lease_seconds=self._config.lease_seconds,
                )
        except Exception:
            log.exception("could not claim due webhooks; trying again shortly")
            return []

    async def _attempt(self, claim: ClaimedAttempt) -> None:
        outcome = await self._send(claim)
        result = attempt_result(outcome, claim, self._config.retry, datetime.now(UTC))
        log.info(
            "webhook %s attempt %s for job %s: %s%s",
            claim.webhook_id,
            claim.attempt,
            claim.job_id,
            outcome.status_code or outcome.error,
            f", next at {result.next_attempt_at.isoformat()}" if result.next_attempt_at else "",
        )
        await self._record(claim, result)

    async def _send(self, claim: ClaimedAttempt) -> SendOutcome:
        body = claim.payload.encode()
        try:
            headers = signed_headers(claim.webhook_secret, claim.webhook_id, int(time.time()), body)
        except InvalidWebhookSecret as exc:
            return SendOutcome(error=f"cannot sign: {exc}", final=True)
        return await post_webhook(
            claim.url, body, headers, self._policy, self._config.timeout_seconds
        )

    async def _record(self, claim: ClaimedAttempt, result: AttemptResult) -> None:
        for attempt in range(1, RECORD_TRIES + 1):
            try:
                async with self._engine.begin() as conn:
                    owned = await webhook_store.record_result(
                        conn, claim, result, datetime.now(UTC)
                    )
                if not owned:
                    log.warning(
                        "webhook %s attempt %s outlived its claim", claim.webhook_id, claim.attempt
                    )
                else:
                    WEBHOOK_DELIVERIES.labels(_result_label(result)).inc()
                return
            except Exception:
                log.exception("could not record webhook attempt (try %s)", attempt)
                await asyncio.sleep(attempt)
        log.error(
            "giving up recording webhook %s attempt %s; it is retried when its claim expires",
            claim.webhook_id,
            claim.attempt,
        )
