"""The webhook retry schedule: exponential backoff, full jitter, Retry-After, a horizon."""

from datetime import UTC, datetime, timedelta

import pytest

from consumers.retry_schedule import RetryPolicy, next_attempt_at, parse_retry_after

POLICY = RetryPolicy(initial_backoff_seconds=5, max_backoff_seconds=3600, horizon_seconds=3 * 86400)
START = datetime(2024, 1, 1, tzinfo=UTC)


def delay(attempt, *, rand=1.0, now=START, retry_after=None, policy=POLICY):
    at = next_attempt_at(
        policy,
        attempt=attempt,
        now=now,
        cycle_started_at=START,
        retry_after_seconds=retry_after,
        rand=lambda: rand,
    )
    return None if at is None else (at - now).total_seconds()


def test_ceiling_doubles_from_the_initial_backoff_up_to_the_cap():
    assert [POLICY.ceiling(n) for n in range(1, 6)] == [5, 10, 20, 40, 80]
    assert POLICY.ceiling(12) == 3600
    assert POLICY.ceiling(10_000) == 3600  # no overflow, however many attempts


@pytest.mark.parametrize("rand", [0.0, 0.25, 0.999])
def test_full_jitter_spreads_the_delay_between_zero_and_the_ceiling(rand):
    assert delay(3, rand=rand) == pytest.approx(20 * rand)


def test_retry_after_is_a_floor():
    assert delay(1, rand=0.5, retry_after=30) == 30
    assert delay(5, rand=1.0, retry_after=30) == 80  # the backoff is already longer


def test_the_last_retry_lands_on_the_horizon_and_nothing_follows():
    near_end = START + timedelta(seconds=POLICY.horizon_seconds - 100)
    assert delay(40, now=near_end) == 100
    assert delay(41, now=START + timedelta(seconds=POLICY.horizon_seconds)) is None


def test_retry_after_beyond_the_horizon_ends_the_cycle():
    near_end = START + timedelta(seconds=POLICY.horizon_seconds - 10)
    assert delay(30, now=near_end, retry_after=60) is None


def test_a_whole_cycle_with_maximal_jitter_takes_about_the_horizon():
    now, attempts = START, 1
    while (
        at := next_attempt_at(
            POLICY, attempt=attempts, now=now, cycle_started_at=START, rand=lambda: 1.0
        )
    ) is not None:
        now, attempts = at, attempts + 1
    assert now == START + timedelta(seconds=POLICY.horizon_seconds)
    assert 70 < attempts < 90  # 11 doubling steps, then hourly for the rest of three days


def test_retry_after_as_seconds_or_http_date():
    now = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("120", now) == 120
    assert parse_retry_after(" 7 ", now) == 7
    assert parse_retry_after("Mon, 01 Jan 2024 12:00:30 GMT", now) == 30
    assert parse_retry_after("Mon, 01 Jan 2024 11:00:00 GMT", now) == 0  # in the past
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None
