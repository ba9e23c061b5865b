"""An example downstream consumer of ``bulk.outcomes``: at-least-once in, exact tally out.

``bulk.outcomes`` (and ``bulk.jobs``) are **at-least-once**: when a worker dies after writing a
batch but before its Kafka offsets moved, the batch is processed again and its outcome events
are produced again — byte-identical, because they are re-read from the outcome ledger. A
consumer that counts events therefore dedupes on ``(job_id, index)`` (for ``bulk.jobs``:
``(job_id, status)``). This one keeps a per-job tally that equals the job's counts in
``GET /api/v1/jobs/{id}``, however many times an event arrived.

The set of seen keys lives in memory here, to keep the example short; a real consumer keeps it
where it keeps its results (a table with primary key ``(job_id, index)`` and ``INSERT ... ON
CONFLICT DO NOTHING``) and commits its Kafka offsets after that write.

    python examples/outcome_tally.py --bootstrap 127.0.0.1:9092 --topic bulk.outcomes
"""

from __future__ import annotations

import argparse
import json
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from domain.codec import AvroCodec, load_codec

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
SUCCESSFUL = frozenset({"CREATED", "UPDATED", "UNCHANGED"})


class OutcomeTally:
    """Per-job counts of distinct outcome events."""

    def __init__(self) -> None:
        self._seen: set[tuple[str, int]] = set()
        self._counts: dict[str, Counter[str]] = defaultdict(Counter)
        self.events = 0  # every event read, duplicates included
        self.duplicates: Counter[str] = Counter()  # per job: events seen before

    def add(self, event: Mapping[str, Any]) -> bool:
        """Count one event; False (and nothing counted) when it was seen before."""
        self.events += 1
        key = (str(event["job_id"]), int(event["index"]))
        if key in self._seen:
            self.duplicates[key[0]] += 1
            return False
        self._seen.add(key)
        self._counts[key[0]][str(event["status"])] += 1
        return True

    def counts(self, job_id: str) -> dict[str, int]:
        """The job's counts as the job object spells them."""
        by_status = self._counts.get(job_id, Counter())
        successful = sum(n for status, n in by_status.items() if status in SUCCESSFUL)
        failed, skipped = by_status["FAILED"], by_status["SKIPPED"]
        return {
            "processed": successful + failed + skipped,
            "successful": successful,
            "failed": failed,
            "skipped": skipped,
        }

    def jobs(self) -> Iterable[str]:
        return self._counts.keys()


def read_topic(bootstrap: str, topic: str, tally: OutcomeTally, codec: AvroCodec) -> None:
    """Every event on ``topic`` from its beginning to its current end, into ``tally``."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"outcome-tally-{uuid.uuid4()}",
            "enable.auto.commit": False,
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions
        }
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        position = {p: 0 for p in partitions}
        while any(position[p] < ends[p] for p in partitions):
            for message in consumer.consume(5000, timeout=1):
                if message.error():
                    continue
                position[message.partition()] = message.offset() + 1
                tally.add(codec.decode(message.value()))
    finally:
        consumer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--topic", default="bulk.outcomes")
    args = parser.parse_args()
    tally = OutcomeTally()
    read_topic(args.bootstrap, args.topic, tally, load_codec(SCHEMAS, "bulk.outcomes"))
    for job_id in tally.jobs():
        print(json.dumps({"job_id": job_id, **tally.counts(job_id)}))
    print(json.dumps({"events": tally.events, "duplicates": sum(tally.duplicates.values())}))


if __name__ == "__main__":
    main()
