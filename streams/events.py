"""The messages the workers produce, each built in one place with its topic's codec."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bulk_ingest.kafka import OutgoingMessage
from bulk_ingest.settings import TopicNames
from domain.codec import AvroCodec, load_codec
from domain.outcomes import Outcome
from domain.routing import routing_key


@dataclass(frozen=True)
class Codecs:
    """One codec per topic the workers read or write."""

    requests: AvroCodec
    records: AvroCodec
    outcomes: AvroCodec
    jobs: AvroCodec
    progress: AvroCodec
    imports: AvroCodec

    @classmethod
    def load(cls, schemas_dir: Path) -> Codecs:
        return cls(
            requests=load_codec(schemas_dir, "bulk.requests"),
            records=load_codec(schemas_dir, "bulk.records"),
            outcomes=load_codec(schemas_dir, "bulk.outcomes"),
            jobs=load_codec(schemas_dir, "bulk.jobs"),
            progress=load_codec(schemas_dir, "bulk.progress"),
            imports=load_codec(schemas_dir, "bulk.imports"),
        )


def outcome_event(outcome: Outcome) -> dict[str, Any]:
    """The ``RecordOutcome`` payload of one outcome (schemas/topics/bulk.outcomes)."""
    return {
        "job_id": outcome.job_id,
        "tenant_id": outcome.tenant_id,
        "entity": outcome.entity,
        "index": outcome.index,
        "key": outcome.key,
        "status": outcome.status.value,
        "record_id": outcome.record_id,
        "error_code": outcome.error_code,
        "error_message": outcome.error_message,
        "error_field": outcome.error_field,
        "line": outcome.line,
    }


@dataclass(frozen=True)
class Announcer:
    """Builds outcome events and the aggregator's progress nudges."""

    codecs: Codecs
    topics: TopicNames

    def encode_outcome(self, outcome: Outcome) -> bytes:
        return self.codecs.outcomes.encode(outcome_event(outcome))

    def outcome_message(self, outcome: Outcome, payload: bytes | None = None) -> OutgoingMessage:
        key = routing_key(outcome.tenant_id, outcome.entity, outcome.key, outcome.index)
        return OutgoingMessage(
            self.topics.outcomes, payload or self.encode_outcome(outcome), key.encode()
        )

    def outcome_messages(self, outcomes: Iterable[Outcome]) -> list[OutgoingMessage]:
        return [self.outcome_message(o) for o in outcomes]

    def progress_nudge(self, job_id: str, tenant_id: str, part_id: str) -> OutgoingMessage:
        """Tells the aggregator to recount a job (it reads the counts from the database)."""
        payload = {"job_id": job_id, "tenant_id": tenant_id, "total": 0, "part_id": part_id}
        return OutgoingMessage(
            self.topics.progress, self.codecs.progress.encode(payload), job_id.encode()
        )
