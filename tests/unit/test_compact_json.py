"""JSON text for JSONB columns: orjson's where it can, json's answer where orjson refuses."""

from __future__ import annotations

import json

import pytest

from domain.compact_json import compact_json


@pytest.mark.parametrize(
    "value",
    [
        [{"type": "work", "line1": "1 High St", "city": "Zürich", "country": "CH"}],
        {"emoji": "😀", "rtl": "\u202eevil", "nested": [[], {}, [1, 2.5, True, None]]},
        ['quote " backslash \\ control \x01 newline \n'],
    ],
)
def test_the_text_is_json_dumps_compact_text_with_characters_unescaped(value):
    text = compact_json(value)
    assert text == json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    assert json.loads(text) == value


@pytest.mark.parametrize(
    "value",
    [
        {"big": 2**70},  # beyond 64 bits
        {"lone": "\ud800"},  # a lone surrogate
        {1: "a non-string key"},
    ],
    ids=["int-beyond-64-bits", "lone-surrogate", "non-string-key"],
)
def test_what_orjson_refuses_gets_json_dumps_answer(value):
    assert compact_json(value) == json.dumps(value, separators=(",", ":"))


def test_default_converts_what_json_has_no_type_for():
    class Opaque:
        def __str__(self) -> str:
            return "opaque"

    assert compact_json({"x": Opaque()}, default=str) == '{"x":"opaque"}'
    with pytest.raises(TypeError):
        compact_json({"x": Opaque()})
