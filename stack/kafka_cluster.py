"""The stack's Kafka: one node, or a cluster of combined broker+controller nodes on loopback.

``StackConfig.kafka_brokers`` says how many. A cluster's nodes share one cluster id (kept in
``state_dir/kafka-cluster/cluster.id``) and a static controller quorum of all of them, so any
one node can be lost — the controller too — and the others carry on. They start together (a
quorum needs a majority to elect a controller, so no node can become ready alone) and are ready
once the cluster's metadata lists every one of them.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

from confluent_kafka import KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # exported, not in __all__
    AdminClient,
    ClusterMetadata,
)

from stack import kafka
from stack.config import BrokerNode, ServiceStatus, StackConfig, StackError
from stack.kafka import KafkaLaunch
from stack.kafka_ids import cluster_id_for
from stack.process import is_alive, poll_until, port_is_open

READY_TIMEOUT_SECONDS = 90.0
"""Three JVMs booting at once on two cores take longer than one."""

Log = Callable[[str], None]


def node(config: StackConfig, node_id: int) -> BrokerNode:
    for candidate in config.kafka_nodes:
        if candidate.node_id == node_id:
            return candidate
    raise StackError(f"there is no Kafka node {node_id}: the stack runs {config.kafka_brokers}")


def node_name(config: StackConfig, broker: BrokerNode) -> str:
    return "kafka" if config.kafka_brokers == 1 else f"kafka-{broker.node_id}"


# --- start -------------------------------------------------------------------------------------


def launch(
    config: StackConfig, log: Log, nodes: Sequence[BrokerNode] | None = None
) -> list[KafkaLaunch]:
    """Start every node (or just ``nodes``) that is not running; does not wait for readiness."""
    wanted = config.kafka_nodes if nodes is None else nodes
    if not wanted:
        return []
    cluster_id = cluster_id_for(config)
    return [kafka.launch(config, broker, cluster_id, log) for broker in wanted]


def wait_ready(config: StackConfig, launches: Sequence[KafkaLaunch], log: Log) -> None:
    """Block until every launched node is registered with the cluster (and, in a cluster, every
    partition has all its replicas in sync again); fail with the log tail of a node that dies or
    of the first one missing when READY_TIMEOUT_SECONDS pass."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    for launched in launches:
        if not _wait_for_port(launched, deadline):
            _raise_not_ready(launched)
    admin = _admin(config)
    wanted = {launched.node.node_id for launched in launches}

    def ready_or_dead() -> bool:
        if any(not is_alive(launched.pid) for launched in launches):
            return True
        metadata = _metadata(admin)
        return metadata is not None and _ready(config, metadata, wanted)

    poll_until(ready_or_dead, deadline - time.monotonic())
    metadata = _metadata(admin)
    for launched in launches:
        missing = metadata is None or launched.node.node_id not in metadata.brokers
        if not is_alive(launched.pid) or missing:
            _raise_not_ready(launched)
    if metadata is None or not _ready(config, metadata, wanted):
        raise StackError(
            f"the Kafka cluster's partitions did not get all their replicas back in sync within "
            f"{READY_TIMEOUT_SECONDS:.0f} s; see the nodes' logs under {config.kafka_cluster_dir}"
        )
    for launched in launches:
        elapsed = time.monotonic() - launched.started_at
        verb = "ready" if launched.started_now else "already running"
        log(
            f"{node_name(config, launched.node)} {config.kafka_version} {verb} on "
            f"{launched.node.address} (pid {launched.pid}, {elapsed:.1f} s)"
        )


def _wait_for_port(launched: KafkaLaunch, deadline: float) -> bool:
    broker = launched.node

    def open_or_dead() -> bool:
        return not is_alive(launched.pid) or port_is_open(broker.host, broker.port)

    return poll_until(open_or_dead, deadline - time.monotonic()) and is_alive(launched.pid)


def _admin(config: StackConfig) -> AdminClient:
    return AdminClient(
        {
            "bootstrap.servers": config.kafka_bootstrap,
            "reconnect.backoff.max.ms": 500,
            "log_level": 0,  # connection errors while nodes start (or are down) are expected
        }
    )


