"""What a client may know of an entity: its key and the field paths a record or an import
mapping can name (``email``, ``addresses.0.city``), with their types, whether required, and
their rules as a person reads them (:func:`field_rules`).

Derived from the entity definition (:mod:`domain.entities`), so it cannot drift from what
validation does. An array field is described through its first position; any position below
``max_items`` is as valid. Fields inside an array item are never ``required`` here: they are
required only of an item that is there. :func:`field_paths` is the one walk of the definition;
the import templates (:mod:`domain.entity_template`) list the same paths.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from domain.entities import (
    DEFAULT_REFERENCE_TYPES,
    EntityDefinition,
    EntityRegistry,
    FieldSpec,
    ValueKind,
    ValueSpec,
)


@dataclass(frozen=True)
class ArrayField:
    """The array field a path goes through (by its first position)."""

    path: str
    max_items: int | None
    label: str
    """How messages name one item (``address``); empty for an array of plain values."""


@dataclass(frozen=True)
class FieldPath:
    """One field path of an entity: the leaf value a column or key can feed."""

    path: str
    spec: ValueSpec
    required: bool
    """Required of every record."""
    array: ArrayField | None = None
    required_in_item: bool = False
    """Required of each item of :attr:`array` that is given (``addresses.0.city``)."""
    default: Any = None
    """The field's Avro default (``None`` when there is none)."""

    @property
    def name(self) -> str:
        """The last field name on the path (``city`` for ``addresses.0.city``)."""
        return next(part for part in reversed(self.path.split(".")) if not part.isdigit())


def entity_list(registry: EntityRegistry) -> dict[str, Any]:
    entities = [registry.get(name) for name in registry.names()]
    return {"entities": [{"name": e.name, "key": e.key_field} for e in entities]}


def entity_description(definition: EntityDefinition) -> dict[str, Any]:
    return {
        "name": definition.name,
        "key": definition.key_field,
        "fields": [_described(field) for field in field_paths(definition)],
    }


def field_paths(definition: EntityDefinition) -> Iterator[FieldPath]:
    """Every leaf field path of the entity, in schema order."""
    return _walk(definition.fields, prefix="", required=True, array=None, in_item=False)


def _walk(
    fields: tuple[FieldSpec, ...],
    *,
    prefix: str,
    required: bool,
    array: ArrayField | None,
    in_item: bool,
) -> Iterator[FieldPath]:
    for spec in fields:
        path, value = prefix + spec.name, spec.value
        needed = required and spec.required
        if value.kind is ValueKind.ARRAY and value.items is not None:
            items = value.items
            within = ArrayField(path, value.max_items, items.label)
            if items.kind is ValueKind.RECORD:
                yield from _walk(
                    items.fields, prefix=f"{path}.0.", required=False, array=within, in_item=True
                )
            else:
                yield FieldPath(f"{path}.0", items, required=False, array=within)
        elif value.kind is ValueKind.RECORD:
            yield from _walk(
                value.fields,
                prefix=path + ".",
                required=needed,
                array=array,
                in_item=in_item and spec.required,
            )
        else:
            item_needed = array is not None and in_item and spec.required
            yield FieldPath(path, value, needed, array, item_needed, spec.default)


def _described(field: FieldPath) -> dict[str, Any]:
    body: dict[str, Any] = {
        "path": field.path,
        "type": field.spec.kind.value,
        "required": field.required,
        "rules": field_rules(field),
    }
    array = field.array
    if array is not None and array.max_items is not None and field.path == array.path + ".0":
        body["max_items"] = array.max_items
    return body


def field_rules(field: FieldPath) -> list[str]:
    """The field's rules as a person reads them."""
    spec, rules = field.spec, []
    if spec.min_length or spec.max_length is not None:
        rules.append(_length(spec.min_length or 0, spec.max_length))
    if spec.format is not None:
        rules.append(f"format: {spec.format.expected}")
    if spec.code_list is not None:
        rules.append(spec.code_list.description or f"a code of {spec.code_list.name}")
    if spec.reference is not None:
        known = ", ".join(sorted(DEFAULT_REFERENCE_TYPES.get(spec.reference, ())))
        rules.append(f"one of the tenant's {spec.reference.replace('_', ' ')} (default: {known})")
    if spec.calendar_date:
        rules.append("a real calendar date")
    if spec.minimum is not None:
        rules.append(f"at least {_number_text(spec.minimum)}")
    if spec.maximum is not None:
        rules.append(f"at most {_number_text(spec.maximum)}")
    if field.default is not None:
        rules.append(f"default {json.dumps(field.default)}")
    if field.array is not None:
        rules.append(_positions(field))
    return rules


def _length(low: int, high: int | None) -> str:
    if high is None:
        return f"at least {low} characters"
    return f"{low}-{high} characters" if low else f"at most {high} characters"


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _positions(field: FieldPath) -> str:
    """Where the second and later items go: the same path with the next positions."""
    assert field.array is not None
    array, max_items = field.array.path, field.array.max_items
    rest = field.path.removeprefix(array + ".0")
    last = f"{array}.{max_items - 1}{rest}" if max_items else "..."
    count = f"up to {max_items} items" if max_items else "more items"
    return f"{count}: {array}.0{rest}, {array}.1{rest} ... {last}"
