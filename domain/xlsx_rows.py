"""XLSX workbooks as rows, read with openpyxl in read-only mode (docs/imports.md says why).

A row's line is its row number in the sheet. A formula gives its last computed value; a cell
holding a spreadsheet error (``#DIV/0!``, ``#N/A``, ...) fails its row.
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from domain.errors import ErrorCode
from domain.file_types import (
    MAX_PROFILED_SHEETS,
    FileFormat,
    FileProfile,
    FileRejected,
    ReadOptions,
    RowTable,
    SourceRow,
    UnreadableFile,
)


@contextlib.contextmanager
def open_workbook(path: Path) -> Iterator[Any]:
    """The workbook in read-only (streaming) mode; a handle, so the name's suffix is irrelevant."""
    from openpyxl import load_workbook  # imported here: only XLSX needs it

    with path.open("rb") as handle:
        try:
            workbook = load_workbook(handle, read_only=True, data_only=True)
        except Exception as exc:  # openpyxl raises many kinds for malformed workbooks
            raise FileRejected(f"The XLSX workbook cannot be read: {exc}") from exc
        try:
            yield workbook
        finally:
            workbook.close()


def profile_xlsx(path: Path) -> FileProfile:
    with open_workbook(path) as workbook:
        return _profile_workbook(workbook)


def _profile_workbook(workbook: Any) -> FileProfile:
    try:
        names = list(workbook.sheetnames)
        if not names:
            raise FileRejected("The workbook has no sheets.")
        sheet_columns = {}
        for name in names[:MAX_PROFILED_SHEETS]:
            header, _ = sheet_rows(workbook[name])
            sheet_columns[name] = header
    except FileRejected:
        raise
    except Exception as exc:
        raise FileRejected(f"The XLSX workbook cannot be read: {exc}") from exc
    return FileProfile(
        format=FileFormat.XLSX,
        content=None,
        columns=sheet_columns[names[0]],
        sheet_columns=sheet_columns,
    )


def sheet_rows(sheet: Any) -> tuple[tuple[str, ...], Iterator[SourceRow]]:
    sheet.reset_dimensions()  # trust the cells, not the (often wrong) <dimension> element
    numbered = enumerate(sheet.iter_rows(min_row=1), start=1)
    for _, cells in numbered:
        values = tuple(cell.value for cell in cells)
        if not _blank(values):
            header = tuple(_header_cell(v) for v in values)
            return header, (row for n, cells in numbered if (row := _sheet_row(n, cells)))
    return (), iter(())


def _sheet_row(number: int, cells: Sequence[Any]) -> SourceRow | None:
    """One sheet row (None when blank); a cell holding a spreadsheet error fails the row."""
    values = tuple(cell.value for cell in cells)
    if _blank(values):
        return None
    for cell in cells:
        if getattr(cell, "data_type", None) == "e":
            where = getattr(cell, "coordinate", f"row {number}")
            problem = f"cell {where} holds the spreadsheet error {cell.value}"
            return SourceRow(number, None, problem, ErrorCode.InvalidValue)
    return SourceRow(number, values)


def _header_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    return str(value).strip()


def _blank(values: Sequence[Any]) -> bool:
    return all(v is None or (isinstance(v, str) and not v.strip()) for v in values)


@contextlib.contextmanager
def xlsx_rows(path: Path, options: ReadOptions) -> Iterator[RowTable]:
    with contextlib.ExitStack() as stack:
        try:
            workbook = stack.enter_context(open_workbook(path))
        except FileRejected as exc:
            raise UnreadableFile(str(exc)) from exc
        name = options.sheet or workbook.sheetnames[0]
        if name not in workbook.sheetnames:
            raise UnreadableFile(f"The workbook has no sheet named {name!r}.")
        header, rows = sheet_rows(workbook[name])
        yield RowTable(header, _guarded_xlsx(rows))


def _guarded_xlsx(rows: Iterator[SourceRow]) -> Iterator[SourceRow]:
    try:
        yield from rows
    except Exception as exc:  # a malformed sheet part surfaces while streaming it
        raise UnreadableFile(f"The XLSX sheet cannot be read: {exc}") from exc
