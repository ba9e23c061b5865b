"""Small builders of JSON Schema (draft 2020-12, the dialect of OpenAPI 3.1), pure.

The modules that build what the API answers (:mod:`domain.job_view`, :mod:`domain.errors`, …)
describe each field with these, beside the code that fills it, so the OpenAPI document
(:mod:`domain.openapi`) is read off the same definitions the answers are built from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

Schema = dict[str, Any]
_S = TypeVar("_S")

UUID: Mapping[str, Any] = {"type": "string", "format": "uuid"}
TIMESTAMP: Mapping[str, Any] = {
    "type": "string",
    "format": "date-time",
    "description": "UTC, millisecond precision, e.g. 2026-11-22T10:15:30.123Z",
}
COUNT: Mapping[str, Any] = {"type": "integer", "minimum": 0}


def string(description: str = "", **keywords: Any) -> Schema:
    return _described({"type": "string", **keywords}, description)


def integer(description: str = "", **keywords: Any) -> Schema:
    return _described({"type": "integer", **keywords}, description)


def enum(values: Iterable[str], description: str = "") -> Schema:
    return _described({"type": "string", "enum": [str(value) for value in values]}, description)


def nullable(schema: Mapping[str, Any]) -> Schema:
    """``schema`` or ``null``: the type list gains ``"null"`` (an enum gains ``None``)."""
    widened = dict(schema)
    kind = widened.get("type")
    if isinstance(kind, str):
        widened["type"] = [kind, "null"]
    elif isinstance(kind, list) and "null" not in kind:
        widened["type"] = [*kind, "null"]
    elif kind is None:
        return {"anyOf": [dict(schema), {"type": "null"}]}
    if "enum" in widened and None not in widened["enum"]:
        widened["enum"] = [*widened["enum"], None]
    return widened


def array(items: Mapping[str, Any], description: str = "", **keywords: Any) -> Schema:
    return _described({"type": "array", "items": dict(items), **keywords}, description)


def obj(
    properties: Mapping[str, Mapping[str, Any]],
    required: Iterable[str] = (),
    description: str = "",
    **keywords: Any,
) -> Schema:
    """An object with these properties; those in ``required`` are always there."""
    schema: Schema = {"type": "object", "properties": {k: dict(v) for k, v in properties.items()}}
    needed = list(required)
    if needed:
        schema["required"] = needed
    schema.update(keywords)
    return _described(schema, description)


def ref(component: str) -> Schema:
    """A reference to ``#/components/schemas/<component>``."""
    return {"$ref": f"#/components/schemas/{component}"}


def _described(schema: Schema, description: str) -> Schema:
    if description:
        schema["description"] = description
    return schema


@dataclass(frozen=True)
class ViewField(Generic[_S]):
    """One field of an answer: its name, its JSON Schema, and how it is read from ``_S``.

    ``present`` decides whether a field that is not always there is included for a value (such
    a field is absent, never ``null``); ``None`` means always there. The answer and its schema
    (:func:`view_schema`, used by :mod:`domain.openapi`) are both read off one tuple of these.
    """

    name: str
    schema: Mapping[str, Any]
    value: Callable[[_S], Any]
    present: Callable[[Any], bool] | None = None


def fill(fields: Iterable[ViewField[_S]], source: _S) -> dict[str, Any]:
    """The answer: each field's value, in order, leaving out those not present."""
    body: dict[str, Any] = {}
    for field in fields:
        value = field.value(source)
        if field.present is None or field.present(value):
            body[field.name] = value
    return body


def view_schema(fields: Iterable[ViewField[Any]], description: str = "") -> Schema:
    """The JSON Schema of what :func:`fill` answers for ``fields``."""
    fields = tuple(fields)
    return obj(
        {field.name: field.schema for field in fields},
        [field.name for field in fields if field.present is None],
        description,
    )


def not_none(value: Any) -> bool:
    return value is not None
