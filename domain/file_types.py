"""What the file readers share: formats, profiles, read options, rows, caps and errors.

Also the marker decoding: undecodable bytes become lone surrogates (U+DC00 + byte), which valid
text never holds, so a row holding them fails on its own and the rest of the file goes on.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

from domain.errors import BulkIngestError, ErrorCode

FILE_STORAGES = ("temporary", "directory")
"""How long an upload is kept (``?storage=``): the default, expiring; until it is deleted."""
SAMPLE_BYTES = 64 * 1024
MAX_LINE_CHARS = 1024 * 1024
DELIMITERS = (",", ";", "\t", "|")
MAX_PROFILED_SHEETS = 50
MARKER_ERRORS = "bulk_ingest_marker"
MARKED = re.compile("[\udc00-\udcff]")


def mark_undecodable(error: UnicodeError) -> tuple[str, int]:
    """Codec error handler: each undecodable byte becomes the lone surrogate U+DC00 + byte."""
    assert isinstance(error, UnicodeDecodeError)
    bad = error.object[error.start : error.end]
    return "".join(chr(0xDC00 + byte) for byte in bad), error.end


codecs.register_error(MARKER_ERRORS, mark_undecodable)


class FileFormat(StrEnum):
    """The format of an uploaded file as the API names it."""

    CSV = "csv"
    NDJSON = "ndjson"
    ZIP = "zip"
    XLSX = "xlsx"


class FileRejected(BulkIngestError):
    """An upload the service cannot import; the message tells the person what to do."""


class UnreadableFile(BulkIngestError):
    """A stored file that turned out unreadable while importing; the job fails with the message."""


@dataclass(frozen=True)
class ZipCaps:
    """Limits an archive must respect, declared and actual.

    ``max_ratio`` applies to members larger than ``ratio_floor_bytes`` uncompressed: tiny
    members compress absurdly well without being dangerous.
    """

    max_uncompressed_bytes: int
    max_ratio: float
    ratio_floor_bytes: int = 1024 * 1024


@dataclass(frozen=True)
class FileProfile:
    """What an upload holds, as the ``POST /files`` answer shows it.

    For a ZIP, ``member`` names the file inside and ``content`` its format (CSV or NDJSON);
    for XLSX, ``sheet_columns`` holds the header of every profiled sheet, in workbook order.
    """

    format: FileFormat
    content: FileFormat | None
    encoding: str | None = None
    delimiter: str | None = None
    columns: tuple[str, ...] = ()
    member: str | None = None
    sheet_columns: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def sheets(self) -> tuple[str, ...]:
        return tuple(self.sheet_columns)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form, stored with the file and read back by :meth:`from_dict`."""
        return {
            "format": self.format.value,
            "content": self.content.value if self.content else None,
            "encoding": self.encoding,
            "delimiter": self.delimiter,
            "columns": list(self.columns),
            "member": self.member,
            "sheet_columns": [[name, list(cols)] for name, cols in self.sheet_columns.items()],
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, stored: Mapping[str, Any]) -> FileProfile:
        content = stored.get("content")
        return cls(
            format=FileFormat(stored["format"]),
            content=FileFormat(content) if content else None,
            encoding=stored.get("encoding"),
            delimiter=stored.get("delimiter"),
            columns=tuple(stored.get("columns") or ()),
            member=stored.get("member"),
            sheet_columns={name: tuple(cols) for name, cols in stored.get("sheet_columns") or ()},
            warnings=tuple(stored.get("warnings") or ()),
        )


@dataclass(frozen=True)
class ReadOptions:
    """How to read a file's rows: its profile with the import's overrides applied."""

    format: FileFormat
    content: FileFormat | None  # CSV or NDJSON for text and ZIP; None for XLSX
    encoding: str | None = None
    delimiter: str | None = None
    sheet: str | None = None
    member: str | None = None


class SourceRow(NamedTuple):
    """One data row: ``values`` (a sequence, or a mapping for NDJSON) or why it is unreadable."""

    line: int
    values: Sequence[Any] | Mapping[str, Any] | None
    problem: str | None = None
    code: ErrorCode = ErrorCode.InvalidFormat


@dataclass
class RowTable:
    """A file opened for reading: its header (NDJSON: the first object's keys) and data rows."""

    header: tuple[str, ...]
    rows: Iterator[SourceRow]


def printable(text: str) -> str:
    """Marker characters replaced for display (JSON cannot carry lone surrogates)."""
    return MARKED.sub("\ufffd", text)
