"""How an entity's Avro record maps onto its table, derived from the entity definition.

Scalar fields become typed columns named in snake_case (``firstName`` → ``first_name``); arrays
and nested records become JSONB. The key field is the table's natural key, unique per tenant.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from psycopg import sql

from domain.compact_json import compact_json
from domain.entities import EntityDefinition

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def column_name(field_name: str) -> str:
    return _CAMEL.sub("_", field_name).lower()


def _is_complex(avro_type: Any) -> bool:
    branches = avro_type if isinstance(avro_type, list) else [avro_type]
    return any(
        isinstance(b, dict) and b.get("type") in ("array", "record", "map") for b in branches
    )


@dataclass(frozen=True)
class EntityTableMap:
    entity: str
    table: str
    key_field: str
    fields: tuple[str, ...]  # Avro field names in schema order
    columns: tuple[str, ...]  # matching column names
    json_fields: frozenset[str]

    @classmethod
    def of(cls, definition: EntityDefinition) -> EntityTableMap:
        fields = tuple(f["name"] for f in definition.avro_schema["fields"])
        return cls(
            entity=definition.name,
            table=definition.name,
            key_field=definition.key_field,
            fields=fields,
            columns=tuple(column_name(f) for f in fields),
            json_fields=frozenset(
                f["name"] for f in definition.avro_schema["fields"] if _is_complex(f["type"])
            ),
        )

    @property
    def key_column(self) -> str:
        return column_name(self.key_field)

    def copy_values(self, record: Mapping[str, Any]) -> list[Any]:
        """Column values in ``columns`` order, JSON fields serialized for COPY."""
        return [
            compact_json(value) if value is not None and f in self.json_fields else value
            for f in self.fields
            for value in (record.get(f),)
        ]

    def rows_of_keys(self, table: str | None = None) -> sql.Composed:
        """The rows of one tenant with any of some keys (parameters: tenant id, key list):
        id, the order of their last write and its job, then ``columns``. The keys are the
        condition of the ``(key, tenant_id)`` index whatever the statistics say of the tenant
        (migration 0006); ``table`` names another table of the same shape."""
        return sql.SQL(
            "SELECT id::text, coalesce(last_seq, 0), coalesce(last_index, -1), last_job_id::text, "
            "{columns} "
            "FROM {table} WHERE tenant_id = %s AND {key} = ANY(%s)"
        ).format(
            columns=sql.SQL(", ").join(map(sql.Identifier, self.columns)),
            table=sql.Identifier(table or self.table),
            key=sql.Identifier(self.key_column),
        )

    def record_from_row(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """The Avro-shaped record a stored row holds, to compare with an incoming one."""
        return {f: row[c] for f, c in zip(self.fields, self.columns, strict=True)}
