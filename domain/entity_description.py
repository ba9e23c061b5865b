"""What a client may know of an entity: its key and the field paths a record or an import
mapping can name (``email``, ``addresses.0.city``), with their types and whether required.

Derived from the entity definition (:mod:`domain.entities`), so it cannot drift from what
validation does. An array field is described through its first position; any position below
``max_items`` is as valid. Fields inside an array item are never ``required`` here: they are
required only of an item that is there.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from domain.entities import EntityDefinition, EntityRegistry, FieldSpec, ValueKind


def entity_list(registry: EntityRegistry) -> dict[str, Any]:
    entities = [registry.get(name) for name in registry.names()]
    return {"entities": [{"name": e.name, "key": e.key_field} for e in entities]}


def entity_description(definition: EntityDefinition) -> dict[str, Any]:
    return {
        "name": definition.name,
        "key": definition.key_field,
        "fields": list(_field_paths(definition.fields, prefix="", required=True)),
    }


def _field_paths(
    fields: tuple[FieldSpec, ...], *, prefix: str, required: bool
) -> Iterator[dict[str, Any]]:
    for spec in fields:
        path, value = prefix + spec.name, spec.value
        needed = required and spec.required
        if value.kind is ValueKind.ARRAY and value.items is not None:
            items = value.items
            if items.kind is ValueKind.RECORD:
                yield from _field_paths(items.fields, prefix=f"{path}.0.", required=False)
            else:
                yield _described(f"{path}.0", items.kind, required=False, max_items=value.max_items)
        elif value.kind is ValueKind.RECORD:
            yield from _field_paths(value.fields, prefix=path + ".", required=needed)
        else:
            yield _described(path, value.kind, required=needed)


def _described(
    path: str, kind: ValueKind, *, required: bool, max_items: int | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"path": path, "type": kind.value, "required": required}
    if max_items is not None:
        body["max_items"] = max_items
    return body
