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
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from domain import strict_json
from domain.file_types import (
    DELIMITERS,
    MARKED,
    MARKER_ERRORS,
    SAMPLE_BYTES,
    FileFormat,
    FileProfile,
    FileRejected,
    ReadOptions,
    RowTable,
    UnreadableFile,
    ZipCaps,
    printable,
)
from domain.text import unstorable_character
from domain.text_rows import text_rows
from domain.xlsx_rows import profile_xlsx, xlsx_rows
from domain.zip_archives import (
    READ_BLOCK,
    CountingReader,
    check_zip_caps,
    guard_archive_errors,
    is_xlsx,
    open_archive,
    single_member,
    verify_members,
)


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
        return _storable(_profile_archive(path, caps))
    for signature, message in _SIGNATURES:
        if head.startswith(signature):
            raise FileRejected(message)
    encoding = detect_encoding(head)
    return _storable(_profile_text(head, encoding, FileFormat.CSV, lambda: path.open("rb")))


def _storable(profile: FileProfile) -> FileProfile:
    """``profile``, unless a name in it holds a code point no storage can hold (a NUL byte in a
    header is a binary file, not text): such a file could be neither kept nor mapped."""
    names = [*profile.columns, *profile.sheet_columns, profile.member or ""]
    names += [column for columns in profile.sheet_columns.values() for column in columns]
    for name in names:
        found = unstorable_character(name)
        if found is not None:
            raise FileRejected(
                f"The file's header (or a name in it) holds {found}, which no text can: it is "
                "not a CSV, NDJSON or XLSX file, or not in the encoding it seems to be in."
            )
    return profile


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
    with opener() as raw, text_rows(raw, options) as table:
        columns = table.header
    return FileProfile(
        format=outer if outer is FileFormat.ZIP else content,
        content=content if outer is FileFormat.ZIP else None,
        encoding=encoding,
        delimiter=delimiter,
        columns=tuple(printable(c) for c in columns),
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
    found = MARKED.search(sample)
    if found is None:
        return ()
    line = sample.count("\n", 0, found.start()) + 1
    return (
        f"Line {line} holds bytes that are not valid {encoding}; rows with such bytes will fail. "
        'If the file uses another encoding (e.g. cp1252), pass "encoding" when you import it.',
    )


def _profile_archive(path: Path, caps: ZipCaps) -> FileProfile:
    with open_archive(path) as archive:
        infos = archive.infolist()
        check_zip_caps(infos, caps)
        verify_members(archive, infos, caps)
        if is_xlsx(archive.namelist()):
            return profile_xlsx(path)
        member = single_member(infos)
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
        with open_archive(path) as archive, archive.open(member) as handle:
            yield handle

    return _profile_text(head, encoding, FileFormat.ZIP, opener, member.filename)


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
            with xlsx_rows(path, options) as table:
                yield table
        elif options.format is FileFormat.ZIP:
            with _zip_member_rows(path, options, caps) as table:
                yield table
        else:
            with path.open("rb") as raw, text_rows(raw, options) as table:
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
            info = archive.getinfo(options.member or single_member(infos).filename)
        except (FileRejected, KeyError) as exc:
            raise UnreadableFile(str(exc)) from exc
        with archive.open(info) as member:
            counted = io.BufferedReader(CountingReader(member, caps, info), READ_BLOCK)
            with guard_archive_errors(), text_rows(counted, options) as table:
                yield table
