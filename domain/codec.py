"""Avro single-object encoding with writer-schema resolution by fingerprint.

Every Kafka payload is ``C3 01`` + the 8-byte little-endian CRC-64-AVRO (Rabin) fingerprint of the
writer schema's Parsing Canonical Form + the Avro binary body. A reader looks the fingerprint up
among every known version of the topic's schema and resolves the writer schema against its own
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
from pathlib import Path
from typing import Any, cast

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form

from domain.avro_compiled import Unsupported, compile_codec

MAGIC = b"\xc3\x01"
HEADER_SIZE = len(MAGIC) + 8


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


@dataclass(frozen=True)
class WriterSchema:
    version: int
    parsed: Any
    fingerprint: bytes  # 8 bytes, little-endian, as framed on the wire


class AvroCodec:
    """Encodes with the newest schema version and decodes any known version of one topic."""

    def __init__(self, name: str, versions: Mapping[int, Any]) -> None:
        if not versions:
            raise ValueError(f"schema family {name} has no versions")
        self.name = name
        self._by_fingerprint: dict[bytes, WriterSchema] = {}
        for version, parsed in sorted(versions.items()):
            framed = schema_fingerprint(parsed)
            self._by_fingerprint[framed] = WriterSchema(version, parsed, framed)
        self.latest = max(self._by_fingerprint.values(), key=lambda w: w.version)
        self._header = MAGIC + self.latest.fingerprint
        try:
            self._compiled_encode, self._compiled_decode = compile_codec(self.latest.parsed)
        except Unsupported:  # a type the compiler does not know (bytes, fixed, float): fastavro
            self._compiled_encode, self._compiled_decode = _refuse_encode, _refuse_decode

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
        writer = self.writer_of(payload)
        if writer is self.latest:
            try:
                datum, _ = self._compiled_decode(bytes(payload), HEADER_SIZE)
                return cast(dict[str, Any], datum)
            except Exception:  # corrupt, or unusual: fastavro decodes or refuses
                pass
        return self._fastavro_decode(payload, writer)

    def _fastavro_decode(self, payload: bytes, writer: WriterSchema) -> dict[str, Any]:
        try:
            body = io.BytesIO(memoryview(payload)[HEADER_SIZE:])
            # Resolution only when the writer is older: resolving a schema against itself is
            # pure overhead on the hot path.
            reader = None if writer is self.latest else self.latest.parsed
            datum = schemaless_reader(body, writer.parsed, reader)
        except Exception as exc:  # fastavro raises many kinds for corrupt bodies
            raise UndecodableMessage("corrupt-body", f"{self.name}: {exc!r}") from exc
        return cast(dict[str, Any], datum)

    def writer_of(self, payload: bytes) -> WriterSchema:
        if len(payload) < HEADER_SIZE or payload[:2] != MAGIC:
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
        return writer


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


def parse_topic_schema(raw: Any, named: Mapping[str, Any]) -> Any:
    # The default write hint marks the schema as parsed: without it fastavro re-parses the
    # schema on every write, which more than doubles the cost of encoding a message.
    return parse_schema(_inline(raw, named, set()))


def load_codec(schemas_dir: Path, topic_key: str) -> AvroCodec:
    """All versions of ``schemas/topics/<topic_key>/v*.avsc`` as one codec."""
    named = load_named_types(schemas_dir / "entities")
    versions: dict[int, Any] = {}
    for path in sorted((schemas_dir / "topics" / topic_key).glob("v*.avsc")):
        match = _VERSION_FILE.match(path.name)
        if match:
            versions[int(match.group(1))] = parse_topic_schema(json.loads(path.read_text()), named)
    return AvroCodec(topic_key, versions)


def topic_keys(schemas_dir: Path) -> Iterable[str]:
    return sorted(p.name for p in (schemas_dir / "topics").iterdir() if p.is_dir())
