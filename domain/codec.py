"""Avro payloads in two framings, with writer-schema resolution.

- **Single-object encoding** (ours, always understood): ``C3 01`` + the 8-byte little-endian
  CRC-64-AVRO (Rabin) fingerprint of the writer schema's Parsing Canonical Form + the Avro
  binary body. The fingerprint is looked up among every known version of the topic's schema.
- **Confluent wire format** (when a Schema Registry is configured): ``00`` + the writer
  schema's registry id as a 4-byte big-endian integer + the body. The codec knows the ids it
  was taught (:meth:`AvroCodec.learn`); fetching an unknown id from the registry is the
  adapter's job (:mod:`bulk_ingest.schema_registry`), so this module stays free of I/O. A
  codec never taught an id (no registry configured) reads single-object encoding only.

The first byte tells the two apart. A reader resolves the writer schema against its own
(newest) schema, so producers and consumers can evolve independently.

Schemas live under ``schemas/``: ``topics/<topic>/v<N>.avsc`` (every version ever published) with
example payloads in ``topics/<topic>/examples/``; entity record schemas in ``entities/`` are named
types the topic schemas may reference (``bulk_ingest.entities.Customer``).
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, cast

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form

from domain.avro_compiled import Unsupported, compile_codec

MAGIC = b"\xc3\x01"
HEADER_SIZE = len(MAGIC) + 8
CONFLUENT_MAGIC = 0
CONFLUENT_HEADER_SIZE = 5
"""``00`` and a 4-byte big-endian schema id."""


class Framing(StrEnum):
    """How payloads a codec writes are framed (``BULK_INGEST_EVENT_FRAMING``)."""

    SINGLE_OBJECT = "single-object"
    CONFLUENT = "confluent"


def confluent_schema_id(payload: bytes) -> int | None:
    """The registry id of a Confluent-framed payload; None for any other payload."""
    if len(payload) < CONFLUENT_HEADER_SIZE or payload[0] != CONFLUENT_MAGIC:
        return None
    return int.from_bytes(payload[1:CONFLUENT_HEADER_SIZE], "big")


def confluent_header(schema_id: int) -> bytes:
    return bytes([CONFLUENT_MAGIC]) + schema_id.to_bytes(4, "big")


def schema_fingerprint(parsed: Any) -> bytes:
    """The 8 bytes framed on the wire: the CRC-64-AVRO fingerprint of the schema's Parsing
    Canonical Form, little-endian (fastavro gives it as hex in that byte order)."""
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))


class UndecodableMessage(Exception):
    """A payload that cannot be decoded; ``reason`` is a short machine-readable word."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class UnknownSchemaId(UndecodableMessage):
    """A Confluent-framed payload whose schema id the codec was not taught (and, once the
    adapter has asked the registry, that the registry does not have either)."""

    def __init__(self, name: str, schema_id: int) -> None:
        super().__init__(
            "unknown-schema-id", f"{name}: no known schema has registry id {schema_id}"
        )
        self.schema_id = schema_id


@dataclass(frozen=True)
class WriterSchema:
    version: int
    parsed: Any
    fingerprint: bytes  # 8 bytes, little-endian, as framed on the wire


