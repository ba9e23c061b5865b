"""The local stack against the real thing: a Kafka broker run from Maven Central jars and the
machine's PostgreSQL cluster.

The tests use their own state folder and non-default Kafka ports, so a developer's stack on
9092/9093 keeps running; they share the jar cache and the PostgreSQL cluster with it. Missing
java, Maven or PostgreSQL makes ``stack_up`` raise, so these tests fail rather than skip.
Tests run in file order: the last one takes the stack down.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import Consumer, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from stack import (
    StackConfig,
    StackError,
    StackStatus,
    kafka_pid,
    restart_kafka,
    stack_down,
    stack_status,
    stack_up,
)
from stack.process import is_alive, poll_until, port_is_open

pytestmark = pytest.mark.integration

TEST_KAFKA_PORT = 19192
TEST_KAFKA_CONTROLLER_PORT = 19193
DEADLINE_SECONDS = 30.0


@dataclass(frozen=True)
class StackRun:
    config: StackConfig
    first: StackStatus
    second: StackStatus
    second_seconds: float
    second_log: list[str]


@pytest.fixture(scope="module")
def stack_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackRun]:
    config = StackConfig(
        state_dir=tmp_path_factory.mktemp("stack-state"),
        cache_dir=Path.home() / ".cache" / "bulk-ingest",
        kafka_port=TEST_KAFKA_PORT,
        kafka_controller_port=TEST_KAFKA_CONTROLLER_PORT,
    )
    first = stack_up(config)
    second_log: list[str] = []
    began = time.monotonic()
    second = stack_up(config, log=second_log.append)
    second_seconds = time.monotonic() - began
    yield StackRun(config, first, second, second_seconds, second_log)
    stack_down(config)  # safety net when a test fails before the last one; harmless twice


def test_second_up_reuses_the_running_services(stack_run: StackRun) -> None:
    assert stack_run.second.kafka.pid == stack_run.first.kafka.pid
    assert stack_run.second.postgres.pid == stack_run.first.postgres.pid
    assert all("already running" in line for line in stack_run.second_log), stack_run.second_log
    # Loose bound: a second `up` only checks, it must never boot a JVM again.
    assert stack_run.second_seconds < 5.0


def test_status_reports_both_services_running(stack_run: StackRun) -> None:
    status = stack_status(stack_run.config)

    assert status.kafka.running and status.kafka.started_by_stack
    assert status.kafka.pid == kafka_pid(stack_run.config) == stack_run.first.kafka.pid
    assert status.kafka.address == f"127.0.0.1:{TEST_KAFKA_PORT}"
    assert status.postgres.running
    assert status.postgres.address == "127.0.0.1:5432"
    assert status.all_running


def test_broker_serves_topics_and_consumer_groups(stack_run: StackRun) -> None:
    bootstrap = stack_run.config.kafka_bootstrap
    topic = f"stack-test-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result(
        timeout=DEADLINE_SECONDS
    )
    # Created means the controller has it; the broker's metadata follows a moment later (once,
    # in CI, the first answer listed no topic at all).
    listed = poll_until(lambda: topic in admin.list_topics(timeout=10).topics, DEADLINE_SECONDS)
    assert listed, f"{topic} is not in the broker's metadata"

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    producer.produce(topic, key=b"k", value=b"hello")
    assert producer.flush(DEADLINE_SECONDS) == 0

    received = _consume_one(bootstrap, topic)
    assert received.value() == b"hello"


def _consume_one(bootstrap: str, topic: str) -> Message:
    """Join a fresh consumer group (needs the group coordinator) and read one message."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"stack-test-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    messages: list[Message] = []

    def got_one() -> bool:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            messages.append(message)
        return bool(messages)

    try:
        assert poll_until(got_one, DEADLINE_SECONDS), "no message consumed before the deadline"
    finally:
        consumer.close()
    return messages[0]


def test_postgres_accepts_the_configured_role(stack_run: StackRun) -> None:
    config = stack_run.config
    with psycopg.connect(
        host=config.pg_host,
        port=config.pg_port,
        user=config.pg_user,
        password=config.pg_password,
        dbname=config.pg_database,
    ) as connection:
        table = f"stack_test_{uuid.uuid4().hex[:8]}"
        connection.execute(f"CREATE TEMP TABLE {table} (id int)")
        row = connection.execute("SELECT current_user, current_database()").fetchone()

    assert row == (config.pg_user, config.pg_database)


def test_up_refuses_ports_served_by_a_broker_it_did_not_start(
    stack_run: StackRun, tmp_path: Path
) -> None:
    stranger = StackConfig(
        state_dir=tmp_path / "other-state",
        cache_dir=stack_run.config.cache_dir,
        kafka_port=TEST_KAFKA_PORT,
        kafka_controller_port=TEST_KAFKA_CONTROLLER_PORT,
    )

    with pytest.raises(StackError, match="did not start"):
        stack_up(stranger, log=lambda _: None)

    assert kafka_pid(stack_run.config) == stack_run.first.kafka.pid


def test_restart_kafka_replaces_the_broker_and_waits_until_ready(stack_run: StackRun) -> None:
    config = stack_run.config
    old_pid = kafka_pid(config)

    restart_kafka(config)

    new_pid = kafka_pid(config)
    assert old_pid is not None and new_pid is not None and new_pid != old_pid
    assert not is_alive(old_pid)
    metadata = AdminClient({"bootstrap.servers": config.kafka_bootstrap}).list_topics(timeout=10)
    assert metadata.brokers


def test_down_stops_kafka_and_only_a_postgres_it_started(stack_run: StackRun) -> None:
    config = stack_run.config
    broker_pid = kafka_pid(config)
    assert broker_pid is not None

    stack_down(config)

    assert poll_until(lambda: not is_alive(broker_pid), DEADLINE_SECONDS)
    assert kafka_pid(config) is None
    assert not port_is_open(config.kafka_host, config.kafka_port)
    postgres = stack_status(config).postgres
    assert postgres.running is not stack_run.first.postgres.started_by_stack
