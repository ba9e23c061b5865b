"""Uploaded files as rows: format detection, profiling, ZIP caps and streaming row readers.

Everything here works on a local path with bounded memory and knows nothing of HTTP, Kafka or
the database. Four formats are accepted (design.md §3, "Files and imports"):

- **CSV**: UTF-8 with or without BOM, UTF-16 with BOM (UTF-16 without BOM is recognised by its
  NUL pattern), any Python codec by override; the delimiter is sniffed among ``, ; TAB |``.
  Quoted fields may hold newlines; a row's line is the physical line where it starts.
  Undecodable bytes do not stop the file: they are decoded to marker characters (lone
  surrogates, which valid text never contains) and the row holding them fails on its own.
- **NDJSON**: one JSON object per line, same encodings, parsed strictly
  (:mod:`domain.strict_json`: no key twice, no absurd nesting).
- **ZIP** holding exactly one CSV or NDJSON file (macOS metadata entries are ignored).
- **XLSX**, read with openpyxl in read-only mode (docs/imports.md says why); a row's line is
  its row number in the sheet. A formula gives its last computed value; a cell holding a
  spreadsheet error (``#DIV/0!``, ``#N/A``, ...) fails its row.

Text files are read line by line, never more than :data:`MAX_LINE_CHARS` characters of one
physical line at a time: a longer line fails its row and the rest of the file goes on, so a file
without newlines cannot fill memory.

Archives (ZIP and XLSX, which is a ZIP) are checked against :class:`ZipCaps` twice: on the
central directory (declared sizes and ratios) and while decompressing (actual bytes), so a zip
bomb is refused before it can fill memory or disk.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import datetime
import io
import re
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import IO, Any, NamedTuple

from domain import strict_json
from domain.errors import BulkIngestError, ErrorCode

SAMPLE_BYTES = 64 * 1024
MAX_LINE_CHARS = 1024 * 1024
DELIMITERS = (",", ";", "\t", "|")
MAX_PROFILED_SHEETS = 50
MARKER_ERRORS = "bulk_ingest_marker"
_MARKED = re.compile("[\udc00-\udcff]")
_IGNORED_MEMBERS = ("__MACOSX/", ".DS_Store")
_READ_BLOCK = 1024 * 1024


def _mark_undecodable(error: UnicodeError) -> tuple[str, int]:
    """Codec error handler: each undecodable byte becomes the lone surrogate U+DC00 + byte."""
    assert isinstance(error, UnicodeDecodeError)
    bad = error.object[error.start : error.end]
    return "".join(chr(0xDC00 + byte) for byte in bad), error.end


codecs.register_error(MARKER_ERRORS, _mark_undecodable)


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


# --- detection and profiling ------------------------------------------------------------------


def detect_encoding(head: bytes) -> str:
    """The codec for a text file starting with ``head``: BOM first, then the NUL pattern."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        raise FileRejected("UTF-32 files are not supported; save the file as UTF-8.")
    if head.count(b"\x00") * 10 > len(head):
        return _utf16_without_bom(head)
    return "utf-8"  # a stray NUL or two is data: the row that holds one fails on its own


def _utf16_without_bom(head: bytes) -> str:
    sample = head[:4096]
    odd = sum(1 for i in range(1, len(sample), 2) if sample[i] == 0)
    even = sum(1 for i in range(0, len(sample), 2) if sample[i] == 0)
    half = len(sample) // 2
    if odd >= 0.4 * half and even <= 0.05 * half:
        return "utf-16-le"
    if even >= 0.4 * half and odd <= 0.05 * half:
        return "utf-16-be"
    raise FileRejected(
        "The file is binary, not CSV, NDJSON, ZIP or XLSX text; upload one of those formats."
    )


_SIGNATURES = (
    (b"\xd0\xcf\x11\xe0", "Excel 97-2003 (.xls) files are not supported; save it as .xlsx or CSV."),
    (b"%PDF", "PDF files cannot be imported; upload CSV, NDJSON, ZIP or XLSX."),
    (b"\x89PNG", "Images cannot be imported; upload CSV, NDJSON, ZIP or XLSX."),
    (b"\x1f\x8b", "gzip files are not supported; upload a ZIP archive or the plain file."),
)


