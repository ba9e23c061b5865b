"""Session fixtures: the real local stack, a fresh test database, and the service processes.

Kafka and PostgreSQL are started by the project's own stack code. If they cannot be had, the
tests that need them fail with the stack's error; they never skip.
"""

from __future__ import annotations

import os
import secrets
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import ConsumerGroupState
from confluent_kafka.admin import AdminClient
from psycopg import sql

from bulk_ingest.cli import prepare_backends
from bulk_ingest.processes import RESTART_EXIT_CODES, ServiceProcess, spawn, stack_config
from bulk_ingest.settings import REPO_ROOT, Settings, load_settings
from domain.entities import DEFAULT_REFERENCE_TYPES
from stack import (
    StackConfig,
    kafka_died_unexpectedly,
    kafka_pid,
    stack_down,
    stack_up,
    start_kafka,
)
from storage.db import create_tenant, sync_engine
from tests.support.http import Api, poll

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
        topic_requests=f"t{run}.bulk.requests",
        topic_records=f"t{run}.bulk.records",
        topic_outcomes=f"t{run}.bulk.outcomes",
        topic_jobs=f"t{run}.bulk.jobs",
        topic_dlq=f"t{run}.bulk.dlq",
        topic_progress=f"t{run}.bulk.progress",
        topic_imports=f"t{run}.bulk.imports",
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


def _recreate_database(settings: Settings) -> None:
    admin_url = settings.libpq_url.rsplit("/", 1)[0] + "/postgres"
    database = settings.libpq_url.rsplit("/", 1)[1]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            # Client sessions only: an autovacuum worker (which we may not terminate) is
            # stopped by DROP DATABASE itself.
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
            [database],
        )
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(database)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))


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
    _recreate_database(settings)
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


@dataclass
class RunningService:
    settings: Settings
    log_dir: Path
    gateway: ServiceProcess
    workers: list[ServiceProcess] = field(default_factory=list)
    others: list[ServiceProcess] = field(default_factory=list)
    restarts: list[tuple[str, int]] = field(default_factory=list)
    """(worker, exit code) of every restart the supervisor made, in order."""

    @property
    def base_url(self) -> str:
        return f"http://{self.settings.http_host}:{self.settings.http_port}"

    def start_worker(self, name: str) -> ServiceProcess:
        worker = spawn("worker", self.settings, self.log_dir, name=name)
        self.workers = [w for w in self.workers if w.role != name] + [worker]
        return worker

    def restart_asking_workers(self) -> None:
        """What the run command's supervisor does: a worker that exits asking for it comes back."""
        for worker in list(self.workers):
            code = worker.process.poll()
            if code in RESTART_EXIT_CODES:
                print(f"[service] {worker.role} exited ({code}); restarting")
                self.restarts.append((worker.role, code))
                self.start_worker(worker.role)

    def logs(self) -> str:
        parts = [p for p in (self.gateway, *self.workers, *self.others)]
        return "\n".join(f"== {p.role}\n{p.log_tail(30)}" for p in parts)


def _wait_healthy(service: RunningService) -> None:
    api = Api(service.base_url)

    def healthy() -> bool:
        if not service.gateway.alive():
            raise AssertionError(f"gateway died:\n{service.gateway.log_tail()}")
        try:
            return api.get("/healthz", timeout=3).status == 200
        except OSError:
            return False

    poll(healthy, 60, "the gateway to report healthy")


def _every_worker_in_the_group(service: RunningService) -> bool:
    """Every worker is a member of the stable consumer group, with partitions of its own."""
    settings = service.settings
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    group = admin.describe_consumer_groups([settings.app_id])[settings.app_id].result(30)
    owners = [m for m in group.members if m.assignment.topic_partitions]
    return group.state == ConsumerGroupState.STABLE and len(owners) == len(service.workers)


def _wait_pipeline_ready(service: RunningService) -> None:
    """Every worker joined the group (a late one would rebalance it under the first test's
    job: a stall longer than the incomplete-job timeout), then a warm-up job must finish."""
    poll(lambda: _every_worker_in_the_group(service), 120, "every worker to join the group")
    engine = sync_engine(service.settings.sqlalchemy_url)
    try:
        created = create_tenant(engine, "warm-up", DEFAULT_REFERENCE_TYPES)
    finally:
        engine.dispose()
    api = Api(service.base_url, created.api_key)
    record = {"externalId": "warm-up", "firstName": "W", "lastName": "U"}
    job = api.post("/api/v1/customers/bulk/async", {"records": [record]}).json()

    def finished() -> bool:
        for process in service.workers:
            if not process.alive():
                raise AssertionError(f"{process.role} died:\n{process.log_tail()}")
        return api.get(f"/api/v1/jobs/{job['job_id']}").json()["status"] == "COMPLETED"

    poll(finished, 120, "a warm-up job to complete (workers ready)")


@pytest.fixture(scope="session")
def service(settings: Settings) -> Iterator[RunningService]:
    """Gateway, two workers and the consumers as real subprocesses."""
    log_dir = settings.state_dir / "logs" / settings.app_id
    running = RunningService(settings, log_dir, spawn("gateway", settings, log_dir))
    running.start_worker("worker-1")
    running.start_worker("worker-2")
    running.others.append(spawn("consumers", settings, log_dir))
    stop_supervising = threading.Event()

    def supervise() -> None:
        while not stop_supervising.wait(0.5):
            running.restart_asking_workers()

    supervisor = threading.Thread(target=supervise, daemon=True, name="supervisor")
    supervisor.start()
    try:
        _wait_healthy(running)
        _wait_pipeline_ready(running)
        yield running
    finally:
        stop_supervising.set()
        supervisor.join(5)
        for process in (running.gateway, *running.workers, *running.others):
            process.stop()


@dataclass(frozen=True)
class Tenant:
    tenant_id: str
    api_key: str
    webhook_secret: str
    api: Api


@pytest.fixture
def make_tenant(settings: Settings, service: RunningService):  # type: ignore[no-untyped-def]
    engine = sync_engine(settings.sqlalchemy_url)

    def make() -> Tenant:
        created = create_tenant(engine, f"test-{uuid.uuid4().hex[:8]}", DEFAULT_REFERENCE_TYPES)
        return Tenant(
            created.tenant_id,
            created.api_key,
            created.webhook_secret,
            Api(service.base_url, created.api_key),
        )

    yield make
    engine.dispose()


@pytest.fixture
def tenant(make_tenant) -> Tenant:  # type: ignore[no-untyped-def]
    return make_tenant()
