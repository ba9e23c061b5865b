"""Workers scaled by partitions: one job, run by 1, 2 and 4 workers over topics of 8 partitions
(the job-progress changelog included), stays exact.

The module has its own consumer group, topics and database on the session's broker, so the
session's workers never read these partitions. Each worker count gets its own gateway, workers
and consumers; the test checks the group really spread the partitions over that many workers
before the job, then every place a record can be lost or doubled (tests/support/exactness.py).
The records/s it prints are not asserted (the machine is shared); bench/bench_workers.py
measures them.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator

import pytest
from confluent_kafka.admin import AdminClient

from bulk_ingest.cli import prepare_backends
from bulk_ingest.settings import Settings
from storage.db import sync_engine
from tests.support.database import recreate_database
from tests.support.exactness import assert_exact
from tests.support.kafka import own_topics, records_partition_owners
from tests.support.records import customers, unique_prefix
from tests.support.service import RunningService, new_tenant, running_service

PARTITIONS = 8
TOTAL = 20_000


@pytest.fixture(scope="module")
def scale_settings(stack_settings: Settings) -> Settings:
    run = secrets.token_hex(3)
    settings = stack_settings.with_overrides(
        partitions=PARTITIONS,
        app_id=f"bulk-ingest-scale-{run}",
        database_url=stack_settings.database_url + "_scale",
        http_port=stack_settings.http_port + 300,
        metrics_port=0,
        report_dir=stack_settings.state_dir / f"reports-scale-{run}",
        file_dir=stack_settings.state_dir / f"files-scale-{run}",
        **own_topics(f"s{run}"),
    )
    recreate_database(settings)
    prepare_backends(settings)
    return settings


def _partitions_of(settings: Settings, topic: str) -> int:
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    return len(admin.list_topics(topic, timeout=10).topics[topic].partitions)


def test_every_topic_and_the_changelog_have_eight_partitions(scale_settings: Settings) -> None:
    with running_service(scale_settings, workers=("worker-1",)):
        changelog = f"{scale_settings.app_id}-job-progress-changelog"
        for topic in (*scale_settings.topics.all(), changelog):
            assert _partitions_of(scale_settings, topic) == PARTITIONS, topic


@pytest.fixture(params=[1, 2, 4], ids=lambda n: f"{n}-workers")
def scaled(request: pytest.FixtureRequest, scale_settings: Settings) -> Iterator[RunningService]:
    names = tuple(f"worker-{i}" for i in range(1, request.param + 1))
    with running_service(scale_settings, workers=names) as service:
        yield service


def test_one_job_is_exact_whatever_the_number_of_workers(scaled: RunningService) -> None:
    owners = records_partition_owners(scaled.settings)
    assert len(owners) == len(scaled.workers), owners
    assert all(owners), f"a worker owns no records partition: {owners}"
    assert sorted(p for owned in owners for p in owned) == list(range(PARTITIONS))

    engine = sync_engine(scaled.settings.sqlalchemy_url)
    tenant = new_tenant(engine, scaled.base_url)
    engine.dispose()
    started = time.monotonic()
    answer = tenant.api.post(
        "/api/v1/customers/bulk/async", {"records": customers(unique_prefix(), TOTAL)}
    )
    assert answer.status == 202, answer.body
    job_id = str(answer.json()["job_id"])
    assert_exact(scaled.settings, tenant, job_id, TOTAL, timeout=240)
    seconds = time.monotonic() - started
    print(f"[scale] {len(scaled.workers)} workers: {TOTAL / seconds:,.0f} records/s (not asserted)")
    assert scaled.restarts == [], f"a worker restarted: {scaled.restarts}"
