"""The rendered ``server.properties`` of the local stack's Kafka nodes (no broker started)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bulk_ingest.replication import replication_for
from stack.config import StackConfig
from stack.kafka import render_config_files


def _properties(brokers: int, node: int = 0) -> dict[str, str]:
    config = StackConfig(
        state_dir=Path("/nonexistent"), cache_dir=Path("/nonexistent"), kafka_brokers=brokers
    )
    server, _ = render_config_files(config, config.kafka_nodes[node])
    pairs = (line.split("=", 1) for line in server.splitlines() if line and line[0] != "#")
    return dict(pairs)


def test_a_lone_node_does_not_fence_itself_after_a_pause() -> None:
    """A SIGSTOPped lone broker (the benchmark pauses it) resumed after tens of seconds must
    not find its own session expired: it would leave every partition leaderless."""
    assert int(_properties(1)["broker.session.timeout.ms"]) >= 120_000


@pytest.mark.parametrize("brokers", [2, 3])
def test_cluster_nodes_fence_a_dead_node_within_6_seconds(brokers: int) -> None:
    for node in range(brokers):
        properties = _properties(brokers, node)
        assert properties["broker.session.timeout.ms"] == "6000"
        assert properties["node.id"] == str(node + 1)
        assert properties["default.replication.factor"] == str(replication_for(brokers).factor)
        assert properties["min.insync.replicas"] == str(replication_for(brokers).min_insync)


def test_every_placeholder_is_filled() -> None:
    for brokers in (1, 3):
        assert not [v for v in _properties(brokers).values() if "${" in v]