def sniff_delimiter(sample: str) -> str:
    """The candidate among ``, ; TAB |`` that splits the sample's rows most consistently.

    Each candidate parses the sample's complete lines; the winner gives the header more than
    one column and the most rows with the header's column count (ties: more columns, then the
    order of :data:`DELIMITERS`). A file of one column gets ``,``.
    """
    complete = sample[: sample.rfind("\n") + 1] or sample
    best, best_score = ",", (0.0, 0)
    for delimiter in DELIMITERS:
        rows = [row for row in _sample_rows(complete, delimiter) if row]
        if not rows or len(rows[0]) < 2:
            continue
        width = len(rows[0])
        score = (sum(1 for row in rows if len(row) == width) / len(rows), width)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _sample_rows(text: str, delimiter: str, limit: int = 50) -> list[list[str]]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows: list[list[str]] = []
    with contextlib.suppress(csv.Error):
        for row in reader:
            rows.append(row)
            if len(rows) >= limit:
                break
    return rows


def profile_file(path: Path, caps: ZipCaps) -> FileProfile:
    """Detect the format of the file at ``path`` and read what the upload answer shows.

    Raises :class:`FileRejected` for anything that cannot be imported: unknown formats, empty
    files, ZIPs with zero or several files, archives beyond the caps, corrupt archives.
    """
    with path.open("rb") as handle:
        head = handle.read(SAMPLE_BYTES)
    if not head:
        raise FileRejected("The file is empty.")
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return _profile_archive(path, caps)
    for signature, message in _SIGNATURES:
        if head.startswith(signature):
            raise FileRejected(message)
    encoding = detect_encoding(head)
    return _profile_text(head, encoding, FileFormat.CSV, lambda: path.open("rb"))


def _profile_text(
    head: bytes,
    encoding: str,
    outer: FileFormat,
    opener: Any,
    member: str | None = None,
) -> FileProfile:
    # Incremental: a character cut in half at the end of the sample is not an error.
    sample = codecs.getincrementaldecoder(encoding)(MARKER_ERRORS).decode(head, final=False)
    content = _text_content(sample)
    delimiter = sniff_delimiter(sample.lstrip("\ufeff")) if content is FileFormat.CSV else None
    options = ReadOptions(outer, content, encoding, delimiter, member=member)
    with opener() as raw, _text_rows(raw, options) as table:
        columns = table.header
    return FileProfile(
        format=outer if outer is FileFormat.ZIP else content,
        content=content if outer is FileFormat.ZIP else None,
        encoding=encoding,
        delimiter=delimiter,
        columns=tuple(_printable(c) for c in columns),
        member=member,
        warnings=_encoding_warnings(sample, encoding),
    )


def _text_content(sample: str) -> FileFormat:
    stripped = sample.lstrip("\ufeff \t\r\n")
    if stripped.startswith("["):
        raise FileRejected(
            "JSON arrays cannot be imported as files; upload NDJSON (one JSON object per line) "
            "or POST the records to /api/v1/{entity}/bulk/async."
        )
    if stripped.startswith("{"):
        first_line = stripped.split("\n", 1)[0]
        try:
            if isinstance(strict_json.loads(first_line), dict):
                return FileFormat.NDJSON
        except strict_json.JsonRejected:
            pass
        raise FileRejected(
            "The file starts like JSON but its first line is not one JSON object; NDJSON needs "
            "exactly one object per line."
        )
    return FileFormat.CSV


def _encoding_warnings(sample: str, encoding: str) -> tuple[str, ...]:
    found = _MARKED.search(sample)
    if found is None:
        return ()
    line = sample.count("\n", 0, found.start()) + 1
    return (
        f"Line {line} holds bytes that are not valid {encoding}; rows with such bytes will fail. "
        'If the file uses another encoding (e.g. cp1252), pass "encoding" when you import it.',
    )


def _printable(text: str) -> str:
    """Marker characters replaced for display (JSON cannot carry lone surrogates)."""
    return _MARKED.sub("\ufffd", text)


# --- archives -------------------------------------------------------------------------------------


def check_zip_caps(infos: Sequence[zipfile.ZipInfo], caps: ZipCaps) -> None:
    """Refuse an archive whose central directory declares too much data or a bomb's ratio."""
    total = sum(info.file_size for info in infos)
    if total > caps.max_uncompressed_bytes:
        raise FileRejected(
            f"The archive expands to {total} bytes, more than the {caps.max_uncompressed_bytes} "
            "allowed; split the data or upload it uncompressed."
        )
    for info in infos:
        if info.file_size <= caps.ratio_floor_bytes:
            continue
        ratio = info.file_size / max(info.compress_size, 1)
        if ratio > caps.max_ratio:
            raise FileRejected(
                f"{info.filename} in the archive compresses {ratio:.0f}:1, beyond the "
                f"{caps.max_ratio:g}:1 allowed; this looks like a zip bomb and is refused."
            )


