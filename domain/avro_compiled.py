"""Avro binary encoding and decoding compiled to Python source, one pair of functions per schema.

fastavro interprets the schema for every datum it writes or reads, and before it writes a union
it validates the datum against each branch — for ``["null", {array of records}]`` that is a
whole walk of the array. Measured on the customer record (2026-12-01, this machine): fastavro
25 µs to write and 17 µs to read one; the compiled functions do the same work in a fraction
(figures in docs/benchmarks.md). Every record crosses five such steps on its way through the
pipeline, so this is where a large part of its CPU went.

The compiled functions are only a fast path, for the schema a codec writes with and for payloads
written with that same schema; anything they do not handle the way fastavro would — a datum
they cannot encode (a union with several non-null branches and no ``(name, value)`` tuple —
unless they are all primitive and the value's class picks one — a
naive datetime, a value of the wrong type), a payload they find corrupt or truncated — makes
them raise, and :class:`domain.codec.AvroCodec` then asks fastavro, whose answer (bytes, datum
or error) stands. Writer-schema resolution (an older writer) is always fastavro's.
``tests/unit/test_avro_compiled.py`` checks byte for byte and value for value against fastavro,
on generated data for every topic schema and on corrupted payloads.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

Encoder = Callable[[Any, bytearray], None]
Decoder = Callable[[bytes, int], tuple[Any, int]]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SMALL = 1 << 13


class Unsupported(Exception):
    """The compiled path does not take this datum or payload: fastavro decides."""


def _zigzag_bytes(n: int) -> bytes:
    if not -(1 << 63) <= n < (1 << 63):
        raise Unsupported("integer out of the long range")
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


_SMALL_LONGS = [_zigzag_bytes(n) for n in range(-_SMALL, _SMALL)]
"""The encodings of -8192..8191: lengths, counts, indexes and most numbers."""
_LENGTHS = _SMALL_LONGS[_SMALL:]
"""The encodings of 0..8191, looked up without a call by the generated code for a length."""


def write_long(n: int) -> bytes:
    if -_SMALL <= n < _SMALL:
        return _SMALL_LONGS[n + _SMALL]
    return _zigzag_bytes(n)


def read_long_tail(buf: bytes, pos: int, first: int) -> tuple[int, int]:
    """A varint whose first byte (already read) had its high bit set."""
    z = first & 0x7F
    shift = 7
    while True:
        b = buf[pos]
        pos += 1
        z |= (b & 0x7F) << shift
        if b < 0x80:
            if z >> 64:  # beyond 64 bits: fastavro wraps it around, so it decides
                raise Unsupported("varint beyond 64 bits")
            return (z >> 1) ^ -(z & 1), pos
        shift += 7
        if shift > 63:
            raise Unsupported("varint longer than 10 bytes")


def timestamp_millis(value: Any) -> int:
    if value.__class__ is int:
        return int(value)
    if isinstance(value, datetime) and value.tzinfo is not None:
        delta = value - EPOCH
        return (delta.days * 86400 + delta.seconds) * 1000 + int(delta.microseconds / 1000)
    raise Unsupported("not an int or an aware datetime")


def from_timestamp_millis(ms: int) -> datetime:
    return EPOCH + timedelta(microseconds=ms * 1000)


_DOUBLE = struct.Struct("<d")
_HELPERS: dict[str, Any] = {
    "write_long": write_long,
    "LENGTHS": _LENGTHS,
    "read_long_tail": read_long_tail,
    "timestamp_millis": timestamp_millis,
    "from_timestamp_millis": from_timestamp_millis,
    "pack_double": _DOUBLE.pack,
    "unpack_double": _DOUBLE.unpack_from,
    "Unsupported": Unsupported,
}


class _Source:
    """Python source being generated: lines, indentation, fresh names, constants."""

    def __init__(self, named: Mapping[str, Any]) -> None:
        self.lines: list[str] = []
        self.depth = 1
        self.counter = 0
        self.constants: dict[str, Any] = {}
        self.named = named

    def line(self, text: str) -> None:
        self.lines.append("    " * self.depth + text)

    def fresh(self, stem: str) -> str:
        self.counter += 1
        return f"{stem}{self.counter}"

    def constant(self, value: Any) -> str:
        name = self.fresh("_k")
        self.constants[name] = value
        return name

    def resolve(self, schema: Any) -> Any:
        if isinstance(schema, str) and schema in self.named:
            return self.named[schema]
        return schema


def _kind(schema: Any) -> str:
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, dict):
        if schema.get("logicalType") == "timestamp-millis" and schema["type"] == "long":
            return "timestamp-millis"
        return str(schema["type"])
    return str(schema)


def _branch_name(schema: Any) -> str:
    if isinstance(schema, dict) and schema.get("type") in ("record", "enum", "fixed"):
        return str(schema["name"])
    return _kind(schema) if not isinstance(schema, str) else schema


# --- encoding -------------------------------------------------------------------------------------


def _encode(src: _Source, schema: Any, value: str) -> None:
    """Append to ``out`` the encoding of the Python expression ``value`` (a plain name)."""
    schema = src.resolve(schema)
    kind = _kind(schema)
    if kind == "string":
        raw = src.fresh("s")
        src.line(f"{raw} = {value}.encode()")
        _write_length(src, raw)
        src.line(f"out += {raw}")
    elif kind in ("long", "int"):
        src.line(f"out += write_long({value})")
    elif kind == "timestamp-millis":
        src.line(f"out += write_long(timestamp_millis({value}))")
    elif kind == "double":
        src.line(f"out += pack_double({value})")
    elif kind == "boolean":
        src.line(f"out += b'\\x01' if {value} else b'\\x00'")
    elif kind == "null":
        pass
    elif kind == "enum":
        table = src.constant({s: write_long(i) for i, s in enumerate(schema["symbols"])})
        src.line(f"out += {table}[{value}]")
    elif kind == "array":
        _encode_blocks(src, schema["items"], value, f"{value}", mapping=False)
    elif kind == "map":
        _encode_blocks(src, schema["values"], value, f"{value}.items()", mapping=True)
    elif kind == "record":
        _encode_record(src, schema, value)
    elif kind == "union":
        _encode_union(src, schema, value)
    else:
        raise Unsupported(f"no compiled encoder for Avro type {kind}")


def _write_length(src: _Source, value: str) -> None:
    """Append the length of ``value``: from the table when short (no call), else computed."""
    length = src.fresh("n")
    src.line(f"{length} = len({value})")
    src.line(f"out += LENGTHS[{length}] if {length} < {_SMALL} else write_long({length})")


def _encode_blocks(src: _Source, items: Any, value: str, iterable: str, *, mapping: bool) -> None:
    src.line(f"if len({value}):")
    src.depth += 1
    src.line(f"out += write_long(len({value}))")
    item, key = src.fresh("i"), src.fresh("m")
    src.line(f"for {key + ', ' if mapping else ''}{item} in {iterable}:")
    src.depth += 1
    if mapping:
        raw = src.fresh("s")
        src.line(f"{raw} = {key}.encode()")
        _write_length(src, raw)
        src.line(f"out += {raw}")
    _encode(src, items, item)
    src.depth -= 2
    src.line("out += b'\\x00'")


def _encode_record(src: _Source, schema: Mapping[str, Any], value: str) -> None:
    getter = src.fresh("g")
    src.line(f"{getter} = {value}.get")
    for field in schema["fields"]:
        name = src.fresh("f")
        default = src.constant(field.get("default"))
        src.line(f"{name} = {getter}({field['name']!r}, {default})")
        _encode(src, field["type"], name)


def _encode_union(src: _Source, branches: list[Any], value: str) -> None:
    resolved = [src.resolve(b) for b in branches]
    names = [_branch_name(b) for b in resolved]
    src.line(f"if {value}.__class__ is tuple:")
    src.depth += 1
    chosen, inner = src.fresh("n"), src.fresh("u")
    src.line(f"{chosen}, {inner} = {value}")
    for index, (name, branch) in enumerate(zip(names, resolved, strict=True)):
        src.line(f"{'if' if index == 0 else 'elif'} {chosen} == {name!r}:")
        src.depth += 1
        src.line(f"out += {write_long(index)!r}")
        _encode(src, branch, inner)
        src.depth -= 1
    src.line("else:")
    src.line("    raise Unsupported('no such union branch')")
    src.depth -= 1
    others = [i for i, name in enumerate(names) if name != "null"]
    if "null" in names:
        src.line(f"elif {value} is None:")
        src.line(f"    out += {write_long(names.index('null'))!r}")
    if len(others) == 1:
        src.line("else:")
        src.depth += 1
        src.line(f"out += {write_long(others[0])!r}")
        _encode(src, resolved[others[0]], value)
        src.depth -= 1
    elif all(names[i] in _BY_CLASS for i in others):
        _encode_primitive_union(src, names, resolved, value)
    else:
        src.line("else:")
        src.line("    raise Unsupported('a union of several types needs a (name, value) tuple')")


_BY_CLASS = {"string": ("str",), "boolean": ("bool",), "long": ("int",), "double": ("int", "float")}
"""Primitive branches a plain value picks by its Python class, as fastavro does (the first
branch, in order, that takes it: a bool is never a long, an int may be a double)."""


def _encode_primitive_union(
    src: _Source, names: list[str], resolved: list[Any], value: str
) -> None:
    for python_class in ("str", "bool", "int", "float"):
        index = next((i for i, n in enumerate(names) if python_class in _BY_CLASS.get(n, ())), None)
        if index is None:
            continue
        src.line(f"elif {value}.__class__ is {python_class}:")
        src.depth += 1
        src.line(f"out += {write_long(index)!r}")
        _encode(src, resolved[index], value)
        src.depth -= 1
    src.line("else:")
    src.line("    raise Unsupported('no union branch for this value')")


# --- decoding -------------------------------------------------------------------------------------


def _read_long(src: _Source, target: str) -> None:
    first = src.fresh("b")
    src.line(f"{first} = buf[pos]; pos += 1")
    src.line(f"if {first} < 128:")
    src.line(f"    {target} = ({first} >> 1) ^ -({first} & 1)")
    src.line("else:")
    src.line(f"    {target}, pos = read_long_tail(buf, pos, {first})")


def _read_string(src: _Source, target: str) -> None:
    size, end = src.fresh("n"), src.fresh("e")
    _read_long(src, size)
    src.line(f"{end} = pos + {size}")
    src.line(f"if {size} < 0 or {end} > length:")
    src.line("    raise Unsupported('string out of bounds')")
    src.line(f"{target} = buf[pos:{end}].decode(); pos = {end}")


def _decode(src: _Source, schema: Any, target: str) -> None:
    """Assign to ``target`` the datum read at ``pos`` (advancing it)."""
    schema = src.resolve(schema)
    kind = _kind(schema)
    if kind == "string":
        _read_string(src, target)
    elif kind in ("long", "int"):
        _read_long(src, target)
    elif kind == "timestamp-millis":
        ms = src.fresh("t")
        _read_long(src, ms)
        src.line(f"{target} = from_timestamp_millis({ms})")
    elif kind == "double":
        src.line("if pos + 8 > length: raise Unsupported('double out of bounds')")
        src.line(f"{target} = unpack_double(buf, pos)[0]; pos += 8")
    elif kind == "boolean":
        flag = src.fresh("b")
        src.line(f"{flag} = buf[pos]; pos += 1")
        src.line(f"if {flag} > 1: raise Unsupported('boolean byte other than 0 or 1')")
        src.line(f"{target} = {flag} == 1")
    elif kind == "null":
        src.line(f"{target} = None")
    elif kind == "enum":
        symbols, index = src.constant(tuple(schema["symbols"])), src.fresh("x")
        _read_long(src, index)
        src.line(f"if {index} < 0: raise Unsupported('negative enum index')")
        src.line(f"{target} = {symbols}[{index}]")
    elif kind in ("array", "map"):
        _decode_blocks(src, schema, target, mapping=kind == "map")
    elif kind == "record":
        fields = [(field["name"], src.fresh("f")) for field in schema["fields"]]
        for field, (_, name) in zip(schema["fields"], fields, strict=True):
            _decode(src, field["type"], name)
        src.line(f"{target} = {{{', '.join(f'{key!r}: {name}' for key, name in fields)}}}")
    elif kind == "union":
        _decode_union(src, schema, target)
    else:
        raise Unsupported(f"no compiled decoder for Avro type {kind}")


def _decode_blocks(src: _Source, schema: Mapping[str, Any], target: str, *, mapping: bool) -> None:
    count, skipped, item, key = (src.fresh(s) for s in ("c", "z", "i", "m"))
    src.line(f"{target} = {{}}" if mapping else f"{target} = []")
    _read_long(src, count)
    src.line(f"while {count}:")
    src.depth += 1
    src.line(f"if {count} < 0:")
    src.depth += 1
    src.line(f"{count} = -{count}")
    _read_long(src, skipped)  # the block's size in bytes
    src.depth -= 1
    src.line(f"for _ in range({count}):")
    src.depth += 1
    if mapping:
        _read_string(src, key)
        _decode(src, schema["values"], item)
        src.line(f"{target}[{key}] = {item}")
    else:
        _decode(src, schema["items"], item)
        src.line(f"{target}.append({item})")
    src.depth -= 1
    _read_long(src, count)
    src.depth -= 1


def _decode_union(src: _Source, branches: list[Any], target: str) -> None:
    index = src.fresh("x")
    _read_long(src, index)
    for position, branch in enumerate(branches):
        src.line(f"{'if' if position == 0 else 'elif'} {index} == {position}:")
        src.depth += 1
        _decode(src, branch, target)
        src.depth -= 1
    src.line("else:")
    src.line("    raise Unsupported('union index out of range')")


# --- compiling ------------------------------------------------------------------------------------


def _named_types(schema: Any, into: dict[str, Any]) -> dict[str, Any]:
    """Every named type defined in a parsed schema, by full name (fastavro's parsed names)."""
    if isinstance(schema, list):
        for branch in schema:
            _named_types(branch, into)
    elif isinstance(schema, dict):
        if schema.get("type") in ("record", "enum", "fixed") and "name" in schema:
            into.setdefault(schema["name"], schema)
        for key in ("fields", "items", "values"):
            if key == "fields" and key in schema:
                for field in schema["fields"]:
                    _named_types(field["type"], into)
            elif key in schema:
                _named_types(schema[key], into)
    return into


def compile_codec(parsed: Any) -> tuple[Encoder, Decoder]:
    """(encode, decode) for a schema as :func:`fastavro.parse_schema` returns it.

    ``encode(datum, out)`` appends to a bytearray; ``decode(buf, pos)`` returns the datum and
    the position after it. Both raise (:class:`Unsupported` or any error) when fastavro should
    decide instead. A schema with a type it does not compile (``bytes``, ``fixed``, ``float``;
    none of ours) raises :class:`Unsupported` here, and its codec uses fastavro alone.
    """
    named = _named_types(parsed, {})
    writer = _Source(named)
    _encode(writer, parsed, "datum")
    reader = _Source(named)
    _decode(reader, parsed, "datum")
    namespace: dict[str, Any] = {**_HELPERS, **writer.constants, **reader.constants}
    source = "\n".join(
        [
            "def encode(datum, out):",
            *(writer.lines or ["    pass"]),
            "def decode(buf, pos):",
            "    length = len(buf)",
            *reader.lines,
            "    if pos > length:",
            "        raise Unsupported('truncated')",
            "    return datum, pos",
        ]
    )
    # Our own code, generated from our own schemas (as dataclasses and namedtuple do).
    exec(compile(source, f"<avro codec {_branch_name(parsed)}>", "exec"), namespace)
    return namespace["encode"], namespace["decode"]
