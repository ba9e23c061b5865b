"""Rows of the failure report and of the results file, as CSV cells (pure).

Both files are built from the outcome ledger, one row per ledger entry, in index order:

- failure report: ``index,externalId,errorCode,failureReason,record`` — failed and skipped
  records (a cancelled job's ``JobCancelled`` rows); ``record`` is the record as submitted,
  compact JSON (empty for a record the service never read, such as a skipped one); for file
  imports the mapped source columns follow, named and valued as in the file, so the report
  can be fixed in a spreadsheet and imported again (``retry_of``, :mod:`domain.retry`);
- results file: ``index,id,externalId,status,errorCode,error`` — every record; for file
  imports the first three mapped source columns follow, named as in the file.

A text cell that starts with ``= + - @``, tab or carriage return is prefixed with a single quote,
so a spreadsheet shows it as text instead of evaluating it as a formula (OWASP "CSV injection").
So is a cell where quotes come before one of those (``'=A1``): the escaping stays reversible,
and :func:`domain.retry.unescape_cell` gives back every cell exactly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

REPORT_COLUMNS = ("index", "externalId", "errorCode", "failureReason", "record")
RESULTS_COLUMNS = ("index", "id", "externalId", "status", "errorCode", "error")
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
MAX_SOURCE_COLUMNS = 3

Cell = str | int


def escape_cell(value: object) -> Cell:
    """``value`` as a CSV cell that no spreadsheet evaluates; ``None`` is an empty cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return value
    text = value if isinstance(value, str) else str(value)
    return "'" + text if needs_escape(text) else text


def needs_escape(text: str) -> bool:
    """Whether a cell starts with a formula trigger, after any leading quotes."""
    return text.lstrip("'").startswith(FORMULA_TRIGGERS)


def compact_json(record: object) -> str:
    """The submitted record as compact JSON, non-ASCII kept readable."""
    return json.dumps(without_nulls(record), separators=(",", ":"), ensure_ascii=False, default=str)


def without_nulls(value: object) -> object:
    """The record without the ``null`` fields the pipeline's Avro form adds for absent ones.

    The ledger keeps a failed record in its Avro shape, where every optional field the client
    left out is present as ``null``; dropping them gives back what the client sent.
    """
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(item) for item in value]
    return value


def is_reported(outcome: Mapping[str, Any]) -> bool:
    """Whether a ledger entry has a failure-report row: it failed, or it was skipped."""
    return outcome["status"] in ("FAILED", "SKIPPED")


def report_row(outcome: Mapping[str, Any], source_names: Sequence[str] = ()) -> list[Cell]:
    """One failure-report row for a FAILED or SKIPPED ledger entry, with its source columns
    (file imports)."""
    record = outcome.get("record")
    row = [
        escape_cell(outcome["index"]),
        escape_cell(outcome["key"]),
        escape_cell(outcome["error_code"]),
        escape_cell(outcome["error_message"]),
        escape_cell(compact_json(record) if record is not None else None),
    ]
    if source_names:
        values = _source_values(outcome.get("source"))
        row.extend(escape_cell(values.get(name)) for name in source_names)
    return row


def results_row(outcome: Mapping[str, Any], source_names: Sequence[str] = ()) -> list[Cell]:
    """One results-file row for any ledger entry, with its source columns (file imports)."""
    row = [
        escape_cell(outcome["index"]),
        escape_cell(outcome["record_id"]),
        escape_cell(outcome["key"]),
        escape_cell(outcome["status"]),
        escape_cell(outcome["error_code"]),
        escape_cell(outcome["error_message"]),
    ]
    if source_names:
        values = _source_values(outcome.get("source"))
        row.extend(escape_cell(values.get(name)) for name in source_names)
    return row


def source_column_names(source: object) -> tuple[str, ...]:
    """The source columns a file import's results carry, from one row's ``source``.

    ``source`` is either an object ``{"Column": "value", ...}`` (its key order is kept) or a
    list of ``[column, value]`` pairs; at most the first three columns are used.
    """
    return report_source_names(source)[:MAX_SOURCE_COLUMNS]


def report_source_names(source: object) -> tuple[str, ...]:
    """Every source column of a file import's row (the failure report carries them all)."""
    return tuple(str(name) for name in _source_values(source))


def _source_values(source: object) -> dict[str, object]:
    if isinstance(source, Mapping):
        return {str(name): value for name, value in source.items()}
    if isinstance(source, list):
        return {
            str(pair[0]): pair[1] if len(pair) > 1 else None
            for pair in source
            if isinstance(pair, list | tuple) and pair
        }
    return {}