def data_members(infos: Sequence[zipfile.ZipInfo]) -> list[zipfile.ZipInfo]:
    """Members that carry data: no directories, no macOS metadata."""
    return [
        info
        for info in infos
        if not info.is_dir() and not any(part in info.filename for part in _IGNORED_MEMBERS)
    ]


def is_xlsx(names: Sequence[str]) -> bool:
    return "[Content_Types].xml" in names and any(name.startswith("xl/") for name in names)


def _open_archive(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise FileRejected(
            f"The ZIP archive is truncated or corrupt ({exc}); upload it again."
        ) from exc


def _profile_archive(path: Path, caps: ZipCaps) -> FileProfile:
    with _open_archive(path) as archive:
        infos = archive.infolist()
        check_zip_caps(infos, caps)
        _verify_members(archive, infos, caps)
        if is_xlsx(archive.namelist()):
            return _profile_xlsx(path)
        member = _single_member(infos)
        with archive.open(member) as handle:
            head = handle.read(SAMPLE_BYTES)
    if head.startswith(b"PK\x03\x04"):
        raise FileRejected(
            f"{member.filename} inside the ZIP is itself an archive; upload it directly."
        )
    if not head:
        raise FileRejected(f"{member.filename} inside the ZIP is empty.")
    encoding = detect_encoding(head)

    @contextlib.contextmanager
    def opener() -> Iterator[IO[bytes]]:
        with _open_archive(path) as archive, archive.open(member) as handle:
            yield handle

    return _profile_text(head, encoding, FileFormat.ZIP, opener, member.filename)


def _single_member(infos: Sequence[zipfile.ZipInfo]) -> zipfile.ZipInfo:
    members = data_members(infos)
    if len(members) != 1:
        names = ", ".join(m.filename for m in members[:5]) or "nothing"
        raise FileRejected(
            f"A ZIP upload must hold exactly one CSV or NDJSON file; this one holds "
            f"{len(members)} ({names})."
        )
    if members[0].flag_bits & 0x1:
        raise FileRejected("Encrypted ZIP archives are not supported.")
    return members[0]


def _verify_members(
    archive: zipfile.ZipFile, infos: Sequence[zipfile.ZipInfo], caps: ZipCaps
) -> None:
    """Decompress every member once (CRC checked), counting actual bytes against the caps."""
    seen = 0
    for info in infos:
        if info.is_dir() or info.flag_bits & 0x1:
            continue
        try:
            with archive.open(info) as handle:
                counted = _CountingReader(handle, caps, info, seen)
                while counted.read(_READ_BLOCK):
                    pass
                seen = counted.total_seen
        except UnreadableFile as exc:
            raise FileRejected(str(exc)) from exc
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
            raise FileRejected(
                f"The archive is truncated or corrupt: {info.filename} cannot be read ({exc}); "
                "upload it again."
            ) from exc


class _CountingReader(io.RawIOBase):
    """A member's decompressed bytes, failing as soon as they exceed what was declared or capped."""

    def __init__(self, inner: IO[bytes], caps: ZipCaps, info: zipfile.ZipInfo, before: int = 0):
        self._inner = inner
        self._caps = caps
        self._info = info
        self._read = 0
        self._before = before

    @property
    def total_seen(self) -> int:
        return self._before + self._read

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._inner.read(len(buffer))
        self._count(len(data))
        buffer[: len(data)] = data
        return len(data)

    def read(self, size: int = -1) -> bytes:
        data = self._inner.read(size)
        self._count(len(data))
        return data

    def _count(self, size: int) -> None:
        self._read += size
        if self._read > max(self._info.file_size, 0) and self._read > 0:
            raise UnreadableFile(
                f"{self._info.filename} in the archive expands beyond its declared size; "
                "the archive is corrupt or a zip bomb."
            )
        if self.total_seen > self._caps.max_uncompressed_bytes:
            raise UnreadableFile(
                f"The archive expands beyond {self._caps.max_uncompressed_bytes} bytes; refused."
            )


# --- XLSX -----------------------------------------------------------------------------------------


@contextlib.contextmanager
def _workbook(path: Path) -> Iterator[Any]:
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


def _profile_xlsx(path: Path) -> FileProfile:
    with _workbook(path) as workbook:
        return _profile_workbook(workbook)


def _profile_workbook(workbook: Any) -> FileProfile:
    try:
        names = list(workbook.sheetnames)
        if not names:
            raise FileRejected("The workbook has no sheets.")
        sheet_columns = {}
        for name in names[:MAX_PROFILED_SHEETS]:
            header, _ = _sheet_rows(workbook[name])
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


def _sheet_rows(sheet: Any) -> tuple[tuple[str, ...], Iterator[SourceRow]]:
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


# --- reading rows ---------------------------------------------------------------------------------


def read_options(
    profile: FileProfile,
    *,
    encoding: str | None = None,
    delimiter: str | None = None,
    sheet: str | None = None,
) -> ReadOptions:
    """The profile's reading options with an import's overrides (already validated)."""
    first_sheet = profile.sheets[0] if profile.sheets else None
    return ReadOptions(
        format=profile.format,
        content=profile.content
        if profile.format is FileFormat.ZIP
        else (None if profile.format is FileFormat.XLSX else profile.format),
        encoding=encoding or profile.encoding,
        delimiter=delimiter or profile.delimiter,
        sheet=sheet or first_sheet,
        member=profile.member,
    )


@contextlib.contextmanager
def open_rows(path: Path, options: ReadOptions, caps: ZipCaps) -> Iterator[RowTable]:
    """The file's header and a lazy iterator over its non-blank data rows.

    File-level trouble (a vanished file, a corrupt archive, a sheet that is gone) raises
    :class:`UnreadableFile`, also from the iterator; row-level trouble is a row's ``problem``.
    """
    try:
        if options.format is FileFormat.XLSX:
            with _xlsx_rows(path, options) as table:
                yield table
        elif options.format is FileFormat.ZIP:
            with _zip_member_rows(path, options, caps) as table:
                yield table
        else:
            with path.open("rb") as raw, _text_rows(raw, options) as table:
                yield table
    except FileNotFoundError as exc:
        raise UnreadableFile("The uploaded file is no longer in the file store.") from exc


@contextlib.contextmanager
def _zip_member_rows(path: Path, options: ReadOptions, caps: ZipCaps) -> Iterator[RowTable]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, EOFError, ValueError) as exc:
        raise UnreadableFile(f"The ZIP archive is truncated or corrupt: {exc}") from exc
    with archive:
        infos = archive.infolist()
        try:
            check_zip_caps(infos, caps)
            info = archive.getinfo(options.member or _single_member(infos).filename)
        except (FileRejected, KeyError) as exc:
            raise UnreadableFile(str(exc)) from exc
        with archive.open(info) as member:
            counted = io.BufferedReader(_CountingReader(member, caps, info), _READ_BLOCK)
            with _guard_archive_errors(), _text_rows(counted, options) as table:
                yield table


