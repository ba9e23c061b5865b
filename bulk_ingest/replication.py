"""How many copies of every topic the cluster keeps, derived from its number of brokers.

One rule for every topic we touch — ours, Faust's changelogs and the brokers' internal ones
(consumer offsets, transaction state): three copies once there are three brokers, and a write
is acknowledged (``acks=all``) once two of them have it, so one broker can be lost at any time
without losing an acknowledged record or stopping writes. Fewer brokers get what they can hold.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_REPLICATION_FACTOR = 3
"""More copies cost disk and network and survive no failure that matters on loopback or in one
rack; three is what Kafka's own production guidance uses."""


@dataclass(frozen=True)
class Replication:
    factor: int
    """``replication.factor``: copies of each partition."""
    min_insync: int
    """``min.insync.replicas``: copies that must have a write before ``acks=all`` returns."""


def replication_for(brokers: int) -> Replication:
    """1 broker → 1/1, 2 → 2/1, 3 or more → 3/2 (factor / min in-sync)."""
    if brokers < 1:
        raise ValueError(f"a Kafka cluster has at least one broker, not {brokers}")
    factor = min(MAX_REPLICATION_FACTOR, brokers)
    return Replication(factor=factor, min_insync=max(1, factor - 1))
