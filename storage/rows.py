"""Rows as the pure core reads them: column name → value.

SQLAlchemy types a mapping row's keys as "a name or a column"; every query here selects by
name, so the rows it returns are handed on as plain ``Mapping[str, Any]`` (no copy is made).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, cast

from sqlalchemy.engine import RowMapping

Row = Mapping[str, Any]


def as_row(mapping: RowMapping) -> Row:
    return cast(Row, mapping)


def as_row_or_none(mapping: RowMapping | None) -> Row | None:
    return None if mapping is None else as_row(mapping)


def as_rows(mappings: Iterable[RowMapping]) -> list[Row]:
    return [as_row(mapping) for mapping in mappings]
