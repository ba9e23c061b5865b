"""The stall watchdog sees a partition that lags and does not move, and nothing else."""

import time
import uuid

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from streams.watchdog import InFlight, StallWatch


def test_a_lagging_partition_that_does_not_move_is_reported(stack_settings):
    bootstrap = stack_settings.kafka_bootstrap
    topic = f"stall-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, b"waiting", partition=0)
    assert producer.flush(30) == 0

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
