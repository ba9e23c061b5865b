"""The messages every stage may announce: record outcomes and the aggregator's nudges."""

from __future__ import annotations

from collections.abc import Iterable

from bulk_ingest.kafka import OutgoingMessage
from bulk_ingest.settings import TopicNames
from bulk_ingest.topics import Codecs, Topics
from domain.messages import JobProgressed
from domain.outcomes import Outcome
from domain.routing import routing_key


class Announcer:
    """Outcome events on ``bulk.outcomes`` and progress nudges on ``bulk.progress``."""

    def __init__(self, codecs: Codecs, names: TopicNames) -> None:
        topics = Topics.bind(names, codecs)
        self._outcomes = topics.outcomes
        self._progress = topics.progress

    def encode_outcome(self, outcome: Outcome) -> bytes:
        return self._outcomes.encode(outcome)

    def outcome_message(self, outcome: Outcome, payload: bytes | None = None) -> OutgoingMessage:
        """The outcome's event, keyed like its record (``payload`` when encoded already)."""
        key = routing_key(outcome.tenant_id, outcome.entity, outcome.key, outcome.index)
        return self._outcomes.encoded(payload or self.encode_outcome(outcome), key)

    def outcome_messages(self, outcomes: Iterable[Outcome]) -> list[OutgoingMessage]:
        return [self.outcome_message(o) for o in outcomes]

    def progress_nudge(self, job_id: str, tenant_id: str, sender: str) -> OutgoingMessage:
        """Tells the aggregator to recount a job (it reads the counts from the database)."""
        return self._progress.message(JobProgressed.nudge(job_id, tenant_id, sender), job_id)