@contextlib.contextmanager
def _guard_archive_errors() -> Iterator[None]:
    try:
        yield
    except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile) as exc:
        raise UnreadableFile(f"The ZIP archive is truncated or corrupt: {exc}") from exc


@contextlib.contextmanager
def _xlsx_rows(path: Path, options: ReadOptions) -> Iterator[RowTable]:
    with contextlib.ExitStack() as stack:
        try:
            workbook = stack.enter_context(_workbook(path))
        except FileRejected as exc:
            raise UnreadableFile(str(exc)) from exc
        name = options.sheet or workbook.sheetnames[0]
        if name not in workbook.sheetnames:
            raise UnreadableFile(f"The workbook has no sheet named {name!r}.")
        header, rows = _sheet_rows(workbook[name])
        yield RowTable(header, _guarded_xlsx(rows))


def _guarded_xlsx(rows: Iterator[SourceRow]) -> Iterator[SourceRow]:
    try:
        yield from rows
    except Exception as exc:  # a malformed sheet part surfaces while streaming it
        raise UnreadableFile(f"The XLSX sheet cannot be read: {exc}") from exc


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
def _text_rows(raw: IO[bytes], options: ReadOptions) -> Iterator[RowTable]:
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
            return RowTable(
                tuple(_printable(c.strip()) for c in header), _csv_rows(lines, encoding)
            )
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
    if not _MARKED.search("".join(values)):  # one search per row: the common case
        return None
    for position, value in enumerate(values, start=1):
        if _MARKED.search(value):
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
        if _MARKED.search(stripped):
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
