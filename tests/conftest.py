"""Session fixtures: the real local stack, a fresh test database, and the service processes.

Kafka and PostgreSQL are started by the project's own stack code. If they cannot be had, the
tests that need them fail with the stack's error; they never skip.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from bulk_ingest.cli import prepare_backends
from bulk_ingest.processes import stack_config
from bulk_ingest.settings import REPO_ROOT, Settings, load_settings
from stack import (
    StackConfig,
    kafka_died_unexpectedly,
    kafka_pid,
    stack_down,
    stack_up,
    start_kafka,
)
from storage.db import sync_engine
from tests.support.database import recreate_database
from tests.support.kafka import own_topics
from tests.support.service import RunningService, Tenant, new_tenant, running_service

TEST_KAFKA_PORT = int(os.environ.get("BULK_INGEST_TEST_KAFKA_PORT", "19092"))
"""The test broker's port; another checkout's test session on this machine needs its own."""
TEST_HTTP_PORT = 18080
TEST_METRICS_PORT = 19400
INCOMPLETE_JOB_SECONDS = 12.0  # beyond the 10 s a killed worker's partitions wait to move
FAULT_INJECTION_KEY = "poison-pill-fault-injection"


def _test_settings() -> Settings:
    run = secrets.token_hex(3)
    base = load_settings({})
    state_dir = REPO_ROOT / ".state" / "test"
    # Test sessions running side by side on one machine share the broker but must not share
    # the gateway port or the (per-session recreated) database: BULK_INGEST_TEST_SLOT=N
    # gives a session its own of both.
    slot = int(os.environ.get("BULK_INGEST_TEST_SLOT", "0"))
    database = "bulk_ingest_test" + (f"_{slot}" if slot else "")
    return base.with_overrides(
        kafka_bootstrap=f"127.0.0.1:{TEST_KAFKA_PORT}",
        kafka_controller_port=TEST_KAFKA_PORT + 1,
        database_url=base.database_url.rsplit("/", 1)[0] + "/" + database,
        http_port=TEST_HTTP_PORT + slot,
        metrics_port=TEST_METRICS_PORT + 10 * slot,
        **own_topics(f"t{run}"),
        app_id=f"bulk-ingest-test-{run}",
        state_dir=state_dir,
        report_dir=state_dir / f"reports-{run}",
        file_dir=state_dir / f"files-{run}",
        sync_timeout_seconds=30.0,
        # A stalled partition (faust-streaming#629) is sought back within ~10 s.
        stall_seconds=8.0,
        stall_check_seconds=2.0,
        webhook_allow_loopback=True,
        # Webhook retries in seconds, not hours, so the completion tests see several attempts.
        webhook_initial_backoff_seconds=0.5,
        webhook_max_backoff_seconds=2.0,
        webhook_timeout_seconds=2.0,
        webhook_poll_seconds=0.1,
        webhook_sweep_seconds=1.0,
        # File imports: expired files are purged within a second, so a test can watch it.
        file_cleanup_interval_seconds=1.0,
        # Incomplete jobs end within seconds (never while the group still has messages to
        # read), so the hostile-input tests can watch it; abandoned jobs within a second.
        incomplete_job_seconds=INCOMPLETE_JOB_SECONDS,
        kafka_delivery_timeout_seconds=6.0,  # below INCOMPLETE_JOB_SECONDS
        incomplete_job_check_seconds=1.0,
        # Offsets committed every 2 s: a SIGKILLed worker leaves batches it wrote and announced
        # uncommitted, so the crash test sees their redelivery (duplicate events) for sure.
        commit_interval_seconds=2.0,
        # A record with this key makes the persist stage fail: the poison-message tests.
        fault_injection_key=FAULT_INJECTION_KEY,
    )


@dataclass
class BrokerWatch:
    """Notices a broker that died on its own between tests and brings it back, so one death
    costs the test it happened in, not every later one; the deaths are reported at the end."""

    config: StackConfig

    def heal(self, when: str) -> None:
        death = kafka_died_unexpectedly(self.config)
        if death is None and kafka_pid(self.config) is None:
            death = "the broker is not running: it was stopped and not started again"
        if death is None:
            return
        _broker_deaths.append(f"{when}: {death}")
        print(f"[stack] {when}: the broker died; starting it again\n{death}")
        start_kafka(self.config)


_broker_watch: BrokerWatch | None = None
_broker_deaths: list[str] = []


@pytest.fixture(autouse=True)
def _broker_stays_up(request: pytest.FixtureRequest) -> Iterator[None]:
    if _broker_watch is not None:
        _broker_watch.heal(f"before {request.node.nodeid}")
    yield
    if _broker_watch is not None:
        _broker_watch.heal(f"after {request.node.nodeid}")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _broker_deaths:
        terminalreporter.section("the broker died on its own (and was started again)")
        for death in _broker_deaths:
            terminalreporter.write_line(death)


@pytest.fixture(scope="session")
def stack_settings() -> Iterator[Settings]:
    """The real broker and database, up; a fresh empty test database (not yet migrated)."""
    global _broker_watch
    settings = _test_settings()
    config = stack_config(settings)
    stack_up(config, log=lambda line: print(f"[stack] {line}"))
    recreate_database(settings)
    _broker_watch = BrokerWatch(config)
    yield settings
    _broker_watch = None
    # The suite stops what it started (a PostgreSQL it did not start stays); keep the broker
    # for quick reruns with BULK_INGEST_TEST_KEEP_STACK=1.
    if not os.environ.get("BULK_INGEST_TEST_KEEP_STACK"):
        stack_down(config, log=lambda line: print(f"[stack] {line}"))


@pytest.fixture(scope="session")
def settings(stack_settings: Settings) -> Settings:
    """Stack up, database migrated, topics created."""
    prepare_backends(stack_settings)
    return stack_settings


@pytest.fixture(scope="session")
def service(settings: Settings) -> Iterator[RunningService]:
    """Gateway, two workers and the consumers as real subprocesses."""
    with running_service(settings) as running:
        yield running


@pytest.fixture
def make_tenant(settings: Settings, service: RunningService):  # type: ignore[no-untyped-def]
    engine = sync_engine(settings.sqlalchemy_url)

    def make() -> Tenant:
        return new_tenant(engine, service.base_url)

    yield make
    engine.dispose()


@pytest.fixture
def tenant(make_tenant) -> Tenant:  # type: ignore[no-untyped-def]
    return make_tenant()
