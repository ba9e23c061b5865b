"""A real three-node Kafka cluster (combined broker+controller nodes, replication factor 3,
``min.insync.replicas`` 2) loses a node mid-job, and no record is lost or doubled.

The cluster, its own database, topics and consumer group, a gateway, two workers and the
consumers start once for the module. Each fault test proves its fault: the node it kills led the
partition (or the group) when it died, the leadership moved to another node, and the job was
mid-way — some records stored before the kill, not all right after it. Then it checks every
place a record can be lost or doubled (tests/support/exactness.py) and brings the node back,
fully in sync, for the next test. The single-broker suite beside it is unchanged.
"""

from __future__ import annotations

import os
import secrets
import shutil
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # exported, not in __all__
    AdminClient,
    ConfigResource,
    ResourceType,
)

from bulk_ingest.cli import prepare_backends, with_local_brokers
from bulk_ingest.processes import stack_config
from bulk_ingest.replication import replication_for
from bulk_ingest.settings import Settings
from stack import (
    StackConfig,
    kafka_node_pid,
    stack_up,
    start_kafka_node,
    stop_kafka,
    stop_kafka_node,
)
from storage.db import sync_engine
from tests.support.database import recreate_database
from tests.support.exactness import assert_exact, ledger
from tests.support.http import poll
from tests.support.kafka import own_topics
from tests.support.records import customers, unique_prefix
from tests.support.service import RunningService, Tenant, new_tenant, running_service

pytestmark = pytest.mark.cluster

BROKERS = 3
CLUSTER_PORT = int(os.environ.get("BULK_INGEST_TEST_CLUSTER_PORT", "19500"))
"""Nodes on 19500/19501, 19502/19503 and 19504/19505 (broker/controller)."""
TOTAL = 30_000
STALL_RESTART = 75
LEADERSHIP_MOVES_SECONDS = 60.0
OFFSETS_TOPIC = "__consumer_offsets"


def offsets_partition(group: str, partitions: int) -> int:
    """The ``__consumer_offsets`` partition Kafka keeps ``group`` in, whose leader coordinates
    the group: Java's ``String.hashCode`` (over UTF-16 code units, 32-bit wrap-around), made
    non-negative by masking as Kafka's ``Utils.abs`` does, modulo the partition count."""
    encoded = group.encode("utf-16-be")
    units = struct.unpack(f">{len(encoded) // 2}H", encoded)
    hash_code = 0
    for unit in units:
        hash_code = (31 * hash_code + unit) & 0xFFFFFFFF
    return (hash_code & 0x7FFFFFFF) % partitions


@dataclass
class Cluster:
    settings: Settings
    config: StackConfig
    service: RunningService
    admin: AdminClient

    def leader(self, topic: str, partition: int) -> int:
        metadata = self.admin.list_topics(topic, timeout=10)
        return int(metadata.topics[topic].partitions[partition].leader)

    def coordinator(self) -> int:
        """The group's coordinator: the leader of the group's ``__consumer_offsets`` partition,
        read from metadata like any partition's leader (-1 while none leads).

        Not the group's own answer (``describe_consumer_groups``): right after the coordinator
        was killed that call once hung for its whole 30 s, and once, in CI, gave no other node
        for the full minute the test waits, while a partition's leader read from metadata has
        always moved within seconds."""
        metadata = self.admin.list_topics(OFFSETS_TOPIC, timeout=10)
        partitions = len(metadata.topics[OFFSETS_TOPIC].partitions)
        return self.leader(OFFSETS_TOPIC, offsets_partition(self.settings.app_id, partitions))

    def described_coordinator(self) -> int:
        """The coordinator the group names itself; asked on a healthy cluster only."""
        app_id = self.settings.app_id
        group = self.admin.describe_consumer_groups([app_id])[app_id].result(30)
        return int(group.coordinator.id)

    def brokers(self) -> set[int]:
        return set(self.admin.list_topics(timeout=10).brokers)


