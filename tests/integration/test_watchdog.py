"""The stall watchdog sees a partition that lags and does not move, and nothing else."""

import time
import uuid

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from streams.watchdog import InFlight, StallWatch


def _topic_of_two_partitions(bootstrap: str, prefix: str, waiting: dict[int, bytes]) -> str:
    """A new topic of two partitions, with one message already on each partition of
    ``waiting``."""
    topic = f"{prefix}-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": bootstrap})
    for partition, value in waiting.items():
        producer.produce(topic, value, partition=partition)
    assert producer.flush(30) == 0
    return topic


def test_a_lagging_partition_that_does_not_move_is_reported(stack_settings):
    bootstrap = stack_settings.kafka_bootstrap
    topic = _topic_of_two_partitions(bootstrap, "stall", {0: b"waiting"})

    watch = StallWatch(bootstrap, f"group-{uuid.uuid4().hex[:6]}", stall_seconds=0.2)
    owned = [(topic, 0), (topic, 1)]
    in_flight = InFlight()
    try:
        assert watch.stalled(owned, in_flight) == []  # first look: nothing to compare with
        time.sleep(0.3)  # the condition under test is time passing without progress
        in_flight.begin(topic, 0)
        assert watch.stalled(owned, in_flight) == []  # busy partitions are not stalled
        in_flight.end(topic, 0)  # activity resets the clock, as being busy does
        assert watch.stalled(owned, in_flight) == []
        time.sleep(0.3)
        stalls = watch.stalled(owned, in_flight)
        assert [str(s) for s in stalls] == [f"{topic}[0] at 0 of 1"]  # the empty [1] is fine
    finally:
        watch.close()


def test_a_partition_waiting_behind_a_slow_event_of_its_topic_is_not_stalled(stack_settings):
    """One agent reads every partition of a topic: while it works on one event for a whole
    stall period (a batch waiting on a row lock), the others wait their turn. Restarting the
    worker would not cure that, and its rebalance would pause every worker. An event begun
    only just now excuses nothing: under load the agent is nearly always busy."""
    bootstrap = stack_settings.kafka_bootstrap
    topic = _topic_of_two_partitions(bootstrap, "behind", {0: b"slow", 1: b"waiting its turn"})

    watch = StallWatch(bootstrap, f"group-{uuid.uuid4().hex[:6]}", stall_seconds=0.2)
    owned = [(topic, 0), (topic, 1)]
    in_flight = InFlight()
    try:
        assert watch.stalled(owned, in_flight) == []  # first look: nothing to compare with
        time.sleep(0.3)  # the condition under test is time passing without progress
        in_flight.begin(topic, 0)
        stalls = watch.stalled(owned, in_flight)
        assert [str(s) for s in stalls] == [f"{topic}[1] at 0 of 1"]  # [0]'s event is new
        time.sleep(0.3)
        assert watch.stalled(owned, in_flight) == []  # [1] waits behind [0]'s slow event
        in_flight.end(topic, 0)
        time.sleep(0.3)
        stalls = watch.stalled(owned, in_flight)
        assert [str(s) for s in stalls] == [f"{topic}[0] at 0 of 1", f"{topic}[1] at 0 of 1"]
    finally:
        watch.close()


def test_the_quiet_that_counts_starts_when_the_partition_begins_to_lag(stack_settings):
    """A partition read to its end long ago that gets a message while the agent has just begun
    a slow event is not stalled at once: it has waited only since the message came, not since
    its offset last moved (once, in CI, that early verdict sought the partition back, and the
    worker exited after the second)."""
    bootstrap = stack_settings.kafka_bootstrap
    topic = _topic_of_two_partitions(bootstrap, "lag", {})
    producer = Producer({"bootstrap.servers": bootstrap})

    watch = StallWatch(bootstrap, f"group-{uuid.uuid4().hex[:6]}", stall_seconds=0.2)
    owned = [(topic, 0), (topic, 1)]
    in_flight = InFlight()
    try:
        assert watch.stalled(owned, in_flight) == []  # nothing to read anywhere
        time.sleep(0.3)  # the condition under test is time passing without progress
        in_flight.begin(topic, 0)
        producer.produce(topic, b"now waiting", partition=1)
        assert producer.flush(30) == 0
        assert watch.stalled(owned, in_flight) == []  # [1] lags only from now
        time.sleep(0.3)
        assert watch.stalled(owned, in_flight) == []  # and waits behind [0]'s slow event
        in_flight.end(topic, 0)
        time.sleep(0.3)
        stalls = watch.stalled(owned, in_flight)
        assert [str(s) for s in stalls] == [f"{topic}[1] at 0 of 1"]
    finally:
        watch.close()
