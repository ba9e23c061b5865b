"""Text the storage can hold: forbidden code points, how to find them, how to neutralise them.

PostgreSQL refuses U+0000 in ``text`` and in ``jsonb`` (``\\u0000``), and a lone surrogate
(U+D800-U+DFFF) is not a Unicode scalar value: UTF-8 — hence Avro strings and PostgreSQL —
cannot encode it. Entity rules name the code points their strings refuse
(``"text": {"forbiddenCodePoints": [...]}`` in ``schemas/entities/*.rules.json``); every entity
must refuse at least :data:`UNSTORABLE`.

:func:`storable` is for what the service itself must keep whatever the client sent — the key
and the submitted record of a *failed* outcome, messages quoting a value: it replaces each
unstorable code point with U+FFFD, so the failure can be recorded and reported
(:func:`json_storable` also names the non-finite numbers JSON cannot hold).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

REPLACEMENT = "\ufffd"
_CODE_POINT = re.compile(r"U\+([0-9A-Fa-f]{4,6})")

CodePointRange = tuple[int, int]

UNSTORABLE: tuple[CodePointRange, ...] = ((0x0000, 0x0000), (0xD800, 0xDFFF))
"""What neither PostgreSQL nor UTF-8 can hold: U+0000 and the surrogates."""


class CodePointSyntaxError(ValueError):
    """A code point or range in a rules file that is not ``U+XXXX`` or ``U+XXXX-U+YYYY``."""


def parse_code_points(spec: str) -> CodePointRange:
    """``"U+0000"`` → (0, 0); ``"U+D800-U+DFFF"`` → (0xD800, 0xDFFF)."""
    parts = spec.split("-")
    if len(parts) not in (1, 2) or not all(_CODE_POINT.fullmatch(p.strip()) for p in parts):
        raise CodePointSyntaxError(f"{spec!r} is not U+XXXX or U+XXXX-U+YYYY")
    bounds = [int(p.strip()[2:], 16) for p in parts]
    low, high = bounds[0], bounds[-1]
    if low > high or high > 0x10FFFF:
        raise CodePointSyntaxError(f"{spec!r} is not a range of code points")
    return low, high


def covers(ranges: Iterable[CodePointRange], required: Iterable[CodePointRange]) -> bool:
    """Whether ``ranges`` include every code point of ``required`` (small ranges: counted)."""
    owned = tuple(ranges)
    return all(
        any(low <= cp <= high for low, high in owned)
        for need_low, need_high in required
        for cp in range(need_low, need_high + 1)
    )


@dataclass(frozen=True)
class ForbiddenCharacters:
    """A set of forbidden code points with a fast test for the common (ASCII) case."""

    ranges: tuple[CodePointRange, ...]
    _ascii: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _pattern: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ascii_chars = "".join(
            chr(cp) for low, high in self.ranges for cp in range(low, min(high, 0x7F) + 1)
        )
        object.__setattr__(self, "_ascii", tuple(ascii_chars))
        object.__setattr__(self, "_pattern", _char_class(self.ranges))

    @property
    def ascii_chars(self) -> tuple[str, ...]:
        """The forbidden code points below U+0080."""
        return self._ascii

    def first(self, value: str) -> str | None:
        """``U+XXXX`` of the first forbidden code point in ``value``, or ``None``."""
        if value.isascii():
            ascii_chars = self._ascii
            if len(ascii_chars) == 1:  # the usual case: only U+0000 among ASCII
                if ascii_chars[0] not in value:
                    return None
            elif not any(char in value for char in ascii_chars):
                return None
        pattern = self._pattern
        found = pattern.search(value) if pattern is not None else None
        return f"U+{ord(found.group()):04X}" if found else None

    def describe(self) -> str:
        return ", ".join(
            f"U+{low:04X}" if low == high else f"U+{low:04X}-U+{high:04X}"
            for low, high in self.ranges
        )


def _char_class(ranges: Sequence[CodePointRange]) -> re.Pattern[str] | None:
    if not ranges:
        return None
    parts = [
        re.escape(chr(low)) if low == high else f"{re.escape(chr(low))}-{re.escape(chr(high))}"
        for low, high in ranges
    ]
    return re.compile(f"[{''.join(parts)}]")


_UNSTORABLE = ForbiddenCharacters(UNSTORABLE)
_UNSTORABLE_PATTERN = _char_class(UNSTORABLE)
_T = TypeVar("_T")


def unstorable_character(value: str) -> str | None:
    """``U+XXXX`` of the first code point no storage can hold, or ``None``."""
    return _UNSTORABLE.first(value)


def storable(value: _T) -> _T:
    """``value`` (text, or JSON-like lists and dicts of it) with unstorable code points replaced."""
    return cast(_T, _storable(value))


def json_storable(value: _T) -> _T:
    """:func:`storable`, and non-finite numbers (which JSON and ``jsonb`` cannot hold) as the
    names JavaScript gives them: ``"NaN"``, ``"Infinity"``, ``"-Infinity"``."""
    return cast(_T, _json_storable(storable(value)))


def _json_storable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _json_storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_storable(item) for item in value]
    return value


def _storable(value: Any) -> Any:
    if isinstance(value, str):
        if _UNSTORABLE.first(value) is None:
            return value
        assert _UNSTORABLE_PATTERN is not None
        return _UNSTORABLE_PATTERN.sub(REPLACEMENT, value)
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(item) for item in value]
    return value
