"""The service's processes as real subprocesses: gateway, stream workers and consumers, with a
supervisor that restarts a worker asking for it, as the run command's does."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import ConsumerGroupState
from confluent_kafka.admin import AdminClient
from sqlalchemy.engine import Engine

from bulk_ingest.processes import RESTART_EXIT_CODES, ServiceProcess, spawn
from bulk_ingest.settings import Settings
from domain.entities import DEFAULT_REFERENCE_TYPES
from storage.db import create_tenant, sync_engine
from tests.support.http import Api, poll


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


@dataclass(frozen=True)
class Tenant:
    tenant_id: str
    api_key: str
    webhook_secret: str
    api: Api


def new_tenant(engine: Engine, base_url: str) -> Tenant:
    """A new tenant with the default reference types, and an API client holding its key."""
    created = create_tenant(engine, f"test-{uuid.uuid4().hex[:8]}", DEFAULT_REFERENCE_TYPES)
    return Tenant(
        created.tenant_id, created.api_key, created.webhook_secret, Api(base_url, created.api_key)
    )


@contextlib.contextmanager
def running_service(
    settings: Settings, workers: Sequence[str] = ("worker-1", "worker-2")
) -> Iterator[RunningService]:
    """Gateway, ``workers`` and the consumers, up and ready (a warm-up job completed); all of
    them stopped at the end."""
    log_dir = settings.state_dir / "logs" / settings.app_id
    running = RunningService(settings, log_dir, spawn("gateway", settings, log_dir))
    for name in workers:
        running.start_worker(name)
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
