"""The pinned faust-streaming + aiokafka read what confluent-kafka wrote, on the pinned broker."""

import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from bulk_ingest.settings import REPO_ROOT
from domain.codec import load_codec
from domain.entities import default_schemas_dir


def _job_event(job_id: str, status: str) -> dict:
    now = datetime.now(UTC)
    return {
        "job_id": job_id,
        "tenant_id": "t",
        "entity": "customers",
        "operation": "insert",
        "source": "kafka",
        "status": status,
        "total": 3,
        "processed": 3,
        "successful": 3,
        "failed": 0,
        "skipped": 0,
        "webhook_url": None,
        "created_at": now,
        "started_at": now,
        "completed_at": now,
        "updated_at": now,
    }


def test_avro_event_from_confluent_kafka_reaches_a_faust_agent(stack_settings, tmp_path):
    bootstrap = stack_settings.kafka_bootstrap
    topic = f"probe-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(30)
    codec = load_codec(default_schemas_dir(), "bulk.jobs")
    jobs = [(str(uuid.uuid4()), s) for s in ("STARTED", "COMPLETED", "COMPLETED_WITH_ERRORS")]
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for job_id, status in jobs:
        producer.produce(topic, key=job_id.encode(), value=codec.encode(_job_event(job_id, status)))
    assert producer.flush(30) == 0

    probe = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "tests/integration/faust_probe.py"),
            bootstrap,
            topic,
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
        env={"PYTHONPATH": str(REPO_ROOT), "PROBE_DATADIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    # Faust's terminal spinner may share a line with ours: take the JSON object from each line.
    received = [
        json.loads(line[line.index("{") :]) for line in probe.stdout.splitlines() if "{" in line
    ]
    assert sorted((r["job_id"], r["status"]) for r in received) == sorted(jobs)