def _metadata(admin: AdminClient) -> ClusterMetadata | None:
    try:
        return admin.list_topics(timeout=2)
    except KafkaException:
        return None


def _ready(config: StackConfig, metadata: ClusterMetadata, wanted: set[int]) -> bool:
    """The wanted nodes are registered; in a cluster every partition is fully replicated too,
    so a node brought back can be lost again at once without a partition going below its
    ``min.insync.replicas``."""
    registered = wanted <= set(metadata.brokers)
    return registered and (config.kafka_brokers == 1 or _all_in_sync(metadata))


def _all_in_sync(metadata: ClusterMetadata) -> bool:
    return all(
        partition.leader >= 0 and set(partition.isrs) == set(partition.replicas)
        for topic in metadata.topics.values()
        for partition in topic.partitions.values()
    )


def _raise_not_ready(launched: KafkaLaunch) -> None:
    what = (
        "exited"
        if not is_alive(launched.pid)
        else f"did not join the cluster within {READY_TIMEOUT_SECONDS:.0f} s"
    )
    raise StackError(
        f"kafka node {launched.node.node_id} (pid {launched.pid}) {what}. "
        f"{kafka.log_tails(launched.node)}\n"
        "Fix the cause above and run `bulk-ingest stack up` again "
        "(`bulk-ingest stack down` first if the process is still alive)."
    )


def start(config: StackConfig, log: Log, nodes: Sequence[BrokerNode] | None = None) -> None:
    """Start every node (or ``nodes``) if needed and wait until it is ready."""
    wait_ready(config, launch(config, log, nodes), log)


# --- stop and status ---------------------------------------------------------------------------


def stop(config: StackConfig, log: Log, *, hard: bool = False) -> bool:
    """Stop every node this state folder started — of this broker count and of any other one
    still running (``stack down`` after ``stack up --brokers 3`` needs no ``--brokers``).

    Returns whether there was any to stop. The nodes stop together: one by one, the last would
    wait out its grace period for a controlled shutdown that a lost quorum can no longer grant.
    """
    nodes = _every_recorded_node(config)
    with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
        stopped = list(pool.map(lambda broker: kafka.stop(broker, log, hard=hard), nodes))
    return any(stopped)


def _every_recorded_node(config: StackConfig) -> list[BrokerNode]:
    layouts = [config, *_other_running_layouts(config)]
    seen: dict[str, BrokerNode] = {}
    for layout in layouts:
        for broker in layout.kafka_nodes:
            seen.setdefault(str(broker.directory), broker)
    return list(seen.values())


def _other_running_layouts(config: StackConfig) -> Iterable[StackConfig]:
    single = dataclasses.replace(config, kafka_brokers=1)
    if config.kafka_brokers != 1 and kafka.has_pid_file(single.kafka_nodes[0]):
        yield single
    recorded = sorted(config.kafka_cluster_dir.glob("node-*/kafka.pid"))
    count = max((int(path.parent.name.split("-")[1]) for path in recorded), default=0)
    if count > 1 and count != config.kafka_brokers:
        yield dataclasses.replace(config, kafka_brokers=count)


def effective(config: StackConfig) -> StackConfig:
    """``config``, or the layout actually running when ``config``'s nodes are not (the status of
    a cluster, asked without ``--brokers``)."""
    if any(kafka.has_pid_file(broker) for broker in config.kafka_nodes):
        return config
    return next(iter(_other_running_layouts(config)), config)


def status(config: StackConfig) -> tuple[ServiceStatus, ...]:
    shown = effective(config)
    return tuple(kafka.status(shown, b, node_name(shown, b)) for b in shown.kafka_nodes)


def unexpected_death(config: StackConfig) -> str | None:
    """How a node this stack started died without being stopped, if one did."""
    deaths = [kafka.unexpected_death(broker) for broker in config.kafka_nodes]
    return "\n".join(death for death in deaths if death) or None
