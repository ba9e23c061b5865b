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
"""

from __future__ import annotations

import json
from typing import Any


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