def _cluster_settings(single: Settings) -> Settings:
    run = secrets.token_hex(3)
    state_dir = single.state_dir.parent / "test-cluster"
    settings = single.with_overrides(
        kafka_bootstrap=f"127.0.0.1:{CLUSTER_PORT}",
        kafka_controller_port=CLUSTER_PORT + 1,
        database_url=single.database_url + "_cluster",
        http_port=single.http_port + 200,
        metrics_port=0,
        app_id=f"bulk-ingest-cluster-{run}",
        state_dir=state_dir,
        report_dir=state_dir / f"reports-{run}",
        file_dir=state_dir / f"files-{run}",
        # A SIGKILLed leader's partitions wait ~6 s (the brokers' session timeout) for a new
        # leader: deliveries must outlast that, and incomplete jobs must outlast deliveries.
        kafka_delivery_timeout_seconds=30.0,
        incomplete_job_seconds=90.0,
        **own_topics(f"c{run}"),
    )
    return with_local_brokers(settings, BROKERS)


@pytest.fixture(scope="module")
def cluster(stack_settings: Settings) -> Iterator[Cluster]:
    """Depends on the single-broker session's stack for PostgreSQL: it is up, and this module
    stops only its own brokers."""
    settings = _cluster_settings(stack_settings)
    config = stack_config(settings)
    stop_kafka(config)  # a previous run's cluster (BULK_INGEST_TEST_KEEP_STACK): start afresh
    shutil.rmtree(config.kafka_cluster_dir, ignore_errors=True)
    try:
        stack_up(config, log=lambda line: print(f"[cluster] {line}"))
        recreate_database(settings)
        prepare_backends(settings)
        with running_service(settings) as service:
            yield Cluster(
                settings,
                config,
                service,
                AdminClient({"bootstrap.servers": config.kafka_bootstrap}),
            )
    finally:
        stop_kafka(config, log=lambda line: print(f"[cluster] {line}"))


@pytest.fixture
def cluster_tenant(cluster: Cluster) -> Iterator[Tenant]:
    engine = sync_engine(cluster.settings.sqlalchemy_url)
    yield new_tenant(engine, cluster.service.base_url)
    engine.dispose()


# --- the cluster as configured -------------------------------------------------------------------


def test_every_topic_has_three_copies_and_needs_two_in_sync(cluster: Cluster) -> None:
    wanted = replication_for(BROKERS)
    assert (wanted.factor, wanted.min_insync) == (3, 2)
    metadata = cluster.admin.list_topics(timeout=10)
    assert set(metadata.brokers) == {1, 2, 3}
    topics = sorted(metadata.topics)
    ours = set(cluster.settings.topics.all())
    changelog = f"{cluster.settings.app_id}-job-progress-changelog"
    assert ours | {changelog, "__consumer_offsets"} <= set(topics), topics
    for name in topics:
        for partition in metadata.topics[name].partitions.values():
            assert len(partition.replicas) == wanted.factor, (name, partition)
    resources = [ConfigResource(ResourceType.TOPIC, name) for name in topics]
    for resource, future in cluster.admin.describe_configs(resources).items():
        min_insync = future.result(30)["min.insync.replicas"].value
        assert min_insync == str(wanted.min_insync), (resource, min_insync)
    broker = ConfigResource(ResourceType.BROKER, "1")
    configs = cluster.admin.describe_configs([broker])[broker].result(30)
    for name in (
        "default.replication.factor",
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
    ):
        assert configs[name].value == str(wanted.factor), name
    for name in ("min.insync.replicas", "transaction.state.log.min.isr"):
        assert configs[name].value == str(wanted.min_insync), name


# --- a node dies mid-job -------------------------------------------------------------------------


def _start_job(tenant: Tenant) -> str:
    answer = tenant.api.post(
        "/api/v1/customers/bulk/async", {"records": customers(unique_prefix(), TOTAL)}
    )
    assert answer.status == 202, answer.body
    return str(answer.json()["job_id"])


def _stored(cluster: Cluster, job_id: str) -> int:
    return ledger(cluster.settings, job_id)[0]


Lookup = Callable[[Cluster], int]
"""Which node leads something right now."""


def _kill_mid_job(cluster: Cluster, job_id: str, find: Lookup, what: str) -> int:
    """SIGKILL the node ``find`` names the moment before the kill, once the job has stored
    outcomes; checks the job was mid-way and returns the node."""
    poll(lambda: _stored(cluster, job_id) > 0, 60, "the first outcomes", interval=0.01)
    before = _stored(cluster, job_id)
    victim = find(cluster)
    assert victim in cluster.brokers(), f"{what} is node {victim}, which is not up"
    stop_kafka_node(cluster.config, victim, hard=True)
    after = _stored(cluster, job_id)
    assert 0 < before <= after < TOTAL, f"{before} → {after} of {TOTAL} stored: not mid-job"
    assert kafka_node_pid(cluster.config, victim) is None
    return victim


