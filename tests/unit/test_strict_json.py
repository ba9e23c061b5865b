"""strict_json's fast path (orjson) answers exactly as the standard parser it stands in for.

The cases the service refuses are in test_hostile_values; here every text, refused or not, must
get the same answer from :func:`strict_json.loads` as from the standard parser alone: the same
value (types included: an integer stays an integer, ``-0.0`` stays negative) or the same refusal.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from domain import strict_json

KEYS = st.sampled_from(["a", "b", ":", "a:b", "\\", '"', "\\u003a", "é", "\u2028", ""]) | st.text(
    max_size=4
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.sampled_from('a:"\\/\u0000\u007f\u00e9\U0001f600'), max_size=6)
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=4),
    max_leaves=20,
)


def answer(parse: Any, text: bytes) -> tuple[str, Any]:
    try:
        return "value", canonical(parse(text))
    except strict_json.JsonRejected as exc:
        return "refused", str(exc)


def canonical(value: Any) -> Any:
    """``value`` with every scalar tagged by its type, so ``1 == 1.0 == True`` no longer holds."""
    if isinstance(value, dict):
        return ("object", [(key, canonical(item)) for key, item in value.items()])
    if isinstance(value, list):
        return ("array", [canonical(item) for item in value])
    if isinstance(value, float):
        return ("float", "nan" if math.isnan(value) else value.hex())
    return (type(value).__name__, value)


def assert_same_answer(text: bytes) -> None:
    assert answer(strict_json.loads, text) == answer(strict_json._standard_loads, text)


def written(value: Any, *, twice: str | None = None, escape_colons: bool = False) -> bytes:
    """``value`` as JSON; with ``twice``, that key is added twice to every object (parsers keep
    the last); with ``escape_colons``, every colon in a string is written as ``\\u003a``."""

    def text(value: Any) -> str:
        if isinstance(value, dict):
            members = [f"{string(key)}: {text(item)}" for key, item in value.items()]
            if twice is not None:
                members += [f"{string(twice)}: 1", f"{string(twice)}: 2"]
            return "{" + ", ".join(members) + "}"
        if isinstance(value, list):
            return "[" + ", ".join(text(item) for item in value) + "]"
        return string(value) if isinstance(value, str) else json.dumps(value)

    def string(value: str) -> str:
        literal = json.dumps(value, ensure_ascii=False)
        return literal.replace(":", "\\u003a") if escape_colons else literal

    return text(value).encode()


@given(VALUES, st.booleans())
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_any_json_text_gets_the_standard_answer(value: Any, ascii_only: bool) -> None:
    assert_same_answer(json.dumps(value, ensure_ascii=ascii_only).encode())


@given(st.dictionaries(KEYS, VALUES, min_size=1, max_size=3), KEYS, st.booleans())
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_a_key_written_twice_is_always_found(
    value: dict[str, Any], key: str, escape_colons: bool
) -> None:
    text = written(value, twice=key, escape_colons=escape_colons)
    assert answer(strict_json.loads, text)[0] == "refused"
    assert_same_answer(text)


@given(VALUES, st.booleans())
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_json_without_a_key_twice_takes_the_fast_path(value: Any, escape_colons: bool) -> None:
    text = written(value, escape_colons=escape_colons)
    assert not strict_json._lost_a_key(text, orjson.loads(text))


@given(VALUES, st.data())
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@example(value={"a": 1}, data=None)
def test_mangled_json_gets_the_standard_answer(value: Any, data: st.DataObject | None) -> None:
    text = bytearray(json.dumps(value, ensure_ascii=False).encode())
    if data is not None:
        for _ in range(data.draw(st.integers(1, 3))):
            at = data.draw(st.integers(0, len(text)))
            text[at:at] = data.draw(st.sampled_from([b":", b'"', b"\\", b",", b"\\u003a", b"\xff"]))
    assert_same_answer(bytes(text))


@pytest.mark.parametrize(
    "text",
    [
        b'{"a": "x:y", "b": "\\u003a", "c": "\\\\u003a"}',
        b'{"\\u003a": 1, ":": 2}',  # the same key, once escaped
        b'{"a\\\\": 1, "a\\u005c": 2}',  # the same key, once escaped
        b'{"a": 1, "a": 1}',
        b"[9223372036854775807, -9223372036854775808, 18446744073709551616]",
        b"[1e400, -0.0, -0, 0.1, 5e-324]",
        b'["\\ud800", NaN, Infinity]',
        b'\xef\xbb\xbf{"a": 1}',
        b'{"a": [' * 600 + b"]}" * 600,
        b"[" * 255 + b"]" * 255,  # orjson reads it but cannot write it back: the standard answer
        b"[" * 1024 + b"]" * 1024,
        b'{"a": 1} x',
        b'{"a" : 1 ,"b":{ } }',
    ],
)
def test_edge_cases_get_the_standard_answer(text: bytes) -> None:
    assert_same_answer(text)
