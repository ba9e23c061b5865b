"""The Schema Registry adapter, used when ``BULK_INGEST_SCHEMA_REGISTRY_URL`` is set.

Any Confluent-compatible registry will do (Confluent's, Karapace, Apicurio's ``ccompat`` API):
only the standard client of ``confluent-kafka`` is used.

- :meth:`SchemaRegistry.register` — at start-up, every process registers each topic's schema
  versions, oldest first, under ``<topic>-value`` (TopicNameStrategy), with ``BACKWARD``
  compatibility set on the subject, and teaches each codec the ids (registering a schema the
  registry has already is how its id is found). With ``BULK_INGEST_EVENT_FRAMING=confluent``
  the outcome and job events are then written in the Confluent wire format.
- :meth:`SchemaRegistry.learn_writers` — before a stage decodes Confluent-framed payloads, the
  writer schemas of ids its codec does not know are fetched (then cached in the codec). An id
  the registry does not have stays unknown, so decoding dead-letters the message
  (``unknown-schema-id``); a registry that cannot be reached is :class:`RegistryUnavailable`,
  a transient failure the stage runner retries.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import Protocol

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, SchemaRegistryError

# The HTTP library the client itself uses (httpx2 where installed, else httpx): its transport
# errors (refused, reset, timed out) are what "the registry cannot be reached" looks like.
from confluent_kafka.schema_registry.common._httpx_compat import httpx
from confluent_kafka.schema_registry.schema_registry_client import (
    ConfigCompatibilityLevel,
    ServerConfig,
)
from fastavro import parse_schema

from domain.codec import AvroCodec, Framing, confluent_schema_id

log = logging.getLogger("bulk_ingest.schema_registry")

COMPATIBILITY = ConfigCompatibilityLevel.BACKWARD
START_TIMEOUT_SECONDS = 60.0
REQUEST_TIMEOUT_SECONDS = 10.0
NOT_FOUND = 404
CONFLICT = 409


class RegistryUnavailable(ConnectionError):
    """The registry cannot be reached or answers 5xx: retry later (a transient failure)."""


def subject_of(topic: str) -> str:
    """TopicNameStrategy: the subject of a topic's values."""
    return f"{topic}-value"


class SchemaRegistry:
    def __init__(self, url: str) -> None:
        self.url = url
        self._client = SchemaRegistryClient({"url": url, "timeout": REQUEST_TIMEOUT_SECONDS})

    def register(
        self, codecs: Iterable[tuple[str, AvroCodec]], framed: Iterable[str], framing: Framing
    ) -> None:
        """Register every version of each ``(topic, codec)`` and teach the codec the ids; the
        codecs of the topics in ``framed`` write Confluent-framed payloads when ``framing``
        says so. Waits up to a minute for a registry that is starting."""
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        framed = set(framed)
        for topic, codec in codecs:
            subject = subject_of(topic)
            newest = self._until(deadline, partial(self._register, subject, codec))
            if framing is Framing.CONFLUENT and topic in framed:
                codec.frame_with_registry_id(newest)
        log.info("schemas registered at %s (%s framing for events)", self.url, framing.value)

    def _register(self, subject: str, codec: AvroCodec) -> int:
        self._require_backward(subject)
        schema_id = 0
        for writer, source in codec.own_versions():
            schema_id = self._client.register_schema(subject, Schema(source, "AVRO"))
            codec.learn(schema_id, writer.parsed)
        return schema_id

    def _require_backward(self, subject: str) -> None:
        """``BACKWARD`` on the subject. Processes starting together race to set it, and a
        registry may refuse the second setting as a conflict (Apicurio: 409, "a rule named
        COMPATIBILITY already exists"): then what counts is that the subject has it."""
        try:
            self._client.set_config(subject, ServerConfig(compatibility=COMPATIBILITY))
        except SchemaRegistryError as error:
            if error.http_status_code != CONFLICT:
                raise
            current = self._client.get_compatibility(subject)
            if current != COMPATIBILITY.value:
                raise RegistryUnavailable(
                    f"{subject} has compatibility {current}, not {COMPATIBILITY.value}"
                ) from error

    def _until(self, deadline: float, step: Callable[[], int]) -> int:
        """``step()``, asked again while the registry cannot be reached or reports a conflict,
        until ``deadline``."""
        while True:
            try:
                return step()
            except (httpx.TransportError, SchemaRegistryError, RegistryUnavailable) as error:
                # A conflict may be another process registering the same thing at once.
                status = error.http_status_code if isinstance(error, SchemaRegistryError) else 0
                if status < 500 and status not in (0, CONFLICT):
                    raise
                if time.monotonic() >= deadline:
                    raise RegistryUnavailable(
                        f"the schema registry at {self.url} cannot be reached: {error}"
                    ) from error
                time.sleep(0.5)

    async def learn_writers(self, codec: AvroCodec, payloads: Iterable[bytes]) -> None:
        """Teach ``codec`` the writer schemas of the Confluent-framed ``payloads`` it does not
        know yet, from the registry (off the event loop)."""
        unknown = {
            schema_id
            for payload in payloads
            if (schema_id := confluent_schema_id(payload)) is not None
            and not codec.knows(schema_id)
        }
        for schema_id in sorted(unknown):
            await asyncio.to_thread(self._learn, codec, schema_id)

    def _learn(self, codec: AvroCodec, schema_id: int) -> None:
        try:
            schema = self._client.get_schema(schema_id)
        except SchemaRegistryError as error:
            if error.http_status_code == NOT_FOUND:
                log.warning("%s: the registry has no schema %d", codec.name, schema_id)
                return  # stays unknown: decoding dead-letters the message
            if error.http_status_code >= 500:
                raise RegistryUnavailable(f"the schema registry answered {error}") from error
            raise
        except httpx.TransportError as error:
            raise RegistryUnavailable(f"the schema registry cannot be reached: {error}") from error
        if schema.schema_type not in (None, "AVRO") or schema.schema_str is None:
            log.warning("%s: schema %d is %s, not Avro", codec.name, schema_id, schema.schema_type)
            return
        try:
            parsed = parse_schema(json.loads(schema.schema_str))
        except Exception as error:  # a schema fastavro cannot use: the message is not ours to read
            log.warning("%s: schema %d cannot be parsed: %r", codec.name, schema_id, error)
            return
        codec.learn(schema_id, parsed)


class WriterSchemas(Protocol):
    async def learn_writers(self, codec: AvroCodec, payloads: Iterable[bytes]) -> None: ...


class NoRegistry:
    """Without a registry: nothing to learn (Confluent framing is not read at all)."""

    async def learn_writers(self, codec: AvroCodec, payloads: Iterable[bytes]) -> None:
        return None
