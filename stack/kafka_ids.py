"""Kafka cluster ids: what ``kafka-storage random-uuid`` prints, and the one a cluster shares."""

from __future__ import annotations

import base64
import uuid

from stack.config import StackConfig


def new_cluster_id() -> str:
    """URL-safe base64 of a v4 UUID, made without a JVM."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):  # Kafka rejects ids that look like command-line flags
            return text


def cluster_id_for(config: StackConfig) -> str:
    """A single node gets a fresh id whenever its storage is formatted; a cluster's nodes share
    the one in ``kafka_cluster_dir/cluster.id``, written the first time."""
    if config.kafka_brokers == 1:
        return new_cluster_id()
    path = config.kafka_cluster_dir / "cluster.id"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(new_cluster_id() + "\n")
    return path.read_text().strip()
