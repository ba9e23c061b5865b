"""JSON as the service accepts it: the standard parser, minus what makes inputs ambiguous.

Refused, with a reason a person can act on:

- text that is not JSON, or not UTF-8 / UTF-16 / UTF-32 (``json`` detects which from bytes);
- an object with the same key twice: parsers disagree on which value wins (RFC 8259 §4), so a
  record could mean one thing to us and another to the client;
- nesting deeper than the parser can follow (it stops at Python's recursion limit, about a
  thousand levels; no record of ours nests more than three);
- integers of more than 4,300 digits (Python refuses to convert them).

``NaN`` and ``Infinity`` are parsed (Python's ``json`` accepts them): validation refuses them
where a number is expected, naming the record and field, which says more than "not JSON".

The standard parser defines what is accepted; orjson is a fast path that gives the same answer.
It parses the usual body (UTF-8 bytes, no number of 19 or more digits, which orjson would turn
into a float) about ten times faster. It cannot report a key seen twice, so it is checked for
one: every ``:`` outside strings separates one key from its value, so a key was lost exactly
when the text has more colons outside its strings than the parsed value written back out by
orjson (which writes each string's colons as they are). Anything orjson refuses, and any
suspected lost key, goes to the standard parser, which says precisely what is wrong.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_DIGITS_AS_ZEROS = bytes(ord("0") if byte in b"0123456789" else ord(" ") for byte in range(256))
_LONG_DIGIT_RUN = b"0" * 19
_ESCAPED_BACKSLASH = b"\\\\"
_ESCAPED_COLONS = (b"\\u003a", b"\\u003A")


class JsonRejected(ValueError):
    """The text is not JSON the service accepts; the message says where and why."""


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return obj


def loads(text: str | bytes) -> Any:
    """Parse ``text``; raise :class:`JsonRejected` for anything the module docstring lists."""
    if isinstance(text, bytes) and not _has_a_long_number(text):
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
        else:
            if not _lost_a_key(text, value):
                return value
    return _standard_loads(text)


def _has_a_long_number(text: bytes) -> bool:
    """Whether ``text`` has a run of 19 or more digits: an integer orjson might make a float."""
    return _LONG_DIGIT_RUN in text.translate(_DIGITS_AS_ZEROS)


def _lost_a_key(text: bytes, value: Any) -> bool:
    """Whether parsing ``text`` kept fewer keys than it holds (see the module docstring).

    Colons in ``text`` = keys + colons written in its strings; colons in ``value`` written out =
    keys kept + colons in its strings, which are those written in the text plus those escaped as
    ``\\u003a``. An escape starts at a backslash that is not itself escaped: dropping every
    escaped backslash first leaves exactly those.
    """
    unescaped = text.replace(_ESCAPED_BACKSLASH, b"")
    escaped_colons = sum(unescaped.count(escape) for escape in _ESCAPED_COLONS)
    try:
        written = orjson.dumps(value)
    except orjson.JSONEncodeError:  # nested deeper than orjson writes (254): cannot tell
        return True
    return text.count(b":") + escaped_colons != written.count(b":")


def _standard_loads(text: str | bytes) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        raise JsonRejected(f"an object has the key {exc.args[0]!r} twice") from None
    except json.JSONDecodeError as exc:
        raise JsonRejected(str(exc)) from None
    except UnicodeDecodeError as exc:
        raise JsonRejected(f"it is not valid UTF-8, UTF-16 or UTF-32 text ({exc.reason})") from None
    except RecursionError:
        raise JsonRejected("it is nested too deeply to be a record") from None
    except ValueError as exc:  # an integer beyond Python's digit limit
        if "digits" in str(exc):
            raise JsonRejected("a number has more than 4300 digits") from None
        raise JsonRejected(str(exc)) from None
