"""When to try a webhook again (pure).

Exponential backoff with full jitter: after the n-th failed attempt of a delivery cycle the next
one is ``uniform(0, min(max_backoff, initial_backoff * 2**(n-1)))`` seconds later. A receiver's
``Retry-After`` (on 429 and 503) is a floor: the next attempt is never earlier than it asks.
Retries stop at the horizon, measured from the cycle's first attempt; the last retry is clipped
to land exactly on the horizon, and a ``Retry-After`` beyond the horizon ends the cycle.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

RETRY_AFTER_STATUSES = frozenset({429, 503})
_MAX_EXPONENT = 60  # 2**60 times any sane initial backoff is past every cap


@dataclass(frozen=True)
class RetryPolicy:
    initial_backoff_seconds: float
    max_backoff_seconds: float
    horizon_seconds: float

    def ceiling(self, attempt: int) -> float:
        """The largest delay after failed attempt number ``attempt`` (1-based)."""
        exponent = min(max(attempt, 1) - 1, _MAX_EXPONENT)
        return min(self.max_backoff_seconds, self.initial_backoff_seconds * 2.0**exponent)


def next_attempt_at(
    policy: RetryPolicy,
    *,
    attempt: int,
    now: datetime,
    cycle_started_at: datetime,
    retry_after_seconds: float | None = None,
    rand: Callable[[], float] = random.random,
) -> datetime | None:
    """When to retry after failed attempt ``attempt``; ``None`` when the cycle is over."""
    deadline = cycle_started_at + timedelta(seconds=policy.horizon_seconds)
    if now >= deadline:
        return None
    delay = rand() * policy.ceiling(attempt)
    if retry_after_seconds is not None:
        if now + timedelta(seconds=retry_after_seconds) > deadline:
            return None
        delay = max(delay, retry_after_seconds)
    return min(now + timedelta(seconds=delay), deadline)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait per a ``Retry-After`` header (delay-seconds or HTTP-date), or None."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - now).total_seconds())
