"""ZIP archives (and XLSX, which is one), checked against :class:`~domain.file_types.ZipCaps`
twice: on the central directory (declared sizes and ratios) and while decompressing (actual
bytes), so a zip bomb is refused before it can fill memory or disk."""

from __future__ import annotations

import contextlib
import io
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from domain.file_types import FileRejected, UnreadableFile, ZipCaps

_IGNORED_MEMBERS = ("__MACOSX/", ".DS_Store")
READ_BLOCK = 1024 * 1024


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


def open_archive(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise FileRejected(
            f"The ZIP archive is truncated or corrupt ({exc}); upload it again."
        ) from exc


def single_member(infos: Sequence[zipfile.ZipInfo]) -> zipfile.ZipInfo:
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


def verify_members(
    archive: zipfile.ZipFile, infos: Sequence[zipfile.ZipInfo], caps: ZipCaps
) -> None:
    """Decompress every member once (CRC checked), counting actual bytes against the caps."""
    seen = 0
    for info in infos:
        if info.is_dir() or info.flag_bits & 0x1:
            continue
        try:
            with archive.open(info) as handle:
                counted = CountingReader(handle, caps, info, seen)
                while counted.read(READ_BLOCK):
                    pass
                seen = counted.total_seen
        except UnreadableFile as exc:
            raise FileRejected(str(exc)) from exc
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
            raise FileRejected(
                f"The archive is truncated or corrupt: {info.filename} cannot be read ({exc}); "
                "upload it again."
            ) from exc


class CountingReader(io.RawIOBase):
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


@contextlib.contextmanager
def guard_archive_errors() -> Iterator[None]:
    try:
        yield
    except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile) as exc:
        raise UnreadableFile(f"The ZIP archive is truncated or corrupt: {exc}") from exc