def _moved(cluster: Cluster, find: Lookup, victim: int, what: str) -> int:
    def elsewhere() -> int | None:
        now = find(cluster)
        return now if now not in (victim, -1) else None

    return int(poll(elsewhere, LEADERSHIP_MOVES_SECONDS, f"{what} to move off node {victim}"))


def _survives_losing(
    cluster: Cluster, tenant: Tenant, job_id: str, find: Lookup, what: str
) -> None:
    """Kill ``what`` mid-job, see its role move to another node, check the job is exact, and
    bring the node back."""
    restarts_before = len(cluster.service.restarts)
    victim = _kill_mid_job(cluster, job_id, find, what)
    try:
        _moved(cluster, find, victim, what)
        assert_exact(cluster.settings, tenant, job_id, TOTAL, timeout=240)
    finally:
        start_kafka_node(cluster.config, victim)
    _assert_no_crash(cluster, restarts_before)


def _assert_no_crash(cluster: Cluster, restarts_before: int) -> None:
    new = cluster.service.restarts[restarts_before:]
    assert all(code == STALL_RESTART for _, code in new), f"workers crashed: {new}"
    service = cluster.service
    assert service.gateway.alive() and all(worker.alive() for worker in service.workers)


def test_sigkill_the_leader_of_a_records_partition_mid_job(
    cluster: Cluster, cluster_tenant: Tenant
) -> None:
    topic = cluster.settings.topics.records

    def records_leader(c: Cluster) -> int:
        return c.leader(topic, 0)

    job_id = _start_job(cluster_tenant)
    _survives_losing(
        cluster, cluster_tenant, job_id, records_leader, "records partition 0's leader"
    )


def test_sigkill_the_group_coordinator_mid_job(cluster: Cluster, cluster_tenant: Tenant) -> None:
    assert cluster.coordinator() == cluster.described_coordinator()
    job_id = _start_job(cluster_tenant)
    _survives_losing(cluster, cluster_tenant, job_id, Cluster.coordinator, "the group coordinator")


def _high_watermarks(cluster: Cluster, topic: str) -> dict[int, int]:
    consumer = Consumer(
        {"bootstrap.servers": cluster.settings.kafka_bootstrap, "group.id": "t-watermarks"}
    )
    try:
        partitions = cluster.admin.list_topics(topic, timeout=10).topics[topic].partitions
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions
        }
    finally:
        consumer.close()


def test_sigkill_the_leader_of_the_jobs_requests_partition_mid_job(
    cluster: Cluster, cluster_tenant: Tenant
) -> None:
    """The job's request chunks sit on one ``bulk.requests`` partition (keyed by job id): the
    one whose end moved while it was submitted."""
    topic = cluster.settings.topics.requests
    before = _high_watermarks(cluster, topic)
    job_id = _start_job(cluster_tenant)
    after = _high_watermarks(cluster, topic)
    [partition] = [p for p in after if after[p] > before[p]]

    def requests_leader(c: Cluster) -> int:
        return c.leader(topic, partition)

    _survives_losing(cluster, cluster_tenant, job_id, requests_leader, "the requests leader")


def test_a_node_down_for_the_whole_job(cluster: Cluster, cluster_tenant: Tenant) -> None:
    """A graceful stop (controlled shutdown: leadership handed over first) of the node leading
    records partition 0; the job runs start to end on the other two."""
    restarts_before = len(cluster.service.restarts)
    absent = cluster.leader(cluster.settings.topics.records, 0)
    stop_kafka_node(cluster.config, absent)
    try:
        assert cluster.brokers() == {1, 2, 3} - {absent}
        job_id = _start_job(cluster_tenant)
        assert_exact(cluster.settings, cluster_tenant, job_id, TOTAL, timeout=240)
        assert cluster.brokers() == {1, 2, 3} - {absent}, "the node came back during the job"
        assert kafka_node_pid(cluster.config, absent) is None
    finally:
        start_kafka_node(cluster.config, absent)
    _assert_no_crash(cluster, restarts_before)
