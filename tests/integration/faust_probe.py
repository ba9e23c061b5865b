"""A minimal Faust agent run as a subprocess by test_kafka_faust.py.

Consumes Avro single-object-encoded JobEvents from one topic, prints each decoded event as a JSON
line on stdout, and exits after the expected count.
"""

import json
import os
import sys

import faust

from domain.codec import load_codec
from domain.entities import default_schemas_dir

bootstrap, topic_name, expected = sys.argv[1], sys.argv[2], int(sys.argv[3])
codec = load_codec(default_schemas_dir(), "bulk.jobs")
app = faust.App(
    f"faust-probe-{topic_name}",
    broker=f"kafka://{bootstrap}",
    store="memory://",
    web_enabled=False,
    consumer_auto_offset_reset="earliest",
    datadir=os.environ.get("PROBE_DATADIR", "/tmp/faust-probe"),
)
topic = app.topic(topic_name, key_type=bytes, value_type=bytes, value_serializer="raw")
seen = 0


@app.agent(topic)
async def collect(stream):
    global seen
    async for value in stream:
        event = codec.decode(value)
        line = json.dumps({"job_id": event["job_id"], "status": event["status"]}) + "\n"
        os.write(1, line.encode())  # Faust redirects print() into its logger
        seen += 1
        if seen >= expected:
            os._exit(0)


if __name__ == "__main__":
    sys.argv = [sys.argv[0], "worker", "-l", "warn"]
    app.main()
