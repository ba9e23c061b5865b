"""CSV and NDJSON text as rows, line by line with bounded memory.

Never more than :data:`~domain.file_types.MAX_LINE_CHARS` characters of one physical line are
held at a time: a longer line fails its row and the rest of the file goes on. A CSV row's line is
the physical line where it starts; NDJSON lines are parsed strictly (:mod:`domain.strict_json`).
"""

from __future__ import annotations

import contextlib
import csv
import io
from collections.abc import Iterator, Mapping, Sequence
from typing import IO, Any

from domain import strict_json
from domain.errors import ErrorCode
from domain.file_types import (
    MARKED,
    MARKER_ERRORS,
    MAX_LINE_CHARS,
    FileFormat,
    ReadOptions,
    RowTable,
    SourceRow,
    printable,
)


class _BoundedLines:
    """The physical lines of a text, each cut to ``max_chars``: a longer line is read past in
    pieces (never held whole), replaced by an empty line, and its number remembered."""

    def __init__(self, text: IO[str], max_chars: int = MAX_LINE_CHARS) -> None:
        self._text = text
        self._max = max_chars
        self.number = 0
        self.cut: set[int] = set()

    def __iter__(self) -> Iterator[str]:
        while True:
            line = self._text.readline(self._max)
            if not line:
                return
            self.number += 1
            if len(line) >= self._max and not line.endswith(("\n", "\r")):
                self._skip_rest()
                self.cut.add(self.number)
                yield "\n"
                continue
            yield line

    def _skip_rest(self) -> None:
        while True:
            piece = self._text.readline(self._max)
            if not piece or piece.endswith(("\n", "\r")):
                return

    def problem(self, first: int, last: int) -> str | None:
        """Why the row on lines ``first..last`` is unreadable, if one of them was too long."""
        for number in range(first, last + 1):
            if number in self.cut:
                return f"line {number} is longer than {self._max} characters"
        return None


@contextlib.contextmanager
def text_rows(raw: IO[bytes], options: ReadOptions) -> Iterator[RowTable]:
    encoding = options.encoding or "utf-8"
    text = io.TextIOWrapper(raw, encoding=encoding, errors=MARKER_ERRORS, newline="")
    try:
        lines = _BoundedLines(text)
        if options.content is FileFormat.NDJSON:
            yield _ndjson_table(lines, encoding)
        else:
            yield _csv_table(lines, options.delimiter or ",", encoding)
    finally:
        text.detach()  # the caller owns ``raw``


def _csv_table(text: _BoundedLines, delimiter: str, encoding: str) -> RowTable:
    reader = csv.reader(text, delimiter=delimiter)
    lines = _LineCounter(reader, text)
    for _, values, problem in lines:
        if problem is None and any(v.strip() for v in values):
            header = [values[0].lstrip("\ufeff"), *values[1:]]
            return RowTable(tuple(printable(c.strip()) for c in header), _csv_rows(lines, encoding))
    return RowTable((), iter(()))


class _LineCounter:
    """``(first line, values, csv problem)`` of each parsed row, blank ones included."""

    def __init__(self, reader: Any, lines: _BoundedLines) -> None:
        self._reader = reader
        self._lines = lines
        self._previous_end = 0

    def __iter__(self) -> Iterator[tuple[int, list[str], str | None]]:
        while True:
            start = self._previous_end + 1
            try:
                values = next(self._reader)
            except StopIteration:
                return
            except csv.Error as exc:
                self._previous_end = self._reader.line_num
                yield start, [], f"the row cannot be parsed as CSV: {exc}"
                continue
            self._previous_end = self._reader.line_num
            too_long = self._lines.problem(start, self._previous_end)
            if too_long is not None:
                yield start, [], too_long
                continue
            yield start, values, None


def _csv_rows(lines: _LineCounter, encoding: str) -> Iterator[SourceRow]:
    for start, values, problem in lines:
        if problem is not None:
            yield SourceRow(start, None, problem)
            continue
        if not any(v.strip() for v in values):
            continue
        bad = _undecodable_column(values)
        if bad is not None:
            yield SourceRow(start, None, f"column {bad} holds bytes that are not valid {encoding}")
        else:
            yield SourceRow(start, values)


def _undecodable_column(values: Sequence[str]) -> int | None:
    if not MARKED.search("".join(values)):  # one search per row: the common case
        return None
    for position, value in enumerate(values, start=1):
        if MARKED.search(value):
            return position
    return None


def _ndjson_table(text: _BoundedLines, encoding: str) -> RowTable:
    rows = _ndjson_rows(text, encoding)
    for row in rows:
        keys = tuple(row.values) if isinstance(row.values, Mapping) else ()

        def chained(first: SourceRow = row) -> Iterator[SourceRow]:
            yield first
            yield from rows

        return RowTable(keys, chained())
    return RowTable((), iter(()))


def _ndjson_rows(text: _BoundedLines, encoding: str) -> Iterator[SourceRow]:
    for line, content in enumerate(text, start=1):
        too_long = text.problem(line, line)
        if too_long is not None:
            yield SourceRow(line, None, too_long)
            continue
        stripped = content.strip().lstrip("\ufeff")
        if not stripped:
            continue
        if MARKED.search(stripped):
            yield SourceRow(line, None, f"the line holds bytes that are not valid {encoding}")
            continue
        try:
            value = strict_json.loads(stripped)
        except strict_json.JsonRejected as exc:
            yield SourceRow(line, None, f"the line is not valid JSON: {exc}", ErrorCode.InvalidJson)
            continue
        if not isinstance(value, dict):
            problem = "the line must hold one JSON object"
            yield SourceRow(line, None, problem, ErrorCode.InvalidFieldType)
            continue
        yield SourceRow(line, value)