class AvroCodec:
    """Encodes with the newest schema version and decodes any known version of one topic."""

    def __init__(
        self, name: str, versions: Mapping[int, Any], sources: Mapping[int, str] | None = None
    ) -> None:
        """``versions``: parsed schemas by version; ``sources``: their JSON text standing alone
        (what :meth:`own_versions` hands a registry)."""
        if not versions:
            raise ValueError(f"schema family {name} has no versions")
        self.name = name
        self._sources = dict(sources or {})
        self._by_fingerprint: dict[bytes, WriterSchema] = {}
        for version, parsed in sorted(versions.items()):
            framed = schema_fingerprint(parsed)
            self._by_fingerprint[framed] = WriterSchema(version, parsed, framed)
        self.latest = max(self._by_fingerprint.values(), key=lambda w: w.version)
        self._by_id: dict[int, WriterSchema] = {}
        self._header = MAGIC + self.latest.fingerprint
        self.framing = Framing.SINGLE_OBJECT
        try:
            self._compiled_encode, self._compiled_decode = compile_codec(self.latest.parsed)
        except Unsupported:  # a type the compiler does not know (bytes, fixed, float): fastavro
            self._compiled_encode, self._compiled_decode = _refuse_encode, _refuse_decode

    def own_versions(self) -> list[tuple[WriterSchema, str]]:
        """Every version this codec was loaded with, oldest first, with its JSON text."""
        writers = sorted(self._by_fingerprint.values(), key=lambda w: w.version)
        return [(writer, self._sources[writer.version]) for writer in writers]

    def learn(self, schema_id: int, parsed: Any) -> None:
        """Teach the codec a registry id and the (parsed) schema it names. A schema equal to
        one of the topic's own versions (same Parsing Canonical Form) is that version."""
        framed = schema_fingerprint(parsed)
        own = self._by_fingerprint.get(framed)
        self._by_id[schema_id] = own or WriterSchema(0, parsed, framed)

    def knows(self, schema_id: int) -> bool:
        return schema_id in self._by_id

    def frame_with_registry_id(self, schema_id: int) -> None:
        """Write from now on in the Confluent wire format, with ``schema_id`` — the registry's
        id of the newest version (which :meth:`learn` must have been taught)."""
        if self._by_id.get(schema_id) is not self.latest:
            raise ValueError(f"{self.name}: registry id {schema_id} is not the newest version")
        self._header = confluent_header(schema_id)
        self.framing = Framing.CONFLUENT

    def encode(self, datum: Mapping[str, Any]) -> bytes:
        """The framed payload; compiled code writes it unless fastavro must decide
        (:mod:`domain.avro_compiled`)."""
        out = bytearray(self._header)
        try:
            self._compiled_encode(datum, out)
            return bytes(out)
        except Exception:  # not the compiled path's to answer: fastavro encodes or refuses
            return self._fastavro_encode(datum)

    def _fastavro_encode(self, datum: Mapping[str, Any]) -> bytes:
        buffer = io.BytesIO()
        buffer.write(self._header)
        schemaless_writer(buffer, self.latest.parsed, datum)
        return buffer.getvalue()

    def decode(self, payload: bytes) -> dict[str, Any]:
        writer, body_at = self._writer_and_body(payload)
        if writer is self.latest:
            try:
                datum, _ = self._compiled_decode(bytes(payload), body_at)
                return cast(dict[str, Any], datum)
            except Exception:  # corrupt, or unusual: fastavro decodes or refuses
                pass
        return self._fastavro_decode(payload, writer, body_at)

    def _fastavro_decode(
        self, payload: bytes, writer: WriterSchema, body_at: int
    ) -> dict[str, Any]:
        try:
            body = io.BytesIO(memoryview(payload)[body_at:])
            # Resolution only when the writer is another schema: resolving a schema against
            # itself is pure overhead on the hot path.
            reader = None if writer is self.latest else self.latest.parsed
            datum = schemaless_reader(body, writer.parsed, reader)
        except Exception as exc:  # fastavro raises many kinds for corrupt bodies
            raise UndecodableMessage("corrupt-body", f"{self.name}: {exc!r}") from exc
        return cast(dict[str, Any], datum)

    def writer_of(self, payload: bytes) -> WriterSchema:
        return self._writer_and_body(payload)[0]

    def _writer_and_body(self, payload: bytes) -> tuple[WriterSchema, int]:
        """The writer schema of ``payload`` and where its Avro body starts."""
        schema_id = confluent_schema_id(payload) if self._by_id else None
        if schema_id is not None:
            by_id = self._by_id.get(schema_id)
            if by_id is None:
                raise UnknownSchemaId(self.name, schema_id)
            return by_id, CONFLUENT_HEADER_SIZE
        if len(payload) < HEADER_SIZE or payload[:2] != MAGIC:
            if self._by_id:
                raise UndecodableMessage(
                    "unknown-framing",
                    f"{self.name}: payload starts with neither C3 01 and a fingerprint "
                    "(single-object encoding) nor 00 and a schema id (Confluent wire format)",
                )
            raise UndecodableMessage(
                "not-single-object-encoded",
                f"{self.name}: payload does not start with C3 01 and a fingerprint",
            )
        fingerprint = bytes(payload[2:HEADER_SIZE])
        writer = self._by_fingerprint.get(fingerprint)
        if writer is None:
            raise UndecodableMessage(
                "unknown-schema",
                f"{self.name}: no known schema has fingerprint {fingerprint.hex()}",
            )
        return writer, HEADER_SIZE


def _refuse_encode(datum: Any, out: bytearray) -> None:
    raise Unsupported("no compiled encoder")


def _refuse_decode(payload: bytes, pos: int) -> tuple[Any, int]:
    raise Unsupported("no compiled decoder")


_VERSION_FILE = re.compile(r"^v(\d+)\.avsc$")


def load_named_types(entities_dir: Path) -> dict[str, Any]:
    """Entity record schemas keyed by full name, for topic schemas that reference them."""
    named: dict[str, Any] = {}
    for path in sorted(entities_dir.glob("*.avsc")):
        schema = json.loads(path.read_text())
        named[f"{schema.get('namespace', '')}.{schema['name']}".lstrip(".")] = schema
    return named


def _inline(node: Any, named: Mapping[str, Any], seen: set[str]) -> Any:
    """Replace references to entity types by their definitions (first use only, per Avro)."""
    if isinstance(node, str) and node in named:
        if node in seen:
            return node
        seen.add(node)
        return _inline(named[node], named, seen)
    if isinstance(node, list):
        return [_inline(item, named, seen) for item in node]
    if isinstance(node, dict):
        return {key: _inline(value, named, seen) for key, value in node.items()}
    return node


def inline_topic_schema(raw: Any, named: Mapping[str, Any]) -> Any:
    """The topic schema standing alone: the entity types it names written out in it (what a
    Schema Registry is given)."""
    return _inline(raw, named, set())


def parse_topic_schema(raw: Any, named: Mapping[str, Any]) -> Any:
    # The default write hint marks the schema as parsed: without it fastavro re-parses the
    # schema on every write, which more than doubles the cost of encoding a message.
    return parse_schema(inline_topic_schema(raw, named))


def load_codec(schemas_dir: Path, topic_key: str) -> AvroCodec:
    """All versions of ``schemas/topics/<topic_key>/v*.avsc`` as one codec."""
    named = load_named_types(schemas_dir / "entities")
    versions: dict[int, Any] = {}
    sources: dict[int, str] = {}
    for path in sorted((schemas_dir / "topics" / topic_key).glob("v*.avsc")):
        match = _VERSION_FILE.match(path.name)
        if match:
            inlined = inline_topic_schema(json.loads(path.read_text()), named)
            versions[int(match.group(1))] = parse_schema(inlined)
            sources[int(match.group(1))] = json.dumps(inlined)
    return AvroCodec(topic_key, versions, sources)


def topic_keys(schemas_dir: Path) -> Iterable[str]:
    return sorted(p.name for p in (schemas_dir / "topics").iterdir() if p.is_dir())
