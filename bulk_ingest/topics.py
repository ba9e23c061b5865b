"""Each Kafka topic as one object: its name, its codec and the type of its messages.

:class:`Topics` is built once per process from the settings (:meth:`Topics.load`) and its
topics are handed down to the code that produces or consumes them; nothing else loads a codec
or names a topic. The message classes are :mod:`domain.messages`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, Self, TypeVar

from bulk_ingest.kafka import OutgoingMessage
from bulk_ingest.schema_registry import NoRegistry, SchemaRegistry, WriterSchemas
from bulk_ingest.settings import Settings, TopicNames
from domain.codec import AvroCodec, Framing, load_codec
from domain.entities import default_schemas_dir
from domain.messages import (
    BulkRequestChunk,
    ImportRequested,
    JobEvent,
    JobProgressed,
    RecordBatch,
)
from domain.outcomes import Outcome


class AvroMessage(Protocol):
    def to_avro(self) -> Mapping[str, Any]: ...

    @classmethod
    def from_avro(cls, datum: Mapping[str, Any]) -> Self: ...


M = TypeVar("M", bound=AvroMessage)


@dataclass(frozen=True)
class Topic(Generic[M]):
    name: str
    codec: AvroCodec
    message_type: type[M]

    def encode(self, message: M) -> bytes:
        return self.codec.encode(message.to_avro())

    def decode(self, payload: bytes) -> M:
        """The message; raises :class:`domain.codec.UndecodableMessage` for the dead letters."""
        return self.message_type.from_avro(self.codec.decode(payload))

    def datum(self, payload: bytes) -> dict[str, Any]:
        """The decoded datum itself, for a reader that checks every field (``bulk.requests``)."""
        return self.codec.decode(payload)

    def message(self, message: M, key: str | None, partition: int | None = None) -> OutgoingMessage:
        return self.encoded(self.encode(message), key, partition)

    def encoded(
        self, payload: bytes, key: str | None, partition: int | None = None
    ) -> OutgoingMessage:
        """An already encoded message (encoded early, or sized before it was sent)."""
        return OutgoingMessage(
            self.name, payload, key.encode() if key is not None else None, partition=partition
        )


@dataclass(frozen=True)
class Codecs:
    """One codec per schema family in ``schemas/topics`` (every version of each)."""

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


@dataclass(frozen=True)
class Topics:
    requests: Topic[BulkRequestChunk]
    records: Topic[RecordBatch]
    outcomes: Topic[Outcome]
    jobs: Topic[JobEvent]
    progress: Topic[JobProgressed]
    imports: Topic[ImportRequested]
    dlq: str  # dead letters keep the failed message's bytes and say why in headers
    writer_schemas: WriterSchemas = field(default_factory=NoRegistry)
    """Where a stage learns the writer schemas of Confluent-framed payloads (a registry)."""

    @classmethod
    def load(cls, settings: Settings) -> Topics:
        return cls.bind(settings.topics, *load_codecs(settings))

    @classmethod
    def bind(
        cls, names: TopicNames, codecs: Codecs, writer_schemas: WriterSchemas | None = None
    ) -> Topics:
        return cls(
            requests=Topic(names.requests, codecs.requests, BulkRequestChunk),
            records=Topic(names.records, codecs.records, RecordBatch),
            outcomes=Topic(names.outcomes, codecs.outcomes, Outcome),
            jobs=Topic(names.jobs, codecs.jobs, JobEvent),
            progress=Topic(names.progress, codecs.progress, JobProgressed),
            imports=Topic(names.imports, codecs.imports, ImportRequested),
            dlq=names.dlq,
            writer_schemas=writer_schemas or NoRegistry(),
        )


def load_codecs(settings: Settings) -> tuple[Codecs, WriterSchemas]:
    """Every topic's codec; with a Schema Registry configured, every schema registered and every
    codec taught its ids first (:mod:`bulk_ingest.schema_registry`), and the registry returned
    for the writer schemas still to learn."""
    codecs = Codecs.load(default_schemas_dir())
    if not settings.schema_registry_url:
        return codecs, NoRegistry()
    registry = SchemaRegistry(settings.schema_registry_url)
    names = settings.topics
    registry.register(
        [
            (names.requests, codecs.requests),
            (names.records, codecs.records),
            (names.outcomes, codecs.outcomes),
            (names.jobs, codecs.jobs),
            (names.progress, codecs.progress),
            (names.imports, codecs.imports),
        ],
        framed=(names.outcomes, names.jobs),
        framing=Framing(settings.event_framing),
    )
    return codecs, registry
